"""Speech to text: a whole upload (`TRANSCRIBE`), or audio that keeps arriving (`LISTEN`).

The worker receives the uploaded file's bytes and decodes them itself, so the HTTP process
never runs decode-heavy code and a codec crash stays inside the model's process.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from pocketserve.ops.wire import Op

Task = Literal["transcribe", "translate"]


class VadParams(msgspec.Struct, kw_only=True):
    """Voice activity detection: skip what is not speech. None fields take the library's
    defaults (OpenAI's `chunking_strategy: "auto"`)."""

    threshold: float | None = None
    min_silence_ms: int | None = None
    speech_pad_ms: int | None = None


class TranscriptionRequest(msgspec.Struct, kw_only=True):
    audio: bytes
    task: Task = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0  # 0: start greedy/beam and fall back to sampling on failure
    word_timestamps: bool = False
    vad: VadParams | None = None  # None: the model's default (its `vad_filter` option)
    max_seconds: float | None = None


class TranscriptInfo(msgspec.Struct, tag="info"):
    language: str
    duration: float


class Word(msgspec.Struct):
    word: str
    start: float
    end: float
    probability: float


class Segment(msgspec.Struct, tag="segment"):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] | None = None


class Partial(msgspec.Struct, tag="partial"):
    """The best guess so far for speech that is still going on; a `Segment` replaces it."""

    text: str
    start: float


TranscriptEvent = TranscriptInfo | Segment | Partial


class TurnDetection(msgspec.Struct, kw_only=True):
    """Server VAD for live audio, in OpenAI Realtime's terms: speech starts when Silero's
    probability reaches `threshold`, `prefix_padding_ms` of audio before that is kept, and
    speech stops after `silence_duration_ms` below it."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


class ListenRequest(msgspec.Struct, kw_only=True):
    """Live transcription: the audio comes as `AudioFrame`s while the operation runs.

    With `turn_detection`, each utterance the VAD finds is reported (`SpeechStarted`,
    `SpeechStopped`) and transcribed as one `Segment` when it stops; the end of the input
    closes an utterance still going on. Without it, everything sent is transcribed as one
    `Segment` when the input ends (a manual commit). A cancel ends it without a segment.
    With `partial_interval_ms`, `Partial` events report the speech going on as it grows.
    """

    sample_rate: int = 16_000
    language: str | None = None
    prompt: str | None = None
    turn_detection: TurnDetection | None = None
    # The longest audio held for one transcript: a turn that goes on longer is cut there (and
    # the next one starts); without turn detection, more uncommitted audio is refused.
    max_seconds: float = 300.0
    # Partial transcripts of the speech going on: at most one per this much new audio (one per
    # three times as much while the worker is behind the frames). None: no partials.
    partial_interval_ms: int | None = None


class AudioFrame(msgspec.Struct):
    pcm: bytes  # s16le mono at the request's sample rate


class SpeechStarted(msgspec.Struct, tag="speech_started"):
    audio_start_ms: int  # from the start of this operation's audio, prefix padding included


class SpeechStopped(msgspec.Struct, tag="speech_stopped"):
    audio_end_ms: int  # where the silence that ended it was long enough


# Each final Segment of LISTEN comes right after a TranscriptInfo with the language heard.
ListenEvent = Partial | Segment | SpeechStarted | SpeechStopped | TranscriptInfo

TRANSCRIBE: Op[TranscriptionRequest, TranscriptEvent] = Op(
    "transcribe", TranscriptionRequest, TranscriptEvent)
LISTEN: Op[ListenRequest, ListenEvent] = Op(
    "listen", ListenRequest, ListenEvent, input=AudioFrame)
