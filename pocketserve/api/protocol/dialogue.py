"""POST /v1/dialogue: the multipart form, and the turn's answer as JSON or as SSE events.

The form is strict: a field this route does not know is a 400 naming it (a misspelt
`sesion_id` must not quietly start a new conversation). Empty text fields count as absent, as
browsers send them for untouched inputs.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.datastructures import FormData

from pocketserve.api.protocol.transcription import read_upload, upload_file, whisper_language
from pocketserve.audio.encode import MEDIA_TYPES, AudioFormat
from pocketserve.errors import InvalidRequest
from pocketserve.realtime.config import MAX_OUTPUT_TOKENS
from pocketserve.voice.audio_out import whole_wav
from pocketserve.voice.dialogue import AudioChunk, Heard, ReplyDelta, TurnDone, TurnEvent


class DialogueForm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str | None = Field(default=None, description="The session to continue (from "
                                   "an earlier answer); absent: a new session.")
    model: str | None = Field(default=None, description="The chat model that answers; "
                              "default: the server's realtime_chat_model.")
    transcription_model: str | None = Field(default=None, description="The model that hears "
                                            "the audio; default: realtime_transcription_model.")
    speech_model: str | None = Field(default=None, description="The model that speaks the "
                                     "answer; default: realtime_speech_model.")
    voice: str = Field(default="alloy", min_length=1, description="A voice of the speech "
                       "model (GET /v1/audio/voices).")
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    response_format: AudioFormat = Field(default="mp3", description="The answer's audio "
                                         "format (24 kHz mono; pcm is raw s16le).")
    instructions: str | None = Field(default=None, max_length=4096, description="The system "
                                     "prompt; default: a short-answering voice assistant.")
    language: str | None = Field(default=None, description="The spoken language, ISO-639-1; "
                                 "detected when absent.")
    prompt: str | None = Field(default=None, description="Words and spellings the "
                               "transcription should expect.")
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS, description="The "
                                   "most tokens the answer may have; default: the server's "
                                   "realtime_max_output_tokens.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    stream: bool = Field(default=False, description="Server-sent events (dialogue.transcript, "
                         "dialogue.reply.delta, dialogue.audio.delta, dialogue.done) instead "
                         "of one JSON answer.")

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        return None if value is None else whisper_language(value)


async def read_dialogue_form(form: FormData, max_bytes: int) -> tuple[DialogueForm, bytes]:
    """The validated fields and the audio, or a 400/413 naming the field."""
    upload = upload_file(form, max_bytes)
    fields: dict[str, Any] = {}
    for key, value in form.multi_items():
        if key == "file":
            continue
        if not isinstance(value, str):
            raise InvalidRequest(f"'{key}' must be a text field, not a file.", param=key)
        if key in fields:
            raise InvalidRequest(f"'{key}' is given more than once.", param=key)
        if value.strip():
            fields[key] = value
    try:
        parsed = DialogueForm.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    return parsed, await read_upload(upload, max_bytes)


def form_schema(components: dict[str, Any]) -> dict[str, Any]:
    """The form as /openapi.json shows it (FastAPI cannot see a form read by hand)."""
    schema = DialogueForm.model_json_schema(ref_template="#/components/schemas/{model}")
    fields = {name: _not_null(prop) for name, prop in schema["properties"].items()}
    fields["file"] = {"type": "string", "format": "binary", "description": "What the user "
                      "said: any format ffmpeg decodes (wav, mp3, m4a, flac, ogg, webm, ...)."}
    order = ["file", *(name for name in fields if name != "file")]
    return {"title": "DialogueRequest", "type": "object", "required": ["file"],
            "additionalProperties": False,
            "description": "One spoken turn: audio in; transcript, answer and its audio out.",
            "properties": {name: fields[name] for name in order},
            "examples": FORM_EXAMPLES}


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    branches = [b for b in prop.get("anyOf", []) if b != {"type": "null"}]
    if len(branches) != 1:
        return prop
    rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**branches[0], **rest}


FORM_EXAMPLES: list[dict[str, Any]] = [
    {"file": "fox.wav", "max_tokens": 40, "temperature": 0},
    {"file": "fox.wav", "response_format": "wav", "max_tokens": 40, "temperature": 0,
     "stream": True},
]


# -- answers ---------------------------------------------------------------------------------


def _done_fields(done: TurnDone) -> dict[str, Any]:
    return {"session_id": done.session_id, "transcript": done.transcript, "reply": done.reply,
            "timings": done.timings, "usage": done.usage, "turns": done.turns,
            "dropped_turns": done.dropped_turns}


def turn_answer(events: list[TurnEvent], fmt: str) -> dict[str, Any]:
    """The whole turn as one JSON object; the audio is one file, base64."""
    audio = b"".join(e.data for e in events if isinstance(e, AudioChunk))
    if fmt == "wav":
        audio = whole_wav(audio)
    done = next(e for e in events if isinstance(e, TurnDone))
    return {"object": "dialogue.turn", **_done_fields(done),
            "audio": base64.b64encode(audio).decode(), "response_format": fmt,
            "media_type": MEDIA_TYPES[fmt]}


def turn_event(event: TurnEvent) -> dict[str, Any]:
    """One server-sent event's data; its `type` is also the event's name."""
    if isinstance(event, Heard):
        return {"type": "dialogue.transcript", "session_id": event.session_id,
                "transcript": event.transcript}
    if isinstance(event, ReplyDelta):
        return {"type": "dialogue.reply.delta", "delta": event.text}
    if isinstance(event, AudioChunk):
        return {"type": "dialogue.audio.delta", "audio": base64.b64encode(event.data).decode()}
    return {"type": "dialogue.done", **_done_fields(event)}


def session_answer(session_id: str, messages: list[dict[str, str]], dropped: int,
                   created_at: float, expires_in: float | None) -> dict[str, Any]:
    return {"object": "dialogue.session", "id": session_id, "messages": messages,
            "turns": len(messages) // 2, "dropped_turns": dropped,
            "created_at": int(created_at),
            "expires_in_s": None if expires_in is None else round(expires_in, 1)}
