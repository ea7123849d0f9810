"""Text to speech: the engine every speech backend runs behind.

The engine owns what backends share: checking the request, mapping OpenAI's voice names to
installed voices, cutting the text into sentences, encoding, and streaming one chunk of
encoded audio per sentence as soon as it is synthesized. Between sentences it checks
`cancelled`, so a client that leaves stops the work within one sentence.

Events sent to the API (`ops.speech`): `Audio` any number of times, then one `SpeechDone`.
Usage counts the backend's own input units (Piper: phoneme ids; espeak-ng: characters) and
output as 20 ms audio frames.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pocketserve.audio.encode import FORMATS, OUTPUT_RATE, open_encoder
from pocketserve.engines.base import Call, Emit, Served, Warmup, serve
from pocketserve.engines.sentences import quick_start, split_sentences
from pocketserve.errors import InvalidRequest
from pocketserve.ops.speech import SPEECH, Audio, SpeechDone, SpeechRequest, SpeechUsage

OPENAI_VOICES: tuple[str, ...] = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer",
    "verse", "marin", "cedar",
)
MAX_INPUT_CHARS = 4096
FRAMES_PER_SECOND = 50
SLICE_SECONDS = 0.5
"""A sentence is encoded in slices this long, each sent when ready: mp3/aac encoding of a
whole sentence takes tens of milliseconds that the first bytes need not wait for."""


@dataclass
class Voice:
    """A name a client may put in `voice`, and what it plays on this backend."""

    id: str
    backend_voice: str
    language: str


@dataclass
class AudioChunk:
    """One sentence of audio: s16le mono PCM at the backend's rate."""

    pcm: bytes
    input_tokens: int


class SpeechBackend(Protocol):
    """What a library must do to speak: one `AudioChunk` per sentence, in order."""

    sample_rate: int

    def voices(self) -> list[Voice]:
        """The voices installed, by their own names (no OpenAI aliases)."""
        ...

    def accepts(self, voice: str) -> bool:
        """Whether `voice` names an installed voice beyond those `voices()` lists."""
        ...

    def synthesize(self, sentences: Sequence[str], voice: str,
                   speed: float) -> Generator[AudioChunk, None, None]: ...

    def close(self) -> None: ...


def alias_openai_voices(installed: list[Voice], chosen: Mapping[str, str]) -> list[Voice]:
    """OpenAI's voice names as aliases: `chosen[name]` where given, else round robin."""
    by_id = {v.backend_voice: v for v in installed}
    aliases = []
    for i, name in enumerate(OPENAI_VOICES):
        target = chosen.get(name) or installed[i % len(installed)].backend_voice
        base = by_id.get(target) or by_id.get(target.partition("+")[0]) or installed[0]
        language = base.language
        aliases.append(Voice(id=name, backend_voice=target, language=language))
    return aliases + [v for v in installed if v.id not in OPENAI_VOICES]


class SpeechEngine:
    """Runs a `SpeechBackend` behind the worker's operation table."""

    def __init__(self, backend: SpeechBackend, voice_map: Mapping[str, str] | None = None):
        self.backend = backend
        self.voices = alias_openai_voices(backend.voices(), voice_map or {})
        self._by_id = {v.id: v for v in self.voices}
        self._slice_bytes = 2 * int(backend.sample_rate * SLICE_SECONDS)
        warm_up_encoders(backend.sample_rate)

    def info(self) -> dict[str, Any]:
        return {"sample_rate": OUTPUT_RATE, "native_sample_rate": self.backend.sample_rate,
                "formats": list(FORMATS), "voices": [asdict(v) for v in self.voices]}

    def operations(self) -> Sequence[Served[Any, Any]]:
        return [serve(SPEECH, self._speech)]

    def warmups(self) -> Sequence[Warmup[Any]]:
        return [Warmup(SPEECH, SpeechRequest(input="Hello.", voice=self.voices[0].id))]

    def close(self) -> None:
        self.backend.close()

    def resolve_voice(self, name: str) -> str:
        voice = self._by_id.get(name)
        if voice is not None:
            return voice.backend_voice
        if self.backend.accepts(name):
            return name
        known = ", ".join(v.id for v in self.voices[:30])
        raise InvalidRequest(f"Unknown voice {name!r}. This model's voices: {known}"
                             f"{', ...' if len(self.voices) > 30 else ''}.", param="voice")

    def _speech(self, req: SpeechRequest, emit: Emit, call: Call) -> None:
        cancelled = call.cancelled
        voice = self.resolve_voice(req.voice)
        sentences = check_request(req)
        encoder = open_encoder(req.response_format, self.backend.sample_rate)
        samples = tokens = 0
        try:
            with contextlib.closing(self.backend.synthesize(sentences, voice, req.speed)) as gen:
                for chunk in gen:
                    samples += len(chunk.pcm) // 2
                    tokens += chunk.input_tokens
                    for piece in _slices(chunk.pcm, self._slice_bytes):
                        if cancelled.is_set():
                            return
                        if data := encoder.feed(piece):
                            emit(Audio(data))
            if cancelled.is_set():
                return
            if data := encoder.finish():
                emit(Audio(data))
        finally:
            encoder.close()
        duration = samples / self.backend.sample_rate
        frames = round(duration * FRAMES_PER_SECOND)
        emit(SpeechDone(duration, SpeechUsage(tokens, frames, tokens + frames)))


def _slices(pcm: bytes, size: int) -> list[bytes]:
    return [pcm[i:i + size] for i in range(0, len(pcm), size)] if size > 0 else [pcm]


def warm_up_encoders(rate: int) -> None:
    """Load FFmpeg's codecs at model load; the first mp3 encoder of a process takes ~0.2 s."""
    for fmt in FORMATS:
        encoder = open_encoder(fmt, rate)
        encoder.feed(bytes(2 * rate // 10))
        encoder.finish()
        encoder.close()


def check_request(req: SpeechRequest) -> list[str]:
    """The sentences to speak, or a 400 naming the parameter at fault."""
    if req.response_format not in FORMATS:
        raise InvalidRequest(f"Unsupported response_format {req.response_format!r}; "
                             f"use one of {', '.join(FORMATS)}.", param="response_format")
    if not 0.25 <= req.speed <= 4.0:
        raise InvalidRequest("speed must be between 0.25 and 4.0.", param="speed")
    if len(req.input) > MAX_INPUT_CHARS:
        raise InvalidRequest(f"input is {len(req.input)} characters long; the limit is "
                             f"{MAX_INPUT_CHARS}.", param="input")
    sentences = split_sentences(req.input)
    if not sentences:
        raise InvalidRequest("input has no text to speak.", param="input")
    return quick_start(sentences)
