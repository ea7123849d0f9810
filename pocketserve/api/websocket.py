"""What WebSocket routes and the middleware share: keys in subprotocols, the subprotocol a route
accepts, and refusing a handshake before it is accepted.

Browsers cannot set headers on a WebSocket handshake, so OpenAI's browser clients put the key in
a subprotocol: `Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.<KEY>`. The server
must answer with one of the offered subprotocols (a browser fails the connection otherwise) and
must never pick the one that holds the key, or the key would travel back in the response.
Routes therefore accept through `accept()`, which picks from the subprotocols the route speaks,
and the request-context middleware drops a key-bearing subprotocol if one slips through.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import Scope, Send
from starlette.websockets import WebSocket

from pocketserve.api.errors import close_code_for, close_reason, send_error, supports_denial
from pocketserve.errors import PocketserveError
from pocketserve.serving.context import current_request

KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
REFUSED = "websocket_refused"  # RequestContext.extra key: why the middleware refused


def key_from_subprotocols(offered: Sequence[str]) -> str | None:
    """The API key carried as `openai-insecure-api-key.<key>`, if one was offered."""
    for name in offered:
        if name.startswith(KEY_SUBPROTOCOL_PREFIX) and len(name) > len(KEY_SUBPROTOCOL_PREFIX):
            return name[len(KEY_SUBPROTOCOL_PREFIX):]
    return None


def is_secret_subprotocol(name: str | None) -> bool:
    return name is not None and name.startswith(KEY_SUBPROTOCOL_PREFIX)


def choose_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The first subprotocol the client offered that the route speaks; never a key-bearing one.

    None when there is no match: the handshake then names no subprotocol, which non-browser
    clients accept; browsers that offered some fail the connection, as RFC 6455 asks.
    """
    for name in offered:
        if name in supported and not is_secret_subprotocol(name):
            return name
    return None


async def accept(websocket: WebSocket, supported: Sequence[str] = ()) -> str | None:
    """Accept the connection with the subprotocol `choose_subprotocol` picks; returns it.

    Every WebSocket route accepts through this, e.g. `await accept(websocket, ["realtime"])`.
    """
    subprotocol = choose_subprotocol(websocket.scope.get("subprotocols") or [], supported)
    await websocket.accept(subprotocol=subprotocol)
    return subprotocol


class WebSocketTransport:
    """A session's view of an accepted WebSocket: messages in (None once the client has
    gone), text and binary out, close."""

    def __init__(self, websocket: WebSocket):
        self.websocket = websocket

    async def receive(self) -> str | bytes | None:
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        return text if text is not None else bytes(message.get("bytes") or b"")

    async def send_text(self, text: str) -> None:
        await self.websocket.send_text(text)

    send = send_text

    async def send_bytes(self, data: bytes) -> None:
        await self.websocket.send_bytes(data)

    async def close(self, code: int, reason: str) -> None:
        await self.websocket.close(code, reason)


async def refuse(scope: Scope, send: Send, exc: PocketserveError, reason: str) -> None:
    """Refuse a handshake from middleware, before accept: an HTTP denial with OpenAI's error
    body where the server supports it (uvicorn does), else a close with the nearest code.

    `reason` names the refusal in metrics and the access log.
    """
    ctx = current_request()
    if ctx is not None:
        ctx.extra[REFUSED] = reason
    if supports_denial(scope):
        await send_error(send, exc, websocket=True)
    else:
        await send({"type": "websocket.close", "code": close_code_for(exc.status),
                    "reason": close_reason(exc.message)})


async def answer_error(scope: Scope, send: Send, exc: PocketserveError, reason: str) -> None:
    """Middleware's one way to say no: an HTTP error answer, or a refused handshake."""
    if scope["type"] == "websocket":
        await refuse(scope, send, exc, reason)
    else:
        await send_error(send, exc, path=scope["path"])
