"""Every failure leaves as OpenAI's envelope {"error": {message, type, param, code}}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from pocketserve.errors import PocketserveError


def error_body(message: str, kind: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(exc: PocketserveError) -> JSONResponse:
    return JSONResponse(error_body(exc.message, exc.kind, exc.param, exc.code),
                        status_code=exc.status, headers=exc.headers() or None)


def _param(loc: tuple[Any, ...]) -> str | None:
    """('body', 'messages', 0, 'content') -> 'messages[0].content'."""
    parts = [p for p in loc if p != "body"]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not any(ch in str(part) for ch in "[]()"):  # skip union-branch labels
            text += ("." if text else "") + str(part)
    return text or None


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return JSONResponse(error_body("The request body is not valid JSON.",
                                       "invalid_request_error", None, "invalid_json"), 400)
    param = _param(tuple(first.get("loc", ())))
    msg = str(first.get("msg", "invalid value"))
    if first.get("type") == "missing":
        message = f"Missing required parameter: '{param}'."
    else:
        message = f"Invalid value for '{param}': {msg}." if param else f"{msg}."
    code = str(first.get("type", "invalid_value"))
    return JSONResponse(error_body(message, "invalid_request_error", param, code),
                        status_code=400)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PocketserveError)
    async def _domain(request: Request, exc: PocketserveError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))
