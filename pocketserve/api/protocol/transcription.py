"""OpenAI's /v1/audio/transcriptions and /v1/audio/translations: the multipart form, and the
answer in each `response_format`.

The form is read by hand rather than with FastAPI `Form()` parameters because OpenAI's SDK
sends lists and objects in bracket notation (`timestamp_granularities[]`,
`chunking_strategy[type]`), and plain clients send `timestamp_granularities` without brackets;
both spellings must reach one field.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from starlette.datastructures import FormData, UploadFile

from pocketserve.api.protocol.wire import check_integers
from pocketserve.audio.languages import language_code, language_name
from pocketserve.audio.subtitles import to_srt, to_vtt
from pocketserve.engines.transcription import Transcript
from pocketserve.errors import InvalidRequest, PayloadTooLarge
from pocketserve.ops.transcription import Segment, Task, TranscriptionRequest, VadParams

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
Granularity = Literal["segment", "word"]


def _segments_only() -> list[Granularity]:
    return ["segment"]


class ChunkingStrategy(BaseModel):
    """OpenAI's `chunking_strategy` ("auto" or a `server_vad` object), mapped onto Whisper's
    VAD filter: "auto" takes the filter's defaults."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["auto", "server_vad"]
    threshold: float | None = Field(default=None, ge=0, le=1)
    prefix_padding_ms: int | None = Field(default=None, ge=0)
    silence_duration_ms: int | None = Field(default=None, ge=0)


class TranscriptionForm(BaseModel):
    """The form fields; unknown ones (e.g. `user`) are ignored, `include` is refused."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, description="A transcription model or alias "
                       "(whisper-1 is Whisper base).")
    language: str | None = Field(default=None, description="The spoken language, ISO-639-1 "
                                 "(e.g. 'en'); detected when absent.")
    prompt: str | None = Field(default=None, description="Text that came before, or words "
                               "and spellings to expect.")
    response_format: ResponseFormat = "json"
    temperature: float = Field(default=0.0, ge=0, le=1)
    timestamp_granularities: list[Granularity] = Field(
        default_factory=_segments_only, description="With verbose_json: `segment` and/or "
        "`word` timestamps. Sent as repeated `timestamp_granularities[]` (OpenAI's SDK) or "
        "`timestamp_granularities` fields.")
    stream: bool = Field(default=False, description="Server-sent events: one "
                         "transcript.text.delta per decoded segment, then transcript.text.done.")
    chunking_strategy: ChunkingStrategy | None = Field(
        default=None, description="\"auto\" or \"server_vad\", or a server_vad object (as "
        "JSON text or as `chunking_strategy[key]` fields): Whisper's VAD filter.")

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else whisper_language(value)

    @model_validator(mode="after")
    def _integers_fit(self) -> TranscriptionForm:
        check_integers(self.model_dump())
        return self

    @field_validator("chunking_strategy", mode="before")
    @classmethod
    def _auto(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    def vad(self) -> VadParams | None:
        s = self.chunking_strategy
        if s is None:
            return None
        return VadParams(threshold=s.threshold, min_silence_ms=s.silence_duration_ms,
                         speech_pad_ms=s.prefix_padding_ms)

    def to_engine(self, audio: bytes, task: Task, max_seconds: float) -> TranscriptionRequest:
        words = "word" in self.timestamp_granularities
        if words and self.response_format != "verbose_json":
            raise InvalidRequest("timestamp_granularities needs response_format "
                                 "'verbose_json'.", param="timestamp_granularities")
        return TranscriptionRequest(
            audio=audio, task=task, language=self.language, prompt=self.prompt or None,
            temperature=self.temperature, word_timestamps=words, vad=self.vad(),
            max_seconds=max_seconds)


async def read_form(form: FormData, task: Task, max_bytes: int,
                    default_model: str | None = None) -> tuple[TranscriptionForm, bytes]:
    """The validated fields and the uploaded file's bytes, or a 400/413 naming the field;
    `default_model` stands in for a missing `model` (the short /v1/speech-to-text alias)."""
    upload = upload_file(form, max_bytes)
    fields = _fields(form, translation=task == "translate")
    if default_model is not None:
        fields.setdefault("model", default_model)
    try:
        parsed = TranscriptionForm.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    return parsed, await read_upload(upload, max_bytes)


def upload_file(form: FormData, max_bytes: int) -> UploadFile:
    """The form's `file`: present, a file (not a text field), within `max_bytes` as declared."""
    upload = form.get("file")
    if upload is None:
        raise InvalidRequest("Missing required parameter: 'file'.", param="file",
                             code="missing")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("'file' must be an uploaded file (multipart/form-data), not a "
                             "text field.", param="file")
    if upload.size is not None and upload.size > max_bytes:
        raise _too_large(max_bytes)
    return upload


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """The file's bytes, reading at most one past the limit (413 past it)."""
    audio = await upload.read(max_bytes + 1)
    if len(audio) > max_bytes:
        raise _too_large(max_bytes)
    return audio


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The audio file is larger than the limit of {max_bytes} bytes "
                           f"({max_bytes / 2**20:g} MiB).", param="file",
                           code="file_too_large")


def _fields(form: FormData, translation: bool) -> dict[str, Any]:
    """Plain fields, lists from `name` or `name[]`, objects from `name[key]` or JSON text."""
    fields: dict[str, Any] = {}
    vad: dict[str, str] = {}
    for key, value in form.multi_items():
        if key == "file" or not isinstance(value, str):
            continue
        if key.startswith("chunking_strategy[") and key.endswith("]"):
            vad[key[len("chunking_strategy["):-1]] = value
        elif key in ("timestamp_granularities", "timestamp_granularities[]"):
            fields.setdefault("timestamp_granularities", []).append(value)
        elif key in ("include", "include[]"):
            raise InvalidRequest(f"include {value!r} is not supported: this server returns no "
                                 "token logprobs for transcripts.", param="include")
        else:
            fields[key] = value
    if vad:
        fields["chunking_strategy"] = vad
    elif isinstance(fields.get("chunking_strategy"), str) and \
            fields["chunking_strategy"].lstrip().startswith("{"):
        try:
            fields["chunking_strategy"] = json.loads(fields["chunking_strategy"])
        except json.JSONDecodeError as exc:
            raise InvalidRequest("chunking_strategy is not valid JSON.",
                                 param="chunking_strategy") from exc
    if translation:  # OpenAI's translation form has none of these; English is the target
        for name in ("language", "timestamp_granularities", "stream", "chunking_strategy"):
            fields.pop(name, None)
    return fields


_TRANSLATION_FIELDS = ("file", "model", "prompt", "response_format", "temperature")


def form_schema(task: Task, components: dict[str, Any]) -> dict[str, Any]:
    """The multipart form as /openapi.json shows it: the fields `_fields` reads for `task`,
    and the file. Nested schemas (ChunkingStrategy) are added to `components`."""
    schema = TranscriptionForm.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, nested in schema.pop("$defs", {}).items():
        components.setdefault(name, nested)
    fields = {name: _not_null(prop) for name, prop in schema["properties"].items()}
    fields["chunking_strategy"] = {
        "description": fields["chunking_strategy"]["description"],
        "anyOf": [{"type": "string", "enum": ["auto", "server_vad"]},
                  {"$ref": "#/components/schemas/ChunkingStrategy"}]}
    fields["file"] = {"type": "string", "format": "binary", "description": "The audio: any "
                      "format ffmpeg decodes (wav, mp3, m4a, flac, ogg, webm, ...)."}
    if task == "translate":
        fields = {name: fields[name] for name in _TRANSLATION_FIELDS}
    order = ["file", *(name for name in fields if name != "file")]
    what = "English text" if task == "translate" else "a transcript"
    return {"title": schema["title"], "type": "object", "required": ["file", "model"],
            "description": f"Audio in, {what} out. `include` (token logprobs) is not "
                           "supported and is refused.",
            "properties": {name: fields[name] for name in order},
            "examples": FORM_EXAMPLES[task]}


def alias_form_schema(components: dict[str, Any]) -> dict[str, Any]:
    """/v1/speech-to-text's form: the transcription form with `model` optional."""
    schema = form_schema("transcribe", components)
    return {**schema, "title": "SpeechToTextRequest", "required": ["file"],
            "description": "Audio in, a transcript out; `model` defaults to the server's "
                           "realtime_transcription_model.",
            "examples": [{"file": "fox.wav"}, {"file": "fox.wav", "language": "en",
                                               "response_format": "text"}]}


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A form field is absent or text, never null: drop the `null` branch pydantic adds."""
    branches = [b for b in prop.get("anyOf", []) if b != {"type": "null"}]
    if len(branches) != 1:
        return prop
    rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**branches[0], **rest}


# Request examples; the file is named, and tests/e2e/test_openapi_examples.py speaks it.
FORM_EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "transcribe": [
        {"file": "fox.wav", "model": "whisper-1"},
        {"file": "fox.wav", "model": "whisper-1", "response_format": "verbose_json",
         "timestamp_granularities": ["word", "segment"]},
        {"file": "fox.wav", "model": "whisper-1", "response_format": "srt"},
        {"file": "fox.wav", "model": "whisper-1", "stream": True},
    ],
    "translate": [{"file": "buenos_dias.wav", "model": "whisper-1"}],
}


# -- answers ---------------------------------------------------------------------------------


def transcript_response(transcript: Transcript, form: TranscriptionForm,
                        task: Task) -> Response:
    fmt = form.response_format
    if fmt == "text":
        return PlainTextResponse(transcript.text + "\n")
    if fmt == "srt":
        return PlainTextResponse(to_srt(transcript.segments))
    if fmt == "vtt":
        return PlainTextResponse(to_vtt(transcript.segments), media_type="text/vtt")
    usage = {"type": "duration", "seconds": math.ceil(transcript.info.duration)}
    if fmt == "json":
        body: dict[str, Any] = {"text": transcript.text}
        if task == "transcribe":
            body["usage"] = usage
        return JSONResponse(body)
    return JSONResponse(_verbose(transcript, form, task, usage))


def _verbose(transcript: Transcript, form: TranscriptionForm, task: Task,
             usage: dict[str, Any]) -> dict[str, Any]:
    language = "english" if task == "translate" else language_name(transcript.info.language)
    body: dict[str, Any] = {"task": task, "language": language,
                            "duration": transcript.info.duration, "text": transcript.text}
    granularities = form.timestamp_granularities if task == "transcribe" else ["segment"]
    if "segment" in granularities:
        body["segments"] = [_segment(s) for s in transcript.segments]
    if "word" in granularities:
        body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end}
                         for s in transcript.segments for w in (s.words or [])]
    if task == "transcribe":
        body["usage"] = usage
    return body


def _segment(s: Segment) -> dict[str, Any]:
    return {"id": s.id, "seek": s.seek, "start": s.start, "end": s.end, "text": s.text,
            "tokens": s.tokens, "temperature": s.temperature, "avg_logprob": s.avg_logprob,
            "compression_ratio": s.compression_ratio, "no_speech_prob": s.no_speech_prob}


def delta_event(delta: str) -> dict[str, Any]:
    return {"type": "transcript.text.delta", "delta": delta}


def done_event(text: str) -> dict[str, Any]:
    return {"type": "transcript.text.done", "text": text}


def whisper_language(value: str) -> str:
    """The ISO-639-1 code Whisper takes for `value`; a ValueError (a 400 naming the field)
    when Whisper knows no such language."""
    code = language_code(value)
    if code is None:
        raise ValueError(f"{value!r} is not a language code Whisper knows (ISO-639-1, "
                         "e.g. 'en', 'fr', 'de')")
    return code
