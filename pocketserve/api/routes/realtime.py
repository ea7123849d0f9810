"""WS /v1/realtime: OpenAI's Realtime API. The session itself is `pocketserve.realtime`."""

from __future__ import annotations

import json

from fastapi import APIRouter, WebSocket

from pocketserve.api.websocket import WebSocketTransport, accept
from pocketserve.config import Settings
from pocketserve.errors import PocketserveError
from pocketserve.realtime.models import session_config
from pocketserve.realtime.response import error_event
from pocketserve.realtime.session import RealtimeSession
from pocketserve.serving.registry import ModelRegistry

router = APIRouter()


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket, model: str | None = None,
                   intent: str | None = None) -> None:
    registry: ModelRegistry = websocket.app.state.registry
    settings: Settings = websocket.app.state.settings
    await accept(websocket, ["realtime"])
    try:
        config = session_config(registry, settings, model, intent)
    except PocketserveError as exc:
        await websocket.send_text(json.dumps({"event_id": "event_refused", **error_event(
            exc.message, exc.kind, exc.code or "model_not_found", exc.param)}))
        await websocket.close(1008, "unusable model")
        return
    beta = "realtime=v1" in websocket.headers.get("openai-beta", "")
    session = RealtimeSession(registry, WebSocketTransport(websocket), config,
                              settings.realtime_idle_timeout_s, beta=beta)
    await session.run()
