"""Text to speech: encoded audio as each sentence is ready, then a summary."""

from __future__ import annotations

import msgspec

from pocketserve.ops.wire import Op


class SpeechRequest(msgspec.Struct, kw_only=True):
    input: str
    voice: str
    response_format: str = "mp3"
    speed: float = 1.0
    instructions: str | None = None


class Audio(msgspec.Struct, tag="audio"):
    audio: bytes  # encoded in the request's format


class SpeechUsage(msgspec.Struct):
    input_tokens: int  # the backend's own units (Piper: phoneme ids; espeak-ng: characters)
    output_tokens: int  # 20 ms audio frames
    total_tokens: int


class SpeechDone(msgspec.Struct, tag="done"):
    duration_s: float
    usage: SpeechUsage


SpeechEvent = Audio | SpeechDone

SPEECH: Op[SpeechRequest, SpeechEvent] = Op("speech", SpeechRequest, SpeechEvent)
