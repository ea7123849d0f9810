"""Pure-ASGI middleware: a context per request (id, deadline), and cancel on disconnect.

Pure ASGI rather than BaseHTTPMiddleware, so streaming bodies pass through untouched, the
request's context variables reach the route, and cancelling the route's task is ours to do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import uuid

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pocketserve.api.errors import error_body
from pocketserve.errors import InvalidRequest, PocketserveError
from pocketserve.serving.context import RequestContext, current_request, request_scope
from pocketserve.serving.metrics import Metrics

log = logging.getLogger("pocketserve.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
CLIENT_CLOSED = 499  # nginx's code for "client closed the request", in logs and metrics


async def send_error(send: Send, exc: PocketserveError) -> None:
    """Answer a request from middleware with OpenAI's error envelope and the error's headers."""
    body = json.dumps(error_body(exc.message, exc.kind, exc.param, exc.code)).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers().items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def request_id_from(value: str | None) -> str:
    """The client's X-Request-ID when it is a sane token, else a fresh one."""
    if value and _REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


def deadline_from(header: str | None, default_s: float | None, now: float) -> float | None:
    """The request's deadline: the server's timeout, shortened by X-Request-Timeout."""
    timeout = default_s
    if header is not None:
        try:
            asked = float(header)
        except ValueError:
            asked = math.nan
        if not math.isfinite(asked) or asked <= 0:
            raise InvalidRequest("X-Request-Timeout must be a positive number of seconds.",
                                 param="X-Request-Timeout", code="invalid_header")
        timeout = asked if timeout is None else min(timeout, asked)
    return None if timeout is None else now + timeout


class _ServerError(PocketserveError):
    kind = "server_error"


class RequestContextMiddleware:
    """Request id (accepted or made, returned on every response), deadline, access log and
    per-route metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics, timeout_s: float | None):
        self.app = app
        self.metrics = metrics
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        ctx = RequestContext(request_id_from(headers.get("x-request-id")))
        started = time.monotonic()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", ctx.request_id.encode())]
            await send(message)

        with request_scope(ctx):
            try:
                ctx.deadline = deadline_from(headers.get("x-request-timeout"), self.timeout_s,
                                             started)
                await self.app(scope, receive, send_with_id)
            except InvalidRequest as exc:
                await send_error(send_with_id, exc)
            except Exception:  # answered here, so even a 500 carries the request id
                log.exception("unhandled error on %s %s", scope["method"], scope["path"])
                if not status:
                    await send_error(send_with_id, _ServerError(
                        "The server had an error while processing the request."))
            finally:
                self._record(scope, ctx, CLIENT_CLOSED if ctx.client_gone else status or 500,
                             time.monotonic() - started)

    def _record(self, scope: Scope, ctx: RequestContext, status: int, elapsed: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        model = ctx.model or "-"
        self.metrics.requests.labels(route, model, str(status)).inc()
        self.metrics.latency.labels(route, model).observe(elapsed)
        log.info("%s %s %d %.1fms model=%s tokens=%d+%d", scope["method"], scope["path"], status,
                 elapsed * 1000, model, ctx.prompt_tokens, ctx.completion_tokens)


class CancelOnDisconnect:
    """Cancels the route's task when the client goes away before its answer is complete.

    One task (the pump) is the only reader of `receive`: it hands body messages to the app and
    then waits for `http.disconnect`. Cancelling the route closes the registry's stream, which
    tells the worker to drop the request, for streaming and non-streaming answers alike.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        gone = asyncio.Event()
        answered = asyncio.Event()

        async def app_receive() -> Message:
            if gone.is_set() and inbox.empty():
                return {"type": "http.disconnect"}
            return await inbox.get()

        async def app_send(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered.set()
            await send(message)

        async def run() -> None:
            await self.app(scope, app_receive, app_send)

        task = asyncio.create_task(run())
        pump = asyncio.create_task(_pump(receive, inbox, gone, answered, task))
        try:
            await task
        except asyncio.CancelledError:
            outer = asyncio.current_task()
            if not gone.is_set() or (outer is not None and outer.cancelling()):
                raise
            ctx = current_request()
            if ctx is not None:
                ctx.client_gone = True
            log.info("client disconnected before the answer was complete; work cancelled")
        finally:
            pump.cancel()


async def _pump(receive: Receive, inbox: asyncio.Queue[Message], gone: asyncio.Event,
                answered: asyncio.Event, task: asyncio.Task[None]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            inbox.put_nowait(message)
            if not answered.is_set() and not task.done():
                task.cancel()
            return
        inbox.put_nowait(message)
