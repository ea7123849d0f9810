"""Domain errors. Lower layers raise these; only the API layer turns them into HTTP answers.

Each error can cross the worker socket as a plain dict (`to_wire`/`from_wire`), so a worker's
refusal reaches the client with the same type, message and parameter.
"""

from __future__ import annotations

import math
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

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers the answer needs (Retry-After, WWW-Authenticate)."""
        return {}

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


class NotFound(PocketserveError):
    """Something a request names by id (a stored response) does not exist, or no longer."""

    status = 404
    kind = "invalid_request_error"


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


class StorageFailure(PocketserveError):
    """The server's own storage (the stored-responses database) failed: a disk, not a model."""

    kind = "server_error"


class RetryLater(PocketserveError):
    """A refusal the client may retry; `retry_after_s` becomes the Retry-After header."""

    status = 429
    kind = "rate_limit_exceeded"

    def __init__(self, message: str, param: str | None = None, code: str | None = None,
                 retry_after_s: float = 1.0):
        super().__init__(message, param, code)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


class QueueFull(RetryLater):
    """The model's in-flight slots and its waiting queue are all taken."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None,
                 retry_after_s: float = 1.0):
        super().__init__(message, param, code or "queue_full", retry_after_s)


class RateLimited(RetryLater):
    """The API key used up its requests or tokens per minute."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None,
                 retry_after_s: float = 1.0):
        super().__init__(message, param, code or "rate_limit_exceeded", retry_after_s)


class DeadlineExceeded(PocketserveError):
    """The request waited or ran past its deadline; its work was stopped."""

    status = 504
    kind = "timeout_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message, param, code or "deadline_exceeded")


class Unauthorized(PocketserveError):
    status = 401
    kind = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message, param, code or "invalid_api_key")

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


_BY_NAME: dict[str, type[PocketserveError]] = {
    c.__name__: c
    for c in (PocketserveError, InvalidRequest, ContextLengthExceeded, ModelNotFound,
              NotFound, ModelNotReady, PayloadTooLarge, EngineFailure, StorageFailure,
              RetryLater, QueueFull, RateLimited, DeadlineExceeded, Unauthorized)
}
