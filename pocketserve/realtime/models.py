"""Which served models a new session uses: the chat model the client named (or the default
for OpenAI's own realtime model names), and the configured transcription and speech models."""

from __future__ import annotations

from pocketserve.config import Settings
from pocketserve.errors import InvalidRequest, ModelNotFound
from pocketserve.realtime.config import SessionConfig
from pocketserve.realtime.conversation import new_id
from pocketserve.serving.registry import ModelRegistry


def is_openai_realtime_name(name: str) -> bool:
    return name.startswith(("gpt-realtime", "gpt-4o-realtime", "gpt-4o-mini-realtime",
                            "gpt-audio"))


def session_config(registry: ModelRegistry, settings: Settings,
                   model: str | None) -> SessionConfig:
    """The new session's settings; InvalidRequest/ModelNotFound name a model it cannot use."""
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
    hears = _served(registry, settings.realtime_transcription_model)
    speaks = _served(registry, settings.realtime_speech_model)
    return SessionConfig(id=new_id("sess"), model=spec.id, transcription_model=hears,
                         speech_model=speaks, token_cap=settings.realtime_max_output_tokens,
                         temperature=settings.realtime_temperature)


def _served(registry: ModelRegistry, name: str) -> str:
    """The served id for `name`; the name itself when it is not served (using it fails then,
    with ModelNotFound, in the one place that needs it)."""
    try:
        return registry.spec(name).id
    except ModelNotFound:
        return name
