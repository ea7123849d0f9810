"""Which served models a new session uses: the chat model the client named (or the default
for OpenAI's own realtime model names), and the configured transcription and speech models.
A transcription session (`intent=transcription`, or a transcription model in the URL) hears
with the model named, and answers nothing."""

from __future__ import annotations

from collections.abc import Callable

from pocketserve.catalog import takes_tools
from pocketserve.config import Settings
from pocketserve.errors import InvalidRequest, ModelNotFound
from pocketserve.realtime.config import SessionConfig
from pocketserve.realtime.conversation import new_id
from pocketserve.realtime.errors import ClientError
from pocketserve.serving.registry import ModelRegistry

# OpenAI's transcription models: a session naming one hears with the configured default.
_OPENAI_TRANSCRIBERS = ("gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-realtime-whisper")


def is_openai_realtime_name(name: str) -> bool:
    return name.startswith(("gpt-realtime", "gpt-4o-realtime", "gpt-4o-mini-realtime",
                            "gpt-audio"))


def session_config(registry: ModelRegistry, settings: Settings, model: str | None,
                   intent: str | None = None) -> SessionConfig:
    """The new session's settings; InvalidRequest/ModelNotFound name a model it cannot use."""
    if intent not in (None, "", "transcription", "conversation"):
        raise InvalidRequest(f"Invalid value for 'intent': {intent!r}; use 'transcription' "
                             "or leave it out.", param="intent")
    resolve = transcription_resolver(registry, settings)
    hears = _served(registry, settings.realtime_transcription_model)
    speaks = _served(registry, settings.realtime_speech_model)

    def config(chat: str, transcriber: str, kind: str = "realtime",
               tools: bool = False) -> SessionConfig:
        return SessionConfig(id=new_id("sess"), model=chat, transcription_model=transcriber,
                             speech_model=speaks, token_cap=settings.realtime_max_output_tokens,
                             temperature=settings.realtime_temperature, type=kind,
                             resolve_transcription=resolve, takes_tools=tools)

    heard_by = _transcriber(registry, model)
    if intent == "transcription" or heard_by is not None:
        if heard_by is None and model:
            try:
                heard_by = resolve(model)
            except ClientError as exc:
                raise InvalidRequest(exc.message, param="model") from None
        return config(settings.realtime_chat_model, heard_by or hears, "transcription")
    name = model or settings.realtime_chat_model
    try:
        spec = registry.spec(name)
    except ModelNotFound:
        if not is_openai_realtime_name(name):
            raise
        spec = registry.spec(settings.realtime_chat_model)
    if spec.capability != "chat":
        raise InvalidRequest(f"The model {spec.id!r} cannot hold a conversation (it serves "
                             f"{spec.capability}); name a chat model.", param="model")
    return config(spec.id, hears, tools=takes_tools(spec))


def transcription_resolver(registry: ModelRegistry,
                           settings: Settings) -> Callable[[str], str]:
    """`audio.input.transcription.model` -> the served model's id, or a ClientError."""
    def resolve(name: str) -> str:
        param = "session.audio.input.transcription.model"
        try:
            spec = registry.spec(name)
        except ModelNotFound:
            if name.startswith(_OPENAI_TRANSCRIBERS):
                return _served(registry, settings.realtime_transcription_model)
            raise ClientError(f"The model {name!r} does not exist or is not served here.",
                              code="model_not_found", param=param) from None
        if spec.capability != "transcription":
            raise ClientError(f"The model {spec.id!r} does not transcribe audio (it serves "
                              f"{spec.capability}).", param=param)
        return spec.id
    return resolve


def _transcriber(registry: ModelRegistry, model: str | None) -> str | None:
    """The served transcription model `model` names, if it names one."""
    if not model:
        return None
    try:
        spec = registry.spec(model)
    except ModelNotFound:
        return None
    return spec.id if spec.capability == "transcription" else None


def _served(registry: ModelRegistry, name: str) -> str:
    """The served id for `name`; the name itself when it is not served (using it fails then,
    with ModelNotFound, in the one place that needs it)."""
    try:
        return registry.spec(name).id
    except ModelNotFound:
        return name
