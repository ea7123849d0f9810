"""Speech to text: /v1/audio/transcriptions and /v1/audio/translations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request, Response

from pocketserve.api.capability import model_for
from pocketserve.api.deps import RegistryDep, SettingsDep
from pocketserve.api.openapi import MODEL_CALL, answers, ref
from pocketserve.api.protocol.answers import (
    ErrorResponse,
    Transcription,
    TranscriptTextDelta,
    TranscriptTextDone,
    VerboseTranscription,
)
from pocketserve.api.protocol.transcription import (
    delta_event,
    done_event,
    read_form,
    transcript_response,
)
from pocketserve.api.streaming import primed, sse_response
from pocketserve.config import Settings
from pocketserve.engines.transcription import Transcript
from pocketserve.ops.transcription import TRANSCRIBE, Segment, Task, TranscriptEvent
from pocketserve.serving.registry import ModelRegistry

router = APIRouter()

_FORM_LIMITS = {"max_files": 1, "max_fields": 64}
_TEXT = {"schema": {"type": "string"}}


def form_docs(form: str, stream: bool) -> dict[str, Any]:
    """The decorator's documentation: the form (parsed by hand, so FastAPI cannot see it) and
    every answer format."""
    events = (TranscriptTextDelta, TranscriptTextDone, ErrorResponse) if stream else ()
    transcripts = {"schema": {"anyOf": [{"$ref": ref(Transcription)},
                                        {"$ref": ref(VerboseTranscription)}]}}
    responses = answers(None, *MODEL_CALL, stream=events, description="json and verbose_json "
                        "as JSON; text and srt as text/plain; vtt as text/vtt.",
                        media={"application/json": transcripts, "text/plain": _TEXT,
                               "text/vtt": _TEXT})
    return {"response_model": None, "responses": responses, "openapi_extra": {"requestBody": {
        "required": True, "content": {"multipart/form-data": {
            "schema": {"$ref": f"#/components/schemas/{form}"}}}}}}


@router.post("/v1/audio/transcriptions", **form_docs("CreateTranscriptionRequest", stream=True))
async def transcriptions(request: Request, registry: RegistryDep,
                         settings: SettingsDep) -> Response:
    return await handle(request, registry, settings, "transcribe")


@router.post("/v1/audio/translations", **form_docs("CreateTranslationRequest", stream=False))
async def translations(request: Request, registry: RegistryDep,
                       settings: SettingsDep) -> Response:
    return await handle(request, registry, settings, "translate")


async def handle(request: Request, registry: ModelRegistry, settings: Settings,
                 task: Task, default_model: str | None = None) -> Response:
    """Read the form, transcribe, answer in its response_format (also /v1/speech-to-text's
    path, which names no model)."""
    form_data = await request.form(**_FORM_LIMITS)
    form, audio = await read_form(form_data, task, settings.audio_max_bytes, default_model)
    spec = model_for(registry, form.model, "transcription", "transcribe audio")
    payload = form.to_engine(audio, task, settings.audio_max_seconds)
    events = registry.stream(spec.id, TRANSCRIBE, payload)
    if form.stream:
        return sse_response(await primed(_stream(events)))
    transcript = Transcript()
    async with aclosing(events):  # type: ignore[type-var]
        async for event in events:
            transcript.add(event)
    return transcript_response(transcript, form, task)


async def _stream(events: AsyncIterator[TranscriptEvent]) -> AsyncIterator[dict[str, Any]]:
    """One delta per decoded segment, then the whole text; deltas concatenate to it."""
    parts: list[str] = []
    async with aclosing(events):  # type: ignore[type-var]
        async for event in events:
            if not isinstance(event, Segment):
                continue
            delta = event.text if parts else event.text.lstrip()
            if delta:
                parts.append(delta)
                yield delta_event(delta)
    yield done_event("".join(parts).rstrip())
