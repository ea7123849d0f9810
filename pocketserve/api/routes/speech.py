"""POST /v1/audio/speech (streamed audio or SSE), GET /v1/audio/voices and /v1/audio/models."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from pocketserve.api.capability import model_for
from pocketserve.api.deps import RegistryDep
from pocketserve.api.errors import error_body
from pocketserve.api.openapi import MODEL_CALL, answers
from pocketserve.api.protocol.answers import (
    SpeechAudioDelta,
    SpeechAudioDone,
    SpeechModelList,
    SpeechStreamError,
    VoiceList,
)
from pocketserve.api.protocol.speech import CreateSpeechRequest
from pocketserve.api.streaming import primed
from pocketserve.audio.encode import MEDIA_TYPES
from pocketserve.errors import PocketserveError
from pocketserve.ops.speech import SPEECH, Audio, SpeechDone, SpeechEvent
from pocketserve.serving.registry import ModelRegistry

log = logging.getLogger("pocketserve.api")
router = APIRouter()
_NO_BUFFERING = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_AUDIO = {"schema": {"type": "string", "format": "binary"}}
_SPEECH_ANSWERS = answers(
    None, *MODEL_CALL, stream=(SpeechAudioDelta, SpeechAudioDone, SpeechStreamError), done=False,
    media={media_type: _AUDIO for media_type in dict.fromkeys(MEDIA_TYPES.values())},
    description="The audio in `response_format`, sent as it is made (chunked); with "
    "stream_format=sse, speech.audio.delta events then speech.audio.done.")
VoiceQuery = Annotated[str | None, Query(description="Only this speech model's voices.",
                                         openapi_examples={"tts-1": {
                                             "summary": "The voices of tts-1",
                                             "value": "tts-1"}})]


@router.post("/v1/audio/speech", response_class=StreamingResponse, responses=_SPEECH_ANSWERS)
async def create_speech(body: CreateSpeechRequest, registry: RegistryDep) -> StreamingResponse:
    events = await speech_events(body, registry)
    if body.stream_format == "sse":
        return StreamingResponse(_sse(events), media_type="text/event-stream",
                                 headers=_NO_BUFFERING)
    return audio_response(events, body.response_format)


async def speech_events(body: CreateSpeechRequest,
                        registry: ModelRegistry) -> AsyncIterator[SpeechEvent]:
    """The request's events, its first already here: a refused request still gets its 400
    (the first event waits for the first sentence)."""
    spec = model_for(registry, body.model, "speech", "generate speech")
    return await primed(registry.stream(spec.id, SPEECH, body.to_engine()))


def audio_response(events: AsyncIterator[SpeechEvent], fmt: str) -> StreamingResponse:
    """The audio itself, chunked as it is made."""
    return StreamingResponse(_audio(events), media_type=MEDIA_TYPES[fmt], headers=_NO_BUFFERING)


async def _audio(events: AsyncIterator[SpeechEvent]) -> AsyncIterator[bytes]:
    """Audio bytes as each sentence is encoded (chunked transfer)."""
    async with aclosing(events):  # type: ignore[type-var]
        try:
            async for event in events:
                if isinstance(event, Audio):
                    yield event.audio
        except PocketserveError as exc:
            # Headers are gone: the status cannot change, so the audio just ends early.
            log.error("speech stream ended early: %s", exc.message)


async def _sse(events: AsyncIterator[SpeechEvent]) -> AsyncIterator[bytes]:
    """OpenAI's speech.audio.delta events (base64 audio), then speech.audio.done.

    No `data: [DONE]` line, unlike chat: OpenAI's speech stream ends with its done event.
    """
    async with aclosing(events):  # type: ignore[type-var]
        try:
            async for event in events:
                if isinstance(event, Audio):
                    audio = base64.b64encode(event.audio).decode()
                    yield _frame({"type": "speech.audio.delta", "audio": audio})
                elif isinstance(event, SpeechDone):
                    yield _frame({"type": "speech.audio.done",
                                  "usage": msgspec.structs.asdict(event.usage)})
        except PocketserveError as exc:
            yield _frame({"type": "error", **error_body(exc.message, exc.kind, exc.param,
                                                        exc.code)})


def _frame(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


@router.get("/v1/audio/voices", response_model=None, responses=answers(VoiceList, 404))
async def list_voices(registry: RegistryDep, model: VoiceQuery = None) -> dict[str, Any]:
    """Every voice of every ready speech model (or of `model`), OpenAI names first."""
    wanted = model_for(registry, model, "speech", "generate speech").id if model else None
    data = []
    for status in registry.statuses():
        if status.capability != "speech" or (wanted and status.id != wanted):
            continue
        for voice in status.info.get("voices", ()):
            data.append({"object": "audio.voice", "id": voice["id"], "name": voice["id"],
                         "model": status.id, "language": voice["language"],
                         "backend_voice": voice["backend_voice"]})
    # `voices` is the shape Open WebUI reads for an OpenAI-compatible speech engine.
    names = dict.fromkeys(v["id"] for v in data)
    return {"object": "list", "data": data,
            "voices": [{"id": name, "name": name} for name in names]}


@router.get("/v1/audio/models", response_model=None, responses=answers(SpeechModelList))
async def list_speech_models(registry: RegistryDep) -> dict[str, Any]:
    """The speech models, in the shape Open WebUI reads (`models`) and OpenAI's (`data`)."""
    ids = [s.id for s in registry.statuses() if s.capability == "speech"]
    return {"object": "list", "data": [{"id": i, "object": "model"} for i in ids],
            "models": [{"id": i} for i in ids]}
