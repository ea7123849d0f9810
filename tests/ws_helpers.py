"""A test-only WebSocket echo route on the real app, until real WebSocket routes exist."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from pocketserve.api.app import create_app
from pocketserve.api.websocket import accept
from pocketserve.config import Settings
from pocketserve.serving.context import current_request

ECHO = "/v1/test/echo"
KEY = "sk-ws-test"


def ws_settings(**overrides: Any) -> Settings:
    """No models, one key (KEY), and `overrides`."""
    return Settings(**{"models": [], "api_keys": [KEY], **overrides})


def echo_app(settings: Settings) -> FastAPI:
    """create_app(settings) plus ECHO: accepts speaking `realtime`, then sends a hello with
    what the route saw (request id, subprotocol, key id) and echoes every text message."""
    app = create_app(settings)

    @app.websocket(ECHO)
    async def echo(websocket: WebSocket) -> None:
        chosen = await accept(websocket, ["realtime"])
        ctx = current_request()
        assert ctx is not None
        await websocket.send_json({"request_id": ctx.request_id, "subprotocol": chosen,
                                   "api_key_id": ctx.api_key_id})
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            pass

    return app
