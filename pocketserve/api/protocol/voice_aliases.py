"""The reference design's short REST names, as request shapes over our own requests.

Each converts itself to the request of the OpenAI-shaped route it stands for (speech,
completions), so the alias runs that route's code; unknown fields are a 400 naming them.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from pocketserve.api.protocol.common import Body, SamplingKnobs, examples
from pocketserve.api.protocol.completions import CompletionRequest
from pocketserve.api.protocol.speech import CreateSpeechRequest
from pocketserve.audio.encode import AudioFormat


def _strict(config: ConfigDict) -> ConfigDict:
    return ConfigDict(**{**config, "extra": "forbid"})


class TextToSpeechRequest(Body):
    """POST /v1/text-to-speech: `text` in; base64 audio in JSON, or with `stream` the audio."""

    model_config = _strict(examples(
        {"text": "Hello from pocketserve.", "format": "wav"},
        {"text": "Hello from pocketserve.", "format": "mp3", "stream": True},
    ))

    text: str
    format: AudioFormat = Field(default="mp3", description="The audio format (24 kHz mono).")
    stream: bool = Field(default=False, description="Send the audio itself, chunked as it is "
                         "made, instead of JSON.")
    voice: str = Field(default="alloy", min_length=1)
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    model: str | None = Field(default=None, description="A speech model; default: the "
                              "server's realtime_speech_model.")

    def to_speech(self, default_model: str) -> CreateSpeechRequest:
        return CreateSpeechRequest(model=self.model or default_model, input=self.text,
                                   voice=self.voice, response_format=self.format,
                                   speed=self.speed)


class GenerateRequest(SamplingKnobs):
    """POST /v1/generate: a prompt continued by a chat model (as /v1/completions)."""

    model_config = _strict(examples(
        {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0},
    ))

    prompt: str = Field(min_length=1)
    max_tokens: int | None = Field(default=16, ge=1)
    model: str | None = Field(default=None, description="A chat model; default: the "
                              "server's realtime_chat_model.")

    def to_completion(self, default_model: str) -> CompletionRequest:
        knobs = self.model_dump(exclude={"prompt", "max_tokens", "model"})
        return CompletionRequest(model=self.model or default_model, prompt=self.prompt,
                                 max_tokens=self.max_tokens, **knobs)


__all__ = ["Body", "GenerateRequest", "TextToSpeechRequest"]
