"""Every failure leaves as OpenAI's envelope {"error": {message, type, param, code}}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from pocketserve.errors import PocketserveError


def error_body(message: str, kind: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(exc: PocketserveError) -> JSONResponse:
    return JSONResponse(error_body(exc.message, exc.kind, exc.param, exc.code),
                        status_code=exc.status, headers=exc.headers() or None)


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
        return JSONResponse(error_body("The request body is not valid JSON.",
                                       "invalid_request_error", None, "invalid_json"), 400)
    loc = tuple(first.get("loc", ()))
    param = _param(loc)
    msg = str(first.get("msg", "invalid value"))
    if loc == ("body",):
        message, param = _whole_body(kind, _required_fields(request))
    elif kind == "missing":
        message = f"Missing required parameter: '{param}'."
    else:
        message = f"Invalid value for '{param}': {msg}." if param else f"{msg}."
    return JSONResponse(error_body(message, "invalid_request_error", param, kind),
                        status_code=400)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PocketserveError)
    async def _domain(request: Request, exc: PocketserveError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(request, exc)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))
