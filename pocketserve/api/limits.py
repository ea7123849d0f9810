"""Pure-ASGI guards: 413 before an oversized body is read into memory, and caps on open
WebSocket connections."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pocketserve.api.errors import send_error
from pocketserve.api.websocket import refuse
from pocketserve.errors import PayloadTooLarge, RetryLater
from pocketserve.serving.context import current_request


class BodySizeLimit:
    """HTTP bodies only. A WebSocket has no body; each of its messages is capped by the
    server (uvicorn's `ws_max_size`, set from the same max_body_bytes by `pocketserve serve`)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send, scope["path"])
            return
        if length is not None:
            await self.app(scope, receive, send)
            return
        # No declared length (chunked): read up to the limit, then replay what was read.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._reject(send, scope["path"])
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Send, path: str) -> None:
        await send_error(send, PayloadTooLarge(
            f"The request body is larger than the limit of {self.max_bytes} bytes.",
            code="request_too_large"), path=path)


class ConnectionSlots:
    """Counts WebSocket connections, server-wide and per API key, from handshake to close.

    A handshake takes its slot before it is accepted, so many arriving at once cannot all slip
    under the limit. Plain counters: everything runs on the one event loop.
    """

    def __init__(self, max_total: int | None, max_per_key: int | None):
        self.max_total = max_total
        self.max_per_key = max_per_key
        self.total = 0
        self._per_key: dict[str, int] = {}

    def take(self, key: str | None) -> str | None:
        """Take a slot; None when taken, else the refusal's reason (the caller answers 429)."""
        if self.max_total is not None and self.total >= self.max_total:
            return "connection_limit"
        held = self._per_key.get(key, 0) if key is not None else 0
        if key is not None and self.max_per_key is not None and held >= self.max_per_key:
            return "key_connection_limit"
        self.total += 1
        if key is not None:
            self._per_key[key] = held + 1
        return None

    def give(self, key: str | None) -> None:
        self.total -= 1
        if key is not None:
            left = self._per_key.get(key, 1) - 1
            if left:
                self._per_key[key] = left
            else:
                self._per_key.pop(key, None)


class WebSocketConnectionLimit:
    """Refuses a handshake past `max_websocket_connections` (server) or
    `max_websocket_connections_per_key`: 429 with Retry-After, or close code 1013."""

    def __init__(self, app: ASGIApp, slots: ConnectionSlots):
        self.app = app
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        ctx = current_request()
        key = ctx.api_key_id if ctx is not None else None
        refused = self.slots.take(key)
        if refused is not None:
            await refuse(scope, send, _limit_error(refused, self.slots), refused)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.give(key)


def _limit_error(reason: str, slots: ConnectionSlots) -> RetryLater:
    if reason == "connection_limit":
        message = (f"The server has reached its limit of {slots.max_total} open WebSocket "
                   "connections. Retry after one closes.")
    else:
        message = (f"This API key has reached its limit of {slots.max_per_key} open WebSocket "
                   "connections. Close one and retry.")
    return RetryLater(message, code="too_many_connections")
