"""Pure-ASGI middleware: a context per request or WebSocket connection (id, deadline), and
cancel on disconnect.

Pure ASGI rather than BaseHTTPMiddleware, so streaming bodies pass through untouched, the
request's context variables reach the route, and cancelling the route's task is ours to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
import uuid
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from pocketserve.api.errors import send_error
from pocketserve.api.websocket import REFUSED, is_secret_subprotocol, refuse
from pocketserve.errors import InvalidRequest, PocketserveError
from pocketserve.serving.context import RequestContext, current_request, request_scope
from pocketserve.serving.metrics import Metrics

log = logging.getLogger("pocketserve.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
CLIENT_CLOSED = 499  # nginx's code for "client closed the request", in logs and metrics


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
    per-route metrics; for WebSocket connections too (see `WebSocketContext`)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, timeout_s: float | None,
                 router: Router | None = None):
        self.app = app
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.websockets = WebSocketContext(app, metrics, router)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.websockets(scope, receive, send)
            return
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
                await send_error(send_with_id, exc, path=scope["path"])
            except Exception:  # answered here, so even a 500 carries the request id
                log.exception("unhandled error on %s %s", scope["method"], scope["path"])
                if not status:
                    await send_error(send_with_id, _ServerError(
                        "The server had an error while processing the request."),
                        path=scope["path"])
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


@dataclass
class _Connection:
    """What the access log and metrics need to know about one WebSocket connection."""

    started: float
    accepted_at: float | None = None
    denied_status: int | None = None  # the HTTP status of a refused handshake's answer
    close_code: int | None = None
    closed_by: str = "-"
    answered: bool = False  # accept, denial or close sent: the handshake is settled


class WebSocketContext:
    """The request context for a WebSocket connection, from handshake to close.

    The id comes from the handshake's X-Request-ID (or is made) and goes back in the accept
    headers; the route reads it, and the registry fills in model and tokens, through the same
    RequestContext as an HTTP request. The connection has no deadline: request_timeout_s is for
    one request, and a session's routes set deadlines per call. X-Request-Timeout on a
    handshake is refused (400) rather than ignored.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, router: Router | None):
        self.app = app
        self.metrics = metrics
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = RequestContext(request_id_from(Headers(scope=scope).get("x-request-id")))
        conn = _Connection(time.monotonic())
        route = self._route(scope)
        id_header = (b"x-request-id", ctx.request_id.encode())

        async def tracked_send(message: Message) -> None:
            kind = message["type"]
            conn.answered = conn.answered or kind in _HANDSHAKE_ANSWERS
            if kind == "websocket.accept":
                message = _accept_message(message, id_header)
                conn.accepted_at = time.monotonic()
                self.metrics.ws_open.labels(route).inc()
            elif kind == "websocket.http.response.start":
                conn.denied_status = int(message["status"])
                message["headers"] = [*message.get("headers", []), id_header]
            elif kind == "websocket.close" and conn.close_code is None:
                conn.close_code, conn.closed_by = int(message.get("code", 1000)), "server"
            await send(message)

        async def tracked_receive() -> Message:
            message = await receive()
            if message["type"] == "websocket.disconnect" and conn.close_code is None:
                conn.close_code, conn.closed_by = int(message.get("code", 1005)), "client"
            return message

        with request_scope(ctx):
            try:
                await self._serve(scope, tracked_receive, tracked_send, conn)
            finally:
                if conn.accepted_at is not None:
                    self.metrics.ws_open.labels(route).dec()
                self._record(scope, route, ctx, conn)

    async def _serve(self, scope: Scope, receive: Receive, send: Send,
                     conn: _Connection) -> None:
        try:
            if "x-request-timeout" in Headers(scope=scope):
                await refuse(scope, send, InvalidRequest(
                    "X-Request-Timeout applies to HTTP requests; a WebSocket connection has "
                    "no deadline.", param="X-Request-Timeout", code="invalid_header"),
                    "invalid_request")
                return
            await self.app(scope, receive, send)
            if not conn.answered:
                log.error("WebSocket route for %s returned without accepting or refusing the "
                          "connection", scope["path"])
                await _fail(scope, conn, send)
        except WebSocketDisconnect:
            pass  # the client left and the route did not catch it: a normal end
        except Exception:
            log.exception("unhandled error on WebSocket %s", scope["path"])
            await _fail(scope, conn, send)

    def _route(self, scope: Scope) -> str:
        """The route's path template, found before the router runs, so even a handshake that
        middleware refused is counted under its route (and unknown paths under one label)."""
        for candidate in self.router.routes if self.router is not None else []:
            match, _ = candidate.matches(scope)
            if match == Match.FULL:
                return str(getattr(candidate, "path", "unmatched"))
        return "unmatched"

    def _record(self, scope: Scope, route: str, ctx: RequestContext, conn: _Connection) -> None:
        now = time.monotonic()
        model = ctx.model or "-"
        tokens = f"tokens={ctx.prompt_tokens}+{ctx.completion_tokens}"
        if conn.accepted_at is not None:
            lived = now - conn.accepted_at
            self.metrics.ws_connections.labels(route, "accepted").inc()
            self.metrics.ws_duration.labels(route).observe(lived)
            log.info("WS %s closed %s by %s %.1fms model=%s %s", scope["path"],
                     conn.close_code or "-", conn.closed_by, lived * 1000, model, tokens)
            return
        outcome = ctx.extra.get(REFUSED) or ("not_found" if route == "unmatched"
                                             else "rejected_by_route")
        self.metrics.ws_connections.labels(route, outcome).inc()
        answer = (str(conn.denied_status) if conn.denied_status is not None
                  else f"close={conn.close_code or '-'}")
        log.info("WS %s refused %s %s %.1fms", scope["path"], outcome, answer,
                 (now - conn.started) * 1000)


def _accept_message(message: Message, id_header: tuple[bytes, bytes]) -> Message:
    """The accept with the request id added and never a key-bearing subprotocol."""
    subprotocol = message.get("subprotocol")
    if is_secret_subprotocol(subprotocol):
        log.error("a WebSocket route tried to accept the API-key subprotocol; dropped it "
                  "(accept through pocketserve.api.websocket.accept)")
        subprotocol = None
    return {**message, "subprotocol": subprotocol,
            "headers": [*message.get("headers", []), id_header]}


_HANDSHAKE_ANSWERS = ("websocket.accept", "websocket.http.response.start", "websocket.close")


async def _fail(scope: Scope, conn: _Connection, send: Send) -> None:
    """After a route failed: a 500 before accept, close code 1011 after it. So the server is
    never left with an unsettled handshake (uvicorn would log its own error and answer 500)."""
    with contextlib.suppress(Exception):  # the client may be gone already
        if not conn.answered:
            await refuse(scope, send, _ServerError(
                "The server had an error while processing the request."), "error")
        elif conn.accepted_at is not None and conn.close_code is None:
            await send({"type": "websocket.close", "code": 1011, "reason": "server error"})


class CancelOnDisconnect:
    """Cancels the route's task when the client goes away before its answer is complete.

    HTTP only: a WebSocket route reads its own `websocket.disconnect` and ends its session
    (cancelling what it started) itself, so WebSocket connections pass through untouched.

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
