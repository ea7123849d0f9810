"""Live transcription (`LISTEN`): audio frames in; turns and one `Segment` per utterance out.

Runs in the worker on the request's thread. Frames are resampled to 16 kHz as they come; with
turn detection each utterance is transcribed as soon as its silence is long enough (the frames
that arrive meanwhile wait in the input queue and are judged after), without it everything sent
is transcribed when the input ends. Whisper segments of one utterance are joined into one
`Segment` whose times are the utterance's, from the start of the stream.

The turn's transcription starts before the turn has ended: once an utterance has been silent
for `GUESS_AFTER_MS`, what it holds so far is transcribed, and if the silence then lasts until
the turn stops (no window of speech in between), that transcript is the turn's. The rest of
`silence_duration_ms` (300 ms with the default 500) is then no longer waited on before Whisper
starts. Speech resuming wastes one transcription; the frames meanwhile wait in the queue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import msgspec

from pocketserve.engines.base import Call, Emit
from pocketserve.engines.turns import RATE, SpeechProbabilities, Started, Stopped, TurnDetector
from pocketserve.errors import InvalidRequest
from pocketserve.ops.transcription import (
    ListenRequest,
    Segment,
    SpeechStarted,
    SpeechStopped,
    TranscriptEvent,
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
    guess: tuple[int, Segment | None] | None = None  # (voiced windows then, its transcript)
    guess_after = GUESS_AFTER_MS if req.turn_detection is None else min(
        GUESS_AFTER_MS, req.turn_detection.silence_duration_ms)

    def transcript(turn: Stopped) -> Segment | None:
        start_s = turn.start_ms / 1000
        if guess is not None and guess[0] == turn.voiced and guess[1] is not None:
            return msgspec.structs.replace(guess[1], id=utterances, start=start_s,
                                           end=start_s + len(turn.audio) / RATE)
        return _transcribe(backend, turn.audio, req, utterances, start_s, call.cancelled)

    def turns(samples: npt.NDArray[np.float32], final: bool = False) -> None:
        nonlocal utterances, guess
        assert detector is not None
        for turn in [*detector.feed(samples), *(detector.finish() if final else [])]:
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
        if (not final and detector.silence_ms >= guess_after
                and (guess is None or guess[0] != detector.voiced)):
            guess = (detector.voiced, _transcribe(backend, detector.audio_so_far(), req,
                                                  utterances, 0.0, call.cancelled))

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
        else:
            turns(samples)
    if call.cancelled.is_set():
        return
    tail = resampler.finish()
    if detector is not None:
        turns(tail, final=True)
        return
    import numpy as np

    segment = _transcribe(backend, np.concatenate([*held, tail]), req, 0, 0.0, call.cancelled)
    if segment is not None:
        emit(segment)


def _transcribe(backend: ListenBackend, audio: npt.NDArray[np.float32], req: ListenRequest,
                index: int, start_s: float, cancelled: threading.Event) -> Segment | None:
    """One utterance as one Segment (None when cancelled meanwhile)."""
    found: list[Segment] = []
    if len(audio):
        request = TranscriptionRequest(audio=b"", language=req.language, prompt=req.prompt)
        backend.transcribe(audio, request,
                           lambda e: found.append(e) if isinstance(e, Segment) else None,
                           cancelled)
    if cancelled.is_set():
        return None
    n = max(len(found), 1)
    return Segment(
        id=index, seek=0, start=start_s, end=start_s + len(audio) / RATE,
        text="".join(s.text for s in found).strip(), tokens=[t for s in found for t in s.tokens],
        temperature=max((s.temperature for s in found), default=0.0),
        avg_logprob=sum(s.avg_logprob for s in found) / n,
        compression_ratio=sum(s.compression_ratio for s in found) / n,
        no_speech_prob=min((s.no_speech_prob for s in found), default=1.0))
