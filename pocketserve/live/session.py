"""What both live sessions share: one reader, one writer, error events, and the bounds.

Every outgoing message goes through one queue and one writer task, so audio chunks and events
never interleave inside a message and a cancelled task never cuts a send in half. A message
that cannot be served is answered with an `error` event (the shape of the Realtime API's) and
the session goes on. A session ends when the client leaves, after its `end`, when it has been
idle too long, or at its longest allowed duration; whatever it still runs is then cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pocketserve.errors import PocketserveError
from pocketserve.realtime.errors import ClientError, parse_event
from pocketserve.realtime.response import error_event

log = logging.getLogger("pocketserve.live")
Handler = Callable[[dict[str, Any]], Awaitable[None]]


class Transport(Protocol):
    async def receive(self) -> str | bytes | None:
        """The next message; None once the client has gone."""
        ...

    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@dataclass
class Bounds:
    max_message_bytes: int = 1024 * 1024
    idle_timeout_s: float | None = 300.0  # nothing received and nothing being worked on
    max_session_s: float | None = 3600.0


class LiveSession:
    """The loop; subclasses give `handlers`, `on_binary`, `busy` and `stop`."""

    handlers: dict[str, Handler]

    def __init__(self, transport: Transport, bounds: Bounds):
        self.transport = transport
        self.bounds = bounds
        self.ended = False  # the client sent `end` and everything it asked for is done
        self._ended = asyncio.Event()
        self._outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._close: tuple[int, str] = (1000, "done")

    def send(self, event: dict[str, Any]) -> None:
        self._outbox.put_nowait(json.dumps(event, separators=(",", ":")))

    def send_bytes(self, data: bytes) -> None:
        self._outbox.put_nowait(data)

    def error(self, exc: ClientError | PocketserveError, event_id: str | None = None) -> None:
        self.send(error_event(exc.message, exc.kind, exc.code, exc.param, event_id))

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        started = time.monotonic()
        try:
            while not self.ended and (message := await self._next(started)) is not None:
                await self.handle(message)
        finally:
            await self.stop()
            self._outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, timeout=5)
            with contextlib.suppress(Exception):
                await self.transport.close(*self._close)

    def finish(self) -> None:
        """Everything is done after the client's `end`: the session closes (code 1000)."""
        self.ended = True
        self._ended.set()

    def busy(self) -> bool:
        """Whether work the client asked for is still going on (then it is not idle)."""
        return False

    async def stop(self) -> None:
        """Cancel whatever is still running and free what it holds."""

    async def on_binary(self, data: bytes) -> None:
        raise ClientError("Binary messages are not taken here; send JSON text events.",
                          code="invalid_message")

    async def handle(self, message: str | bytes) -> None:
        event_id = None
        try:
            size = len(message) if isinstance(message, bytes) else len(message.encode())
            if size > self.bounds.max_message_bytes:
                raise ClientError(f"The message has {size} bytes; the most one message may "
                                  f"have is {self.bounds.max_message_bytes}.",
                                  code="message_too_large")
            if isinstance(message, bytes):
                await self.on_binary(message)
                return
            event = parse_event(message)
            event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
            handler = self.handlers.get(event["type"])
            if handler is None:
                raise ClientError(f"Invalid value: '{event['type']}'. Supported values are: "
                                  f"{', '.join(self.handlers)}.", param="type")
            await handler(event)
        except (ClientError, PocketserveError) as exc:
            self.error(exc, event_id)
        except Exception:  # a bug here must not end the session
            log.exception("live event failed")
            self.send(error_event("The server had an error while processing the message.",
                                  "server_error", "server_error", None, event_id))

    async def _next(self, started: float) -> str | bytes | None:
        incoming = asyncio.ensure_future(self.transport.receive())
        ended = asyncio.ensure_future(self._ended.wait())
        limit = self.bounds.max_session_s
        try:
            while True:
                idle = self.bounds.idle_timeout_s
                left = None if limit is None else limit - (time.monotonic() - started)
                wait = min((t for t in (idle, left) if t is not None), default=None)
                done, _ = await asyncio.wait({incoming, ended}, timeout=wait,
                                             return_when=asyncio.FIRST_COMPLETED)
                if incoming in done:
                    return incoming.result()
                if ended in done:
                    return None
                if limit is not None and time.monotonic() - started >= limit - 0.01:
                    self._expire("session_expired", "The session reached its longest "
                                 f"allowed duration, {limit:g} s.")
                    return None
                if wait == idle and not self.busy():
                    self._expire("session_idle_timeout",
                                 f"The session was idle for {idle:g} s and is closed.")
                    return None
        finally:
            incoming.cancel()
            ended.cancel()

    def _expire(self, code: str, message: str) -> None:
        self.send(error_event(message, code=code))
        self._close = (1000, code)

    async def _write(self) -> None:
        while (message := await self._outbox.get()) is not None:
            try:
                if isinstance(message, bytes):
                    await self.transport.send_bytes(message)
                else:
                    await self.transport.send_text(message)
            except Exception:  # the client has gone; the reader will see it
                return
