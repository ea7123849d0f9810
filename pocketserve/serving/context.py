"""What the serving layer knows about the HTTP request it is working for.

The API layer opens a `RequestContext` per request (id, deadline, API key) and the registry
reads it, so every capability gets deadlines, request ids in logs and token accounting without
passing them through each route. A `ContextVar` is the one way to carry that across the
request's task and the tasks it spawns; the variable itself holds no state between requests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class RequestContext:
    """One request's facts; the registry fills in the model and token counts as it serves."""

    request_id: str
    deadline: float | None = None  # time.monotonic() value; None: no deadline
    api_key_id: str | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    client_gone: bool = False  # the client disconnected and the work was cancelled
    extra: dict[str, str] = field(default_factory=dict)

    def remaining(self) -> float | None:
        """Seconds left before the deadline (may be negative), or None without one."""
        return None if self.deadline is None else self.deadline - time.monotonic()


_CURRENT: ContextVar[RequestContext | None] = ContextVar("pocketserve_request", default=None)


def current_request() -> RequestContext | None:
    return _CURRENT.get()


@contextmanager
def request_scope(ctx: RequestContext) -> Iterator[RequestContext]:
    """Make `ctx` the current request for the code (and tasks) run inside."""
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)
