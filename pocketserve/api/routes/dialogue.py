"""POST /v1/dialogue (one spoken turn), GET and DELETE /v1/dialogue/{session_id}.

The turn itself is `pocketserve.voice.dialogue`; this route reads the form, picks the models
and shapes the events as JSON or SSE.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Path, Request

from pocketserve.api.capability import model_for
from pocketserve.api.deps import DialogueStoreDep, RegistryDep, SettingsDep
from pocketserve.api.errors import error_body
from pocketserve.api.openapi import MODEL_CALL, Responses, answers
from pocketserve.api.protocol.answers import ErrorResponse
from pocketserve.api.protocol.dialogue import (
    DialogueForm,
    read_dialogue_form,
    session_answer,
    turn_answer,
    turn_event,
)
from pocketserve.api.protocol.voice_answers import (
    DIALOGUE_EVENTS,
    DialogueDeleted,
    DialogueSession,
    DialogueTurn,
)
from pocketserve.api.streaming import primed, typed_sse_response
from pocketserve.config import Settings
from pocketserve.errors import PocketserveError
from pocketserve.ops.transcription import TranscriptionRequest, VadParams
from pocketserve.serving.context import current_request
from pocketserve.serving.registry import ModelRegistry
from pocketserve.voice.dialogue import TurnEvent, TurnRequest, dialogue_turn
from pocketserve.voice.reply import DEFAULT_INSTRUCTIONS, Speaking

router = APIRouter()

_NOT_FOUND: Responses = {404: {
    "model": ErrorResponse, "description": "No such session for this API key (never made, "
    "deleted, or forgotten after being idle)."}}
_TURN_DOCS: dict[str, Any] = {
    "response_model": None,
    "responses": {**answers(DialogueTurn, *MODEL_CALL, stream=DIALOGUE_EVENTS, named=True,
                            description="The turn as JSON, or with `stream` its events "
                            "(each with an `event:` line naming its type)."),
                  404: {"model": ErrorResponse, "description": "No such model "
                        "(`model_not_found`, naming the field), or no such session for this "
                        "API key (`session_not_found`)."}},
    "openapi_extra": {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"$ref": "#/components/schemas/DialogueRequest"}}}}},
}
SessionId = Path(description="A session_id from POST /v1/dialogue.")


def _owner() -> str | None:
    ctx = current_request()
    return ctx.api_key_id if ctx is not None else None


@router.post("/v1/dialogue", **_TURN_DOCS)
async def dialogue(request: Request, registry: RegistryDep, settings: SettingsDep,
                   store: DialogueStoreDep) -> Any:
    """Hear the audio, answer it with the session's history, speak the answer."""
    form, audio = await read_dialogue_form(await request.form(max_files=1, max_fields=64),
                                           settings.audio_max_bytes)
    turn = _turn(form, audio, registry, settings)
    owner = _owner()
    session = store.get(form.session_id, owner) if form.session_id else store.new(owner)
    events = dialogue_turn(registry, store, session, turn)
    if form.stream:
        return typed_sse_response(_sse(await primed(events)))
    async with aclosing(events):  # type: ignore[type-var]
        collected = [event async for event in events]
    return turn_answer(collected, form.response_format)


def _turn(form: DialogueForm, audio: bytes, registry: ModelRegistry,
          settings: Settings) -> TurnRequest:
    """The turn's request, each model checked to do its part (400/404 naming the field)."""
    chat = model_for(registry, form.model or settings.realtime_chat_model, "chat",
                     "generate text")
    hears = _model(registry, form.transcription_model, settings.realtime_transcription_model,
                   "transcription", "transcribe audio", "transcription_model")
    speaks = _model(registry, form.speech_model, settings.realtime_speech_model, "speech",
                    "generate speech", "speech_model")
    return TurnRequest(
        # Whisper's VAD filter always: on silence Whisper alone "hears" words ("You").
        transcription=TranscriptionRequest(audio=audio, language=form.language,
                                           prompt=form.prompt, vad=VadParams(),
                                           max_seconds=settings.audio_max_seconds),
        transcription_model=hears, chat_model=chat.id,
        speaking=Speaking(speaks, form.voice, form.speed), response_format=form.response_format,
        instructions=form.instructions or DEFAULT_INSTRUCTIONS,
        max_tokens=form.max_tokens or settings.realtime_max_output_tokens,
        temperature=form.temperature if form.temperature is not None
        else settings.realtime_temperature)


def _model(registry: ModelRegistry, name: str | None, default: str, capability: str,
           doing: str, param: str) -> str:
    try:
        return model_for(registry, name or default, capability, doing).id
    except PocketserveError as exc:
        exc.param = param
        raise


async def _sse(events: AsyncIterator[TurnEvent]) -> AsyncIterator[dict[str, Any]]:
    async with aclosing(events):  # type: ignore[type-var]
        try:
            async for event in events:
                yield turn_event(event)
        except PocketserveError as exc:
            yield {"type": "error", **error_body(exc.message, exc.kind, exc.param, exc.code)}


@router.get("/v1/dialogue/{session_id}", response_model=None,
            responses={**answers(DialogueSession), **_NOT_FOUND})
async def get_session(store: DialogueStoreDep,
                      session_id: str = SessionId) -> dict[str, Any]:
    """The turns the session remembers, as chat messages (what the chat model reads next)."""
    session = store.get(session_id, _owner())
    messages = [{"role": m.role, "content": m.text()} for m in session.messages()]
    return session_answer(session.id, messages, session.dropped_turns, session.created_at,
                          store.expires_in(session))


@router.delete("/v1/dialogue/{session_id}", response_model=None,
               responses={**answers(DialogueDeleted), **_NOT_FOUND})
async def delete_session(store: DialogueStoreDep,
                         session_id: str = SessionId) -> dict[str, Any]:
    store.delete(session_id, _owner())
    return {"object": "dialogue.session.deleted", "id": session_id, "deleted": True}
