"""POST /v1/audio/speech request schema (OpenAI's CreateSpeechRequest)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pocketserve.api.protocol.common import Body, Request, examples
from pocketserve.audio.encode import AudioFormat
from pocketserve.engines.speech import MAX_INPUT_CHARS
from pocketserve.errors import InvalidRequest
from pocketserve.ops.speech import SpeechRequest


class CustomVoice(Request):
    """OpenAI's `{"id": "voice_1234"}` form; here the id is any voice this model lists."""

    id: str


class CreateSpeechRequest(Body):
    model_config = examples(
        {"model": "tts-1", "input": "Hello from pocketserve.", "voice": "alloy"},
        {"model": "tts-1", "input": "Hi.", "voice": "alloy", "response_format": "pcm",
         "stream_format": "sse"},
    )

    model: str
    input: str
    voice: str | CustomVoice
    instructions: str | None = Field(default=None, max_length=4096)
    response_format: AudioFormat = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    stream_format: Literal["sse", "audio"] = "audio"

    @property
    def voice_name(self) -> str:
        return self.voice if isinstance(self.voice, str) else self.voice.id

    def to_engine(self) -> SpeechRequest:
        """The engine's request; empty or over-long input is refused here with its name."""
        if not self.input.strip():
            raise InvalidRequest("input must not be empty.", param="input")
        if len(self.input) > MAX_INPUT_CHARS:
            raise InvalidRequest(
                f"input is {len(self.input)} characters long; the maximum is "
                f"{MAX_INPUT_CHARS}.", param="input", code="string_above_max_length")
        return SpeechRequest(input=self.input, voice=self.voice_name,
                             response_format=self.response_format, speed=self.speed,
                             instructions=self.instructions)
