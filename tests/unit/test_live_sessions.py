"""The /ws/stt and /ws/tts sessions without a server: a fake transport and fake models, so
sentence cutting of streamed text, the order of events, session times across commits, the
bounds (pending text, idle, session length) and freeing on disconnect are checked exactly."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from pocketserve.errors import InvalidRequest
from pocketserve.live.session import Bounds
from pocketserve.live.stt import SttConfig, SttSession
from pocketserve.live.tts import TtsConfig, TtsSession
from pocketserve.ops.speech import SPEECH, Audio, SpeechDone, SpeechRequest, SpeechUsage
from pocketserve.ops.transcription import (
    AudioFrame,
    Segment,
    SpeechStarted,
    SpeechStopped,
    TranscriptInfo,
)


def synchronously(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


class FakeTransport:
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.sent: list[dict[str, Any] | bytes] = []
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> str | bytes | None:
        return await self.inbox.get()

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def put(self, **event: Any) -> None:
        self.inbox.put_nowait(json.dumps(event))

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.sent if isinstance(e, dict) and kind in (None, e["type"])]

    async def wait_for(self, kind: str, count: int = 1) -> list[dict[str, Any]]:
        for _ in range(500):
            if len(self.events(kind)) >= count:
                return self.events()
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind}: {[e['type'] for e in self.events()]}")


def _same(name: str) -> str:
    if name == "nope":
        raise InvalidRequest("The model 'nope' does not exist.", param="model")
    return name


# -- /ws/tts -------------------------------------------------------------------------------


class FakeSpeaker:
    def __init__(self, delay_s: float = 0.0):
        self.requests: list[SpeechRequest] = []
        self.delay_s = delay_s
        self.closed_early = 0

    def stream(self, name: str, op: Any, request: SpeechRequest) -> AsyncIterator[Any]:
        assert op is SPEECH
        self.requests.append(request)
        return self._events(request)

    async def _events(self, request: SpeechRequest) -> AsyncIterator[Any]:
        finished = False
        try:
            if request.voice == "bad":
                raise InvalidRequest("Unknown voice 'bad'.", param="voice")
            await asyncio.sleep(self.delay_s)
            yield Audio(request.input.encode())
            yield SpeechDone(0.5, SpeechUsage(1, 1, 2))
            finished = True
        finally:
            self.closed_early += not finished


def _tts(speaker: FakeSpeaker, transport: FakeTransport, pending: int = 10_000,
         bounds: Bounds | None = None) -> TtsSession:
    return TtsSession(speaker, transport, TtsConfig(model="tts", voice="alloy"),
                      bounds or Bounds(), _same, pending)


@synchronously
async def test_streamed_text_is_spoken_a_sentence_run_at_a_time() -> None:
    speaker, transport = FakeSpeaker(), FakeTransport()
    session = _tts(speaker, transport)
    for piece in ["Hel", "lo the", "re. How", " are", " you? I am", " fine", ""]:
        transport.put(type="text", text=piece)
    transport.put(type="flush")
    transport.put(type="end")
    await asyncio.wait_for(session.run(), 5)
    assert [r.input for r in speaker.requests] == ["Hello there.", "How are you?", "I am fine"]
    kinds = [e if isinstance(e, bytes) else e["type"] for e in transport.sent]
    assert kinds == ["session.created", b"Hello there.", "audio.done", b"How are you?",
                     "audio.done", b"I am fine", "audio.done", "flushed", "done"]
    assert transport.closed == (1000, "done")


@synchronously
async def test_config_speaks_what_came_before_it_with_the_old_settings() -> None:
    speaker, transport = FakeSpeaker(), FakeTransport()
    session = _tts(speaker, transport)
    transport.put(type="text", text="First part")
    transport.put(type="config", voice="echo", speed="1.5", framing="json")
    transport.put(type="text", text="second part.")
    transport.put(type="end")
    await asyncio.wait_for(session.run(), 5)
    assert [(r.input, r.voice, r.speed) for r in speaker.requests] == [
        ("First part", "alloy", 1.0), ("second part.", "echo", 1.5)]
    audio = transport.events("audio")  # json framing: base64 in events
    assert len(audio) == 1 and audio[0]["audio"] == "c2Vjb25kIHBhcnQu"


@synchronously
async def test_a_failed_unit_is_an_error_and_the_next_is_spoken() -> None:
    speaker, transport = FakeSpeaker(), FakeTransport()
    session = _tts(speaker, transport)
    transport.put(type="config", voice="bad")
    transport.put(type="text", text="Lost.")
    transport.put(type="config", voice="alloy", model="nope")  # refused whole
    transport.put(type="config", voice="alloy")
    transport.put(type="text", text="Kept. ...")  # "..." alone has nothing to say
    transport.put(type="end")
    await asyncio.wait_for(session.run(), 5)
    errors = [e["error"] for e in transport.events("error")]
    assert [e["param"] for e in errors] == ["model", "voice"]
    assert [e["text"] for e in transport.events("audio.done")] == ["Kept."]


@synchronously
async def test_pending_text_is_bounded_and_long_text_is_cut() -> None:
    speaker, transport = FakeSpeaker(delay_s=0.05), FakeTransport()
    session = _tts(speaker, transport, pending=700)
    words = " ".join(["word"] * 130)  # 649 characters and no sentence end
    transport.put(type="text", text=words)
    transport.put(type="text", text="x" * 100)  # would pass 700 waiting: refused
    transport.put(type="end")
    await asyncio.wait_for(session.run(), 5)
    assert transport.events("error")[0]["error"]["code"] == "buffer_full"
    said = [r.input for r in speaker.requests]
    assert all(len(s) <= 300 for s in said) and " ".join(said) == words


@synchronously
async def test_a_vanished_client_cancels_the_speech_under_way() -> None:
    speaker, transport = FakeSpeaker(delay_s=10), FakeTransport()
    session = _tts(speaker, transport)
    transport.put(type="text", text="A long answer.")
    transport.put(type="flush")
    run = asyncio.create_task(session.run())
    while not speaker.requests:
        await asyncio.sleep(0.01)
    transport.inbox.put_nowait(None)  # gone
    await asyncio.wait_for(run, 2)
    assert speaker.closed_early == 1


@synchronously
async def test_idle_and_session_length_bounds() -> None:
    transport = FakeTransport()
    await asyncio.wait_for(_tts(FakeSpeaker(), transport,
                                bounds=Bounds(idle_timeout_s=0.1)).run(), 2)
    assert transport.events("error")[0]["error"]["code"] == "session_idle_timeout"
    assert transport.closed == (1000, "session_idle_timeout")
    transport = FakeTransport()
    session = _tts(FakeSpeaker(), transport, bounds=Bounds(idle_timeout_s=0.1,
                                                           max_session_s=0.35))

    async def chatter() -> None:  # never idle
        for _ in range(100):
            transport.put(type="flush")
            await asyncio.sleep(0.05)

    feeder = asyncio.create_task(chatter())
    await asyncio.wait_for(session.run(), 2)
    feeder.cancel()
    assert transport.events("error")[-1]["error"]["code"] == "session_expired"


# -- /ws/stt -------------------------------------------------------------------------------


class FakeListenStream:
    def __init__(self, rate: int, language: str | None):
        self.rate = rate
        self.language = language
        self.frames: list[bytes] = []
        self.ended = asyncio.Event()

    def send(self, frame: AudioFrame) -> None:
        self.frames.append(frame.pcm)

    def end_input(self) -> None:
        self.ended.set()

    async def events(self) -> AsyncIterator[Any]:
        if self.language == "xx":
            raise InvalidRequest("This model does not support the language 'xx'.",
                                 param="language", code="unsupported_language")
        yield SpeechStarted(100)
        await self.ended.wait()
        n = sum(len(f) for f in self.frames) // 2
        yield SpeechStopped(n * 1000 // self.rate)
        yield TranscriptInfo(language="en", duration=n / self.rate)
        yield Segment(id=0, seek=0, start=0.1, end=n / self.rate, text=f"{n} samples",
                      tokens=[], temperature=0, avg_logprob=0, compression_ratio=1,
                      no_speech_prob=0)


class FakeListeners:
    def __init__(self) -> None:
        self.streams: list[FakeListenStream] = []
        self.open_now = 0

    @contextlib.asynccontextmanager
    async def open(self, name: str, op: Any, request: Any) -> AsyncIterator[Any]:
        stream = FakeListenStream(request.sample_rate, request.language)
        self.streams.append(stream)
        self.open_now += 1
        try:
            yield stream
        finally:
            self.open_now -= 1


def _stt(models: FakeListeners, transport: FakeTransport, **bounds: Any) -> SttSession:
    return SttSession(models, transport, SttConfig(model="stt", sample_rate=8000),
                      Bounds(**bounds), _same)


@synchronously
async def test_stt_times_run_across_commits() -> None:
    models, transport = FakeListeners(), FakeTransport()
    session = _stt(models, transport)
    transport.inbox.put_nowait(b"\0\0" * 8000)  # 1 s
    transport.put(type="commit")
    transport.inbox.put_nowait(b"\0\0" * 4000)  # 0.5 s more
    transport.put(type="end")
    await asyncio.wait_for(session.run(), 5)
    finals = transport.events("final")
    assert [(f["text"], f["start"], f["end"]) for f in finals] == [
        ("8000 samples", 0.1, 1.0), ("4000 samples", 1.1, 1.5)]
    assert all(f["language"] == "en" for f in finals)
    started = [e["audio_start_ms"] for e in transport.events("speech_started")]
    assert started == [100, 1100]
    assert transport.events()[-1]["type"] == "done" and transport.closed == (1000, "done")
    assert models.open_now == 0


@synchronously
async def test_stt_out_of_order_and_malformed_events() -> None:
    models, transport = FakeListeners(), FakeTransport()
    session = _stt(models, transport, max_message_bytes=2000)
    transport.put(type="commit")
    transport.inbox.put_nowait(b"\0" * 3)
    transport.inbox.put_nowait(b"RIFF" + b"\0" * 40)
    transport.inbox.put_nowait(b"\0" * 2002)
    transport.put(type="config", vad="maybe")
    transport.put(type="audio")
    transport.put(type="nonsense")
    transport.inbox.put_nowait("[1, 2]")
    transport.inbox.put_nowait(b"\0\0" * 100)
    transport.put(type="config", language="en")  # a stream is open
    transport.put(type="end")
    transport.put(type="end")
    await asyncio.wait_for(session.run(), 5)
    codes = [e["error"]["code"] for e in transport.events("error")]
    assert codes == ["input_audio_buffer_commit_empty", "invalid_audio", "invalid_audio",
                     "message_too_large", "invalid_type", "missing_required_parameter",
                     "invalid_value", "missing_required_parameter", "config_after_audio",
                     "session_ending"]
    assert [f["text"] for f in transport.events("final")] == ["100 samples"]


@synchronously
async def test_stt_vanished_client_closes_the_open_stream() -> None:
    models, transport = FakeListeners(), FakeTransport()
    session = _stt(models, transport, idle_timeout_s=0.2)
    transport.inbox.put_nowait(b"\0\0" * 800)
    run = asyncio.create_task(session.run())
    await transport.wait_for("speech_started")
    await asyncio.sleep(0.4)  # an utterance is being heard: not idle
    assert not run.done() and models.open_now == 1
    transport.inbox.put_nowait(None)
    await asyncio.wait_for(run, 2)
    assert models.open_now == 0 and not transport.events("final")


@synchronously
async def test_stt_audio_the_model_refuses_is_refused_until_the_config_changes() -> None:
    models, transport = FakeListeners(), FakeTransport()
    session = _stt(models, transport)
    transport.put(type="config", language="xx")
    transport.inbox.put_nowait(b"\0\0" * 100)
    run = asyncio.create_task(session.run())
    await transport.wait_for("error")
    for _ in range(3):
        transport.inbox.put_nowait(b"\0\0" * 100)
    await transport.wait_for("error", 4)
    transport.put(type="config", language="en")
    transport.inbox.put_nowait(b"\0\0" * 100)
    transport.put(type="end")
    await asyncio.wait_for(run, 5)
    errors = [e["error"] for e in transport.events("error")]
    assert [e["param"] for e in errors] == ["language"] * 4
    assert len(models.streams) == 2  # one refused, one heard: none opened per frame
    assert [f["text"] for f in transport.events("final")] == ["100 samples"]


@pytest.mark.parametrize("query", [{"vad": "off"}, {"vad": "server_vad"}, {"vad": None}])
def test_stt_config_reads_query_strings(query: dict[str, Any]) -> None:
    config = SttConfig(model="stt").updated({"sample_rate": "24000", **query}, _same)
    assert config.sample_rate == 24000
    assert config.vad is (query["vad"] == "server_vad")
    assert (config.request().turn_detection is None) is (not config.vad)
