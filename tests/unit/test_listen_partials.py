"""Partial transcripts in LISTEN, with a stand-in VAD and a stand-in Whisper that writes how
much audio it heard: when partials come, that a worker behind its frames makes fewer, and that
they leave the final transcript as it was."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from pocketserve.engines.base import Call, Inputs
from pocketserve.engines.listen import listen
from pocketserve.engines.turns import RATE
from pocketserve.ops.transcription import (
    LISTEN,
    AudioFrame,
    ListenRequest,
    Partial,
    Segment,
    SpeechStarted,
    SpeechStopped,
    TranscriptEvent,
    TranscriptInfo,
    TranscriptionRequest,
    TurnDetection,
)
from pocketserve.ops.wire import encode

Audio = npt.NDArray[np.float32]
FRAME = RATE // 10  # 100 ms


class CountingWhisper:
    """Says how many samples it was given; hears speech where the audio is loud."""

    def __init__(self) -> None:
        self.heard: list[int] = []

    def transcribe(self, audio: Audio, req: TranscriptionRequest,
                   on_event: Callable[[TranscriptEvent], None],
                   cancelled: threading.Event) -> None:
        self.heard.append(len(audio))
        on_event(TranscriptInfo(language="en", duration=len(audio) / RATE))
        on_event(Segment(id=0, seek=0, start=0, end=len(audio) / RATE, text=f" {len(audio)}",
                         tokens=[1], temperature=0, avg_logprob=0, compression_ratio=1,
                         no_speech_prob=0))

    def speech_probabilities(self) -> Callable[[Audio], Audio]:
        return lambda windows: (np.abs(windows).max(axis=1) > 0.1).astype(np.float32)


class KeptUp(Inputs):
    """Inputs whose handler never falls behind: the next frame arrives only when asked for."""

    def waiting(self) -> bool:
        return False


def _pcm() -> bytes:
    """0.5 s of silence, 3 s of tone, 1 s of silence, as s16le at 16 kHz."""
    t = np.arange(3 * RATE) / RATE
    tone = 0.5 * np.sin(2 * np.pi * 300 * t)
    audio = np.concatenate([np.zeros(RATE // 2), tone, np.zeros(RATE)])
    return (audio * 32767).astype("<i2").tobytes()


def _run(partial_ms: int | None, inputs: type[Inputs] = Inputs,
         vad: bool = True) -> tuple[list[Any], CountingWhisper]:
    backend = CountingWhisper()
    cancelled = threading.Event()
    call = Call(cancelled=cancelled, inputs=inputs(cancelled))
    assert call.inputs is not None
    pcm = _pcm()
    for at in range(0, len(pcm), FRAME * 2):
        call.inputs.put(AudioFrame(pcm[at:at + FRAME * 2]))
    call.inputs.end()
    events: list[Any] = []
    request = ListenRequest(turn_detection=TurnDetection() if vad else None,
                            partial_interval_ms=partial_ms)
    listen(backend, request, lambda e: events.append(LISTEN.decode_event(encode(e))), call)
    return events, backend


def test_partials_come_once_per_interval_of_speech_when_the_worker_keeps_up() -> None:
    events, _ = _run(500, KeptUp)
    kinds = [type(e) for e in events]
    assert kinds[0] is SpeechStarted and kinds[-3:] == [SpeechStopped, TranscriptInfo, Segment]
    partials = [e for e in events if isinstance(e, Partial)]
    heard = [int(p.text) for p in partials]
    # The utterance (3 s of tone, 300 ms prefix, silence after) gets one every 0.5 s of it.
    assert len(partials) >= 6
    assert all(b - a >= RATE // 2 for a, b in itertools.pairwise(heard))
    assert all(p.start == events[-1].start for p in partials)
    assert isinstance(events[-2], TranscriptInfo) and events[-2].language == "en"


def test_a_worker_behind_its_frames_makes_fewer_partials() -> None:
    events, _ = _run(500)  # every frame is already waiting: behind all the way
    heard = [int(e.text) for e in events if isinstance(e, Partial)]
    assert 1 <= len(heard) <= 3
    assert all(b - a >= 3 * RATE // 2 for a, b in itertools.pairwise(heard))


def test_partials_leave_the_final_transcript_as_it_was() -> None:
    with_partials, _ = _run(500, KeptUp)
    without, backend = _run(None, KeptUp)
    assert not any(isinstance(e, Partial) for e in without)
    assert len(backend.heard) == 1  # only the final
    final = [e for e in with_partials if isinstance(e, Segment)]
    assert final == [e for e in without if isinstance(e, Segment)]


def test_without_vad_partials_hear_everything_sent_so_far() -> None:
    events, _ = _run(1000, KeptUp, vad=False)
    heard = [int(e.text) for e in events if isinstance(e, Partial)]
    assert heard[:3] == [RATE, 2 * RATE, 3 * RATE]
    assert isinstance(events[-1], Segment) and events[-1].text == str(len(_pcm()) // 2)
