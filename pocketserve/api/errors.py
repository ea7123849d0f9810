"""Every failure leaves as OpenAI's envelope {"error": {message, type, param, code}}, except on
Anthropic's routes (/v1/messages...), where it leaves as Anthropic's {"type": "error", "error":
{type, message}, "request_id"}: chosen by the request's path, so errors raised by middleware
(keys, body size, rate limits) and validation are shaped for the client that called.

On a WebSocket the same envelope goes out as the handshake's HTTP denial (ASGI's
`websocket.http.response` extension) while the connection is not yet accepted; where the server
lacks that extension, or once the connection is open, the failure becomes a close code.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Scope, Send
from starlette.websockets import WebSocketState

from pocketserve.errors import PocketserveError
from pocketserve.serving.context import current_request

DENIAL_EXTENSION = "websocket.http.response"


def error_body(message: str, kind: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# Anthropic's error type for each status; other 4xx are invalid_request_error, other 5xx
# api_error. A model that is loading or restarting (503) is overloaded_error, like their 529.
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                    429: "rate_limit_error", 500: "api_error", 503: "overloaded_error",
                    504: "timeout_error", 529: "overloaded_error"}


def anthropic_path(path: str) -> bool:
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def anthropic_error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """Anthropic's envelope; the parameter at fault leads the message, as in theirs."""
    kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else
                                "invalid_request_error")
    if param and not message.startswith(f"{param}:"):
        message = f"{param}: {message}"
    ctx = current_request()
    return {"type": "error", "error": {"type": kind, "message": message},
            "request_id": ctx.request_id if ctx is not None else None}


def body_for(path: str, exc: PocketserveError) -> dict[str, Any]:
    """The error's body in the envelope of the API that `path` belongs to."""
    if anthropic_path(path):
        return anthropic_error_body(exc.status, exc.message, exc.param)
    return error_body(exc.message, exc.kind, exc.param, exc.code)


def close_code_for(status: int) -> int:
    """The WebSocket close code (RFC 6455 7.4.1) nearest to an HTTP status."""
    if status == 413:
        return 1009  # message too big
    if status in (429, 503):
        return 1013  # try again later
    if status >= 500:
        return 1011  # internal error
    return 1008  # policy violation: refused keys, bad handshakes and the like


def close_reason(message: str) -> str:
    """A close frame's reason holds at most 123 bytes of UTF-8."""
    return message.encode()[:123].decode(errors="ignore")


def supports_denial(scope: Scope) -> bool:
    return DENIAL_EXTENSION in scope.get("extensions", {})


async def send_error(send: Send, exc: PocketserveError, websocket: bool = False,
                     path: str = "") -> None:
    """Answer from pure-ASGI middleware with the envelope of `path`'s API and the error's
    headers; with `websocket`, as the denial response of a handshake (the server must support
    it)."""
    body = json.dumps(body_for(path, exc)).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers().items()]
    prefix = "websocket." if websocket else ""
    await send({"type": prefix + "http.response.start", "status": exc.status,
                "headers": headers})
    await send({"type": prefix + "http.response.body", "body": body})


async def close_websocket(websocket: WebSocket, exc: PocketserveError) -> None:
    """End a WebSocket on a domain error a route let escape: a denial before accept, a close
    code after it."""
    if (websocket.application_state == WebSocketState.CONNECTING
            and supports_denial(websocket.scope)):
        await websocket.send_denial_response(error_response(exc))
    elif websocket.application_state != WebSocketState.DISCONNECTED:
        await websocket.close(close_code_for(exc.status), close_reason(exc.message))


def error_response(exc: PocketserveError, path: str = "") -> JSONResponse:
    return JSONResponse(body_for(path, exc), status_code=exc.status,
                        headers=exc.headers() or None)


_SOURCES = ("body", "query", "path", "header", "cookie")


def _param(loc: tuple[Any, ...]) -> str | None:
    """('body', 'messages', 0, 'content') -> 'messages[0].content'; ('query', 'model') ->
    'model'."""
    parts = list(loc[1:] if loc and loc[0] in _SOURCES else loc)
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not any(ch in str(part) for ch in "[]()"):  # skip union-branch labels
            text += ("." if text else "") + str(part)
    return text or None


def _required_fields(request: Request) -> list[str]:
    """The required top-level fields of the route's JSON body, in declaration order."""
    field = getattr(request.scope.get("route"), "body_field", None)
    model = getattr(getattr(field, "field_info", None), "annotation", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return [f.alias or name for name, f in model.model_fields.items() if f.is_required()]


def _whole_body(kind: str, required: list[str]) -> tuple[str, str | None]:
    """The message and param for a body that is absent or not a JSON object at all, which
    pydantic reports at ('body',): naming no field would say "parameter 'None'"."""
    wanted = ", ".join(f"'{name}'" for name in required)
    shape = f"a JSON object with {wanted}" if wanted else "a JSON object"
    if kind == "missing":
        return f"The request body is missing: send {shape}.", required[0] if required else None
    return (f"The request body must be {shape} (Content-Type: application/json).", None)


def _validation_response(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    kind = str(first.get("type", "invalid_value"))
    if kind == "json_invalid":
        return _invalid(request, "The request body is not valid JSON.", None, "invalid_json")
    loc = tuple(first.get("loc", ()))
    param = _param(loc)
    msg = str(first.get("msg", "invalid value"))
    if loc == ("body",):
        message, param = _whole_body(kind, _required_fields(request))
    elif anthropic_path(request.url.path):
        message = f"{msg}."  # Anthropic's "max_tokens: Field required."
    elif kind == "missing":
        message = f"Missing required parameter: '{param}'."
    else:
        message = f"Invalid value for '{param}': {msg}." if param else f"{msg}."
    return _invalid(request, message, param, kind)


def _invalid(request: Request, message: str, param: str | None, code: str) -> JSONResponse:
    if anthropic_path(request.url.path):
        return JSONResponse(anthropic_error_body(400, message, param), status_code=400)
    return JSONResponse(error_body(message, "invalid_request_error", param, code), 400)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PocketserveError)
    async def _domain(conn: Request | WebSocket, exc: PocketserveError) -> JSONResponse | None:
        if isinstance(conn, WebSocket):
            await close_websocket(conn, exc)
            return None
        return error_response(exc, conn.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(request, exc)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        body = (anthropic_error_body(exc.status_code, str(exc.detail))
                if anthropic_path(request.url.path) else error_body(str(exc.detail), kind))
        return JSONResponse(body, status_code=exc.status_code, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path: Starlette's 405 names only the first
    route that matched it (GET and DELETE /v1/responses/{id} are two routes)."""
    scope = {**request.scope, "method": "GET"}
    methods: set[str] = set()
    routes = list(request.app.router.routes)
    while routes:
        route = routes.pop()
        inner = getattr(route, "original_router", None)  # an included router (no prefix)
        if inner is not None:
            routes += inner.routes
        elif route.matches(scope)[0] != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)
