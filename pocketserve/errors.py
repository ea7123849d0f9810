"""Domain errors. Lower layers raise these; only the API layer turns them into HTTP answers.

Each error can cross the worker socket as a plain dict (`to_wire`/`from_wire`), so a worker's
refusal reaches the client with the same type, message and parameter.
"""

from __future__ import annotations

from typing import Any


class PocketserveError(Exception):
    """Base class: a message meant for the client, and the request parameter at fault."""

    status = 500
    kind = "internal_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def to_wire(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "message": self.message, "param": self.param,
                "code": self.code}

    @staticmethod
    def from_wire(data: dict[str, Any]) -> PocketserveError:
        cls = _BY_NAME.get(str(data.get("class")), PocketserveError)
        return cls(str(data.get("message", "")), data.get("param"), data.get("code"))


class InvalidRequest(PocketserveError):
    status = 400
    kind = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    def __init__(self, message: str, param: str | None = "messages", code: str | None = None):
        super().__init__(message, param, code or "context_length_exceeded")


class ModelNotFound(PocketserveError):
    status = 404
    kind = "invalid_request_error"

    def __init__(self, message: str, param: str | None = "model", code: str | None = None):
        super().__init__(message, param, code or "model_not_found")


class ModelNotReady(PocketserveError):
    """The model exists but cannot answer now (loading, crashed and restarting, failed)."""

    status = 503
    kind = "service_unavailable"

    def __init__(self, message: str, param: str | None = "model", code: str | None = None):
        super().__init__(message, param, code or "model_not_ready")


class PayloadTooLarge(PocketserveError):
    status = 413
    kind = "invalid_request_error"


class EngineFailure(PocketserveError):
    """The model code failed in a way that is not the client's fault."""


_BY_NAME: dict[str, type[PocketserveError]] = {
    c.__name__: c
    for c in (PocketserveError, InvalidRequest, ContextLengthExceeded, ModelNotFound,
              ModelNotReady, PayloadTooLarge, EngineFailure)
}
