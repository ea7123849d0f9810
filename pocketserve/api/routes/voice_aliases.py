"""The reference design's short names, each a thin alias of one of our routes:

- POST /v1/speech-to-text: /v1/audio/transcriptions' form and code; `model` may be left out.
- POST /v1/text-to-speech: /v1/audio/speech's code; base64 audio in JSON (a wav with its real
  sizes, as the whole file is known), or the audio stream.
- POST /v1/generate: /v1/completions' code; the first choice's text as `generated_text`.

Where the client names no model, the voice defaults (realtime_*_model) are used.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from contextlib import aclosing
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from pocketserve.api.deps import RegistryDep, SettingsDep
from pocketserve.api.openapi import MODEL_CALL, answers
from pocketserve.api.protocol.voice_aliases import GenerateRequest, TextToSpeechRequest
from pocketserve.api.protocol.voice_answers import GeneratedText, TextToSpeechAudio
from pocketserve.api.routes.chat import completion
from pocketserve.api.routes.speech import audio_response, speech_events
from pocketserve.api.routes.transcription import form_docs, handle
from pocketserve.audio.encode import MEDIA_TYPES
from pocketserve.errors import InvalidRequest
from pocketserve.ops.speech import Audio, SpeechDone
from pocketserve.voice.audio_out import whole_wav

router = APIRouter()
T = TypeVar("T")
# /v1/audio/speech's names for this alias's fields.
_SPEECH_PARAMS = {"input": "text", "response_format": "format"}
_AUDIO = {"schema": {"type": "string", "format": "binary"}}


@router.post("/v1/speech-to-text", **form_docs("SpeechToTextRequest", stream=True))
async def speech_to_text(request: Request, registry: RegistryDep,
                         settings: SettingsDep) -> Response:
    return await handle(request, registry, settings, "transcribe",
                        default_model=settings.realtime_transcription_model)


@router.post("/v1/text-to-speech", response_model=None, responses=answers(
    TextToSpeechAudio, *MODEL_CALL, media={t: _AUDIO for t in dict.fromkeys(
        MEDIA_TYPES.values())},
    description="JSON with the base64 audio; with `stream`, the audio itself, chunked."))
async def text_to_speech(body: TextToSpeechRequest, registry: RegistryDep,
                         settings: SettingsDep) -> Any:
    speech = _converted(body.to_speech, settings.realtime_speech_model)
    try:
        events = await speech_events(speech, registry)
    except InvalidRequest as exc:
        exc.param = _SPEECH_PARAMS.get(exc.param or "", exc.param)
        raise
    if body.stream:
        return audio_response(events, body.format)
    audio, duration = bytearray(), 0.0
    async with aclosing(events):  # type: ignore[type-var]
        async for event in events:
            if isinstance(event, Audio):
                audio += event.audio
            elif isinstance(event, SpeechDone):
                duration = event.duration_s
    whole = whole_wav(bytes(audio)) if body.format == "wav" else bytes(audio)
    return {"audio": base64.b64encode(whole).decode(), "format": body.format,
            "media_type": MEDIA_TYPES[body.format], "model": registry.spec(speech.model).id,
            "duration_s": round(duration, 3)}


@router.post("/v1/generate", response_model=None, responses=answers(GeneratedText, *MODEL_CALL))
async def generate(body: GenerateRequest, registry: RegistryDep,
                   settings: SettingsDep) -> dict[str, Any]:
    answer = await completion(_converted(body.to_completion, settings.realtime_chat_model),
                              registry)
    assert isinstance(answer, dict)  # to_completion never streams
    choice = answer["choices"][0]
    return {"generated_text": choice["text"], "model": answer["model"],
            "finish_reason": choice["finish_reason"], "usage": answer.get("usage")}


def _converted(convert: Callable[[str], T], default_model: str) -> T:
    """The aliased route's request; a field it refuses is a 400, as if sent there."""
    try:
        return convert(default_model)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
