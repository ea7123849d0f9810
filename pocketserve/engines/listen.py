"""Live transcription (`LISTEN`): audio frames in; turns and one `Segment` per utterance out.

Runs in the worker on the request's thread. Frames are resampled to 16 kHz as they come; with
turn detection each utterance is transcribed as soon as its silence is long enough (the frames
that arrive meanwhile wait in the input queue and are judged after), without it everything sent
is transcribed when the input ends. Whisper segments of one utterance are joined into one
`Segment` whose times are the utterance's, from the start of the stream.

Partials (when asked for) re-transcribe the speech going on so far, at most once per
`partial_interval_ms` of its new audio, and while frames are waiting (the worker is behind the
client) only once per three intervals: a worker that falls behind makes fewer of them rather
than fall further behind. The final `Segment` is always transcribed from the whole utterance,
so partials never change it.

The turn's transcription starts before the turn has ended: once an utterance has been silent
for `GUESS_AFTER_MS`, what it holds so far is transcribed, and if the silence then lasts until
the turn stops (no window of speech in between), that transcript is the turn's: the rest of
`silence_duration_ms` (300 ms with the default 500) is no longer waited on before Whisper
starts. Speech resuming wastes one transcription.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import msgspec

from pocketserve.engines.base import Call, Emit, Inputs
from pocketserve.engines.turns import RATE, SpeechProbabilities, Started, Stopped, TurnDetector
from pocketserve.errors import InvalidRequest
from pocketserve.ops.transcription import (
    ListenRequest,
    Partial,
    Segment,
    SpeechStarted,
    SpeechStopped,
    TranscriptEvent,
    TranscriptInfo,
    TranscriptionRequest,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

GUESS_AFTER_MS = 200


class ListenBackend(Protocol):
    def transcribe(self, audio: npt.NDArray[np.float32], req: TranscriptionRequest,
                   on_event: Callable[[TranscriptEvent], None],
                   cancelled: threading.Event) -> None: ...

    def speech_probabilities(self) -> SpeechProbabilities:
        """A fresh streaming VAD for one live stream."""
        ...


def listen(backend: ListenBackend, req: ListenRequest, emit: Emit, call: Call) -> None:
    import numpy as np

    from pocketserve.audio.resample import PcmTo16k

    if req.sample_rate <= 0:
        raise InvalidRequest("sample_rate must be positive.", param="sample_rate")
    assert call.inputs is not None  # the worker gives every streamed-input op its inputs
    resampler = PcmTo16k(req.sample_rate)
    detector = (None if req.turn_detection is None
                else TurnDetector(req.turn_detection, backend.speech_probabilities(),
                                  max_turn_s=req.max_seconds))
    held: list[npt.NDArray[np.float32]] = []  # without turn detection: everything sent
    utterances = 0
    held_samples = 0
    partials = None if not req.partial_interval_ms else _Partials(backend, req, emit, call)
    # The early transcript: (voiced windows then, the events of its transcription).
    guess: tuple[int, list[Segment | TranscriptInfo]] | None = None
    guess_after = GUESS_AFTER_MS if req.turn_detection is None else min(
        GUESS_AFTER_MS, req.turn_detection.silence_duration_ms)

    def transcript(turn: Stopped) -> Segment | None:
        start_s = turn.start_ms / 1000
        segment = guess[1][-1] if guess is not None and guess[0] == turn.voiced else None
        if isinstance(segment, Segment):
            for info in guess[1][:-1] if guess else ():
                emit(msgspec.structs.replace(info, duration=len(turn.audio) / RATE))
            return msgspec.structs.replace(segment, id=utterances, start=start_s,
                                           end=start_s + len(turn.audio) / RATE)
        return _transcribe(backend, turn.audio, req, utterances, start_s, call.cancelled, emit)

    def early(detector: TurnDetector) -> None:
        """Transcribe the turn in its silence; kept until speech comes again."""
        nonlocal guess
        if detector.silence_ms < guess_after or (guess is not None
                                                 and guess[0] == detector.voiced):
            return
        events: list[Segment | TranscriptInfo] = []
        heard = detector.heard()
        assert heard is not None  # silence is counted only inside a turn
        segment = _transcribe(backend, heard, req, utterances,
                              detector.start_ms / 1000, call.cancelled, events.append)
        guess = (detector.voiced, [*events, segment] if segment is not None else events)

    def turns(samples: npt.NDArray[np.float32], final: bool = False) -> None:
        nonlocal utterances, guess
        assert detector is not None
        for turn in [*detector.feed(samples), *(detector.finish() if final else [])]:
            if partials is not None:
                partials.reset()
            if isinstance(turn, Started):
                emit(SpeechStarted(turn.start_ms))
                guess = None
                continue
            emit(SpeechStopped(turn.end_ms))
            segment = transcript(turn)
            guess = None
            utterances += 1
            if segment is not None:
                emit(segment)
        if not final:
            early(detector)

    for frame in call.inputs:
        if len(frame.pcm) % 2:
            raise InvalidRequest("An audio frame must hold whole 16-bit samples.", param="pcm")
        samples = resampler.feed(frame.pcm)
        if detector is None:
            held.append(samples)
            held_samples += len(samples)
            if held_samples > req.max_seconds * RATE:
                raise InvalidRequest(f"More than {req.max_seconds:g} s of audio without a "
                                     "commit; commit (or clear) more often.", param="audio",
                                     code="input_audio_buffer_too_long")
            if partials is not None:
                partials.maybe(held_samples, 0.0, lambda: np.concatenate(held))
        else:
            turns(samples)
            if partials is not None and detector.speaking:
                partials.maybe(detector.heard_samples(), detector.start_ms / 1000,
                               detector.heard)
    if call.cancelled.is_set():
        return
    tail = resampler.finish()
    if detector is not None:
        turns(tail, final=True)
        return
    segment = _transcribe(backend, np.concatenate([*held, tail]), req, 0, 0.0, call.cancelled,
                          emit)
    if segment is not None:
        emit(segment)


class _Partials:
    """When the speech going on is transcribed again, and what was last said of it."""

    def __init__(self, backend: ListenBackend, req: ListenRequest, emit: Emit, call: Call):
        assert req.partial_interval_ms is not None and call.inputs is not None
        self.backend, self.req, self.emit, self.call = backend, req, emit, call
        self.inputs: Inputs = call.inputs
        self.every_samples = req.partial_interval_ms * RATE // 1000
        self.reset()

    def reset(self) -> None:
        """A new utterance: its first partial comes after one interval of its audio."""
        self.done_samples = 0
        self.last_text = ""

    def maybe(self, samples: int, start_s: float,
              audio: Callable[[], npt.NDArray[np.float32] | None]) -> None:
        new = samples - self.done_samples
        behind = self.inputs.waiting() and new < 3 * self.every_samples
        if new < self.every_samples or behind:
            return
        heard = audio()
        if heard is None:
            return
        segment = _transcribe(self.backend, heard, self.req, 0, start_s, self.call.cancelled)
        self.done_samples = samples
        if segment is not None and segment.text and segment.text != self.last_text:
            self.last_text = segment.text
            self.emit(Partial(text=segment.text, start=start_s))


def _transcribe(backend: ListenBackend, audio: npt.NDArray[np.float32], req: ListenRequest,
                index: int, start_s: float, cancelled: threading.Event,
                emit: Emit | None = None) -> Segment | None:
    """One utterance as one Segment (None when cancelled meanwhile); with `emit`, the
    language heard goes out first as a `TranscriptInfo`."""
    found: list[Segment] = []
    info: list[TranscriptInfo] = []

    def keep(event: TranscriptEvent) -> None:
        if isinstance(event, Segment):
            found.append(event)
        elif isinstance(event, TranscriptInfo):
            info.append(event)

    if len(audio):
        request = TranscriptionRequest(audio=b"", language=req.language, prompt=req.prompt)
        backend.transcribe(audio, request, keep, cancelled)
    if cancelled.is_set():
        return None
    if emit is not None:
        emit(TranscriptInfo(language=info[0].language if info else req.language or "",
                            duration=len(audio) / RATE))
    n = max(len(found), 1)
    return Segment(
        id=index, seek=0, start=start_s, end=start_s + len(audio) / RATE,
        text="".join(s.text for s in found).strip(), tokens=[t for s in found for t in s.tokens],
        temperature=max((s.temperature for s in found), default=0.0),
        avg_logprob=sum(s.avg_logprob for s in found) / n,
        compression_ratio=sum(s.compression_ratio for s in found) / n,
        no_speech_prob=min((s.no_speech_prob for s in found), default=1.0))
