"""WS /ws/stt and /ws/tts: live transcription and synthesis. The sessions are
`pocketserve.live`; this only accepts, reads the query string's options and hands over."""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi import APIRouter, WebSocket

from pocketserve.api.capability import model_for
from pocketserve.api.websocket import WebSocketTransport, accept
from pocketserve.config import Settings
from pocketserve.errors import PocketserveError
from pocketserve.live.session import Bounds, LiveSession
from pocketserve.live.stt import SttConfig, SttSession
from pocketserve.live.tts import TtsConfig, TtsSession
from pocketserve.realtime.errors import ClientError
from pocketserve.realtime.response import error_event
from pocketserve.serving.registry import ModelRegistry

router = APIRouter()


def _resolver(registry: ModelRegistry, capability: str, doing: str) -> Callable[[str], str]:
    return lambda name: model_for(registry, name, capability, doing).id


def _bounds(settings: Settings) -> Bounds:
    return Bounds(settings.live_max_message_bytes, settings.live_idle_timeout_s,
                  settings.live_max_session_s)


async def _refuse(websocket: WebSocket, exc: ClientError | PocketserveError) -> None:
    """Options in the query string that cannot be used: one error event, then close."""
    await websocket.send_text(json.dumps(error_event(exc.message, exc.kind, exc.code,
                                                     exc.param)))
    await websocket.close(1008, "unusable options")


@router.websocket("/ws/stt")
async def live_transcription(websocket: WebSocket) -> None:
    registry: ModelRegistry = websocket.app.state.registry
    settings: Settings = websocket.app.state.settings
    await accept(websocket)
    resolve = _resolver(registry, "transcription", "transcribe audio")
    query = dict(websocket.query_params)
    session: LiveSession
    try:
        config = SttConfig(model=resolve(query.pop("model", "")
                                         or settings.realtime_transcription_model))
        config = config.updated(query, resolve)
    except (ClientError, PocketserveError) as exc:
        await _refuse(websocket, exc)
        return
    session = SttSession(registry, WebSocketTransport(websocket), config, _bounds(settings),
                         resolve)
    await session.run()


@router.websocket("/ws/tts")
async def live_speech(websocket: WebSocket) -> None:
    registry: ModelRegistry = websocket.app.state.registry
    settings: Settings = websocket.app.state.settings
    await accept(websocket)
    resolve = _resolver(registry, "speech", "generate speech")
    query = dict(websocket.query_params)
    try:
        config = TtsConfig(model=resolve(query.pop("model", "")
                                         or settings.realtime_speech_model), voice="alloy")
        config = config.updated(query, resolve)
    except (ClientError, PocketserveError) as exc:
        await _refuse(websocket, exc)
        return
    session = TtsSession(registry, WebSocketTransport(websocket), config, _bounds(settings),
                         resolve, settings.max_input_chars.get("speech", 10_000))
    await session.run()
