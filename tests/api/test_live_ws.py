"""/ws/stt and /ws/tts through a real server (Whisper tiny.en, Piper) and the `websockets`
client: espeak-ng speech streamed in chunks comes back as partials and a final transcript,
text sent piece by piece comes back as audio that transcribes to it, keys are checked on the
handshake, every kind of bad input is answered with an error event while the socket goes on,
and a client that vanishes mid-stream frees the model for the next one (one slot per model)."""

from __future__ import annotations

import base64
import io
import json
import time
import wave
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from openai import OpenAI
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.conftest import RunningServer, start_server, stop_server
from tests.stt_helpers import espeak, wer

KEY = "sk-live-test"
SENTENCE = "Please send the report to the office before noon on Friday."
MAX_MESSAGE = 65_536
IDLE_S = 5
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    # One request at a time per model: a stream a vanished client left open would block the
    # next one, which the disconnect tests would see.
    running = start_server(
        ["whisper-tiny.en", "piper-joe-medium"], "--threads", "1",
        env={"POCKETSERVE_API_KEYS": json.dumps([KEY]), "POCKETSERVE_MAX_IN_FLIGHT": "1",
             "POCKETSERVE_REALTIME_TRANSCRIPTION_MODEL": "whisper-tiny.en",
             "POCKETSERVE_LIVE_MAX_MESSAGE_BYTES": str(MAX_MESSAGE),
             "POCKETSERVE_LIVE_IDLE_TIMEOUT_S": str(IDLE_S)})
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, int]:
    """SENTENCE spoken by espeak-ng with a second of silence either side: (PCM16, rate)."""
    path = espeak(SENTENCE, tmp_path_factory.mktemp("live") / "fox.wav")
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        pcm = w.readframes(w.getnframes())
    silence = b"\0\0" * rate
    return silence + pcm + silence, rate


def url(server: RunningServer, path: str, **query: Any) -> str:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return f"ws://127.0.0.1:{server.port}{path}" + (f"?{qs}" if qs else "")


def event(ws: ClientConnection, timeout: float = 120) -> dict[str, Any]:
    """The next JSON event (audio frames in between are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(message, str):
            return dict(json.loads(message))


def until(ws: ClientConnection, kind: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Events up to and including the first of type `kind`."""
    events = [event(ws, timeout)]
    while events[-1]["type"] != kind:
        events.append(event(ws, timeout))
    return events


def error(ws: ClientConnection) -> dict[str, Any]:
    found = event(ws, 30)
    assert found["type"] == "error", found
    return dict(found["error"])


def stream(ws: ClientConnection, pcm: bytes, rate: int, chunk_ms: int = 100,
           pace: float = 0.5) -> None:
    """`pcm` in chunks of `chunk_ms`, at 1/`pace` times real time."""
    step = rate * chunk_ms // 1000 * 2
    for at in range(0, len(pcm), step):
        ws.send(pcm[at:at + step])
        time.sleep(chunk_ms / 1000 * pace)


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


# -- /ws/stt -------------------------------------------------------------------------------


def test_stt_streams_partials_then_the_final_transcript(server: RunningServer,
                                                        speech: tuple[bytes, int]) -> None:
    pcm, rate = speech
    with connect(url(server, "/ws/stt", sample_rate=rate, partial_interval_ms=500),
                 additional_headers=AUTH) as ws:
        created = event(ws)
        assert created["type"] == "session.created"
        assert created["config"]["model"] == "whisper-tiny.en"  # the configured default
        assert created["config"]["sample_rate"] == rate and created["config"]["vad"] is True
        stream(ws, pcm, rate, pace=1.0)  # as a microphone would
        ws.send(json.dumps({"type": "end"}))
        events = until(ws, "done")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    kinds = [e["type"] for e in events if e["type"] != "partial"]
    assert kinds == ["speech_started", "speech_stopped", "final", "committed", "done"]
    partials, final = of(events, "partial"), of(events, "final")[0]
    assert partials, f"no partial transcript while the speech went on: {events}"
    assert all(p["text"] and p["start"] == final["start"] for p in partials)
    assert wer(SENTENCE, final["text"]) <= 0.35, final["text"]
    assert final["language"] == "en"
    # The speech starts about 1 s in (after the silence) and lasts about 2.5 s.
    assert 0.5 <= final["start"] <= 1.2 and final["end"] - final["start"] >= 1.5
    assert of(events, "speech_started")[0]["audio_start_ms"] == round(final["start"] * 1000)


def test_stt_without_vad_transcribes_each_commit(server: RunningServer,
                                                 speech: tuple[bytes, int]) -> None:
    pcm, rate = speech
    with connect(url(server, "/ws/stt"), additional_headers=AUTH) as ws:
        assert event(ws)["type"] == "session.created"
        ws.send(json.dumps({"type": "config", "vad": "none", "sample_rate": rate,
                            "partial_interval_ms": 0}))
        assert event(ws)["config"]["vad"] is False
        # JSON audio events carry the same PCM as base64.
        for at in range(0, len(pcm), rate):
            ws.send(json.dumps({"type": "audio",
                                "audio": base64.b64encode(pcm[at:at + rate]).decode()}))
        ws.send(json.dumps({"type": "commit"}))
        events = until(ws, "committed")
        assert [e["type"] for e in events] == ["final", "committed"]
        assert wer(SENTENCE, events[0]["text"]) <= 0.35, events[0]["text"]
        assert events[0]["start"] == 0.0
        assert events[0]["end"] == pytest.approx(len(pcm) / 2 / rate, abs=0.05)
        # A second utterance: its times continue from the session's audio so far.
        stream(ws, pcm, rate, chunk_ms=500, pace=0)
        ws.send(json.dumps({"type": "end"}))
        events = until(ws, "done")
        second = of(events, "final")[0]
        assert second["start"] == pytest.approx(len(pcm) / 2 / rate, abs=0.05)
        assert wer(SENTENCE, second["text"]) <= 0.35


def test_stt_bad_input_is_answered_and_the_session_goes_on(
        server: RunningServer, speech: tuple[bytes, int]) -> None:
    pcm, rate = speech
    with connect(url(server, "/ws/stt", sample_rate=rate), additional_headers=AUTH) as ws:
        assert event(ws)["type"] == "session.created"
        ws.send(json.dumps({"type": "commit"}))  # out of order: nothing to commit yet
        assert error(ws)["code"] == "input_audio_buffer_commit_empty"
        ws.send(b"\x01\x02\x03")  # not whole 16-bit samples
        assert (bad := error(ws))["code"] == "invalid_audio" and bad["param"] == "audio"
        with io.BytesIO() as buf:  # a WAV file where raw PCM belongs: the wrong format
            with wave.open(buf, "wb") as w:
                w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
                w.writeframes(pcm[:rate])
            ws.send(buf.getvalue())
        assert "WAV" in (bad := error(ws))["message"] and bad["code"] == "invalid_audio"
        ws.send(json.dumps({"type": "config", "format": "f32le"}))
        assert error(ws)["param"] == "format"
        ws.send(json.dumps({"type": "config", "sample_rate": "fast"}))
        assert error(ws)["param"] == "sample_rate"
        ws.send(json.dumps({"type": "config", "beam_size": 5}))  # never silently ignored
        assert error(ws)["param"] == "beam_size"
        ws.send(json.dumps({"type": "audio", "audio": "%%% not base64 %%%"}))
        assert error(ws)["param"] == "audio"
        ws.send(json.dumps({"type": "transcribe.everything"}))
        assert (bad := error(ws))["param"] == "type" and "commit" in bad["message"]
        ws.send("{not json")
        assert error(ws)["code"] == "invalid_json"
        ws.send(b"\0" * (MAX_MESSAGE + 2))
        assert error(ws)["code"] == "message_too_large"
        # Garbage audio (noise) is heard as audio: no error, and no harm to what follows.
        noise = np.random.default_rng(0).integers(-3000, 3000, rate, dtype=np.int16)
        ws.send(noise.tobytes())
        ws.send(json.dumps({"type": "config", "vad": False}))  # audio is being heard
        assert error(ws)["code"] == "config_after_audio"
        stream(ws, pcm, rate, pace=0.25)
        ws.send(json.dumps({"type": "end"}))
        ws.send(pcm[:3200])  # audio after end
        events = until(ws, "done")
        assert of(events, "error")[0]["error"]["code"] == "session_ending"
        finals = of(events, "final")
        assert any(wer(SENTENCE, f["text"]) <= 0.35 for f in finals), finals


def test_stt_refuses_an_unusable_model_in_the_query(server: RunningServer) -> None:
    with connect(url(server, "/ws/stt", model="piper-joe-medium"),
                 additional_headers=AUTH) as ws:
        assert error(ws)["param"] == "model"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_a_vanished_stt_client_frees_the_model(server: RunningServer,
                                               speech: tuple[bytes, int]) -> None:
    pcm, rate = speech
    for _ in range(2):  # with one slot, a leaked stream would block every later one
        with connect(url(server, "/ws/stt", sample_rate=rate), additional_headers=AUTH) as ws:
            assert event(ws)["type"] == "session.created"
            stream(ws, pcm[:len(pcm) // 2], rate, pace=0)  # mid-utterance
            ws.close_socket()  # gone without a close frame
    with connect(url(server, "/ws/stt", sample_rate=rate, vad="false"),
                 additional_headers=AUTH) as ws:
        assert event(ws)["type"] == "session.created"
        stream(ws, pcm, rate, chunk_ms=500, pace=0)
        ws.send(json.dumps({"type": "end"}))
        final = of(until(ws, "done", timeout=60), "final")[0]
        assert wer(SENTENCE, final["text"]) <= 0.35


def test_an_idle_session_is_closed(server: RunningServer) -> None:
    with connect(url(server, "/ws/stt"), additional_headers=AUTH) as ws:
        assert event(ws)["type"] == "session.created"
        start = time.monotonic()
        assert error(ws)["code"] == "session_idle_timeout"
        assert time.monotonic() - start >= IDLE_S - 0.5
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)


# -- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws/stt", "/ws/tts"])
def test_keys_are_required_on_the_handshake(server: RunningServer, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
        with pytest.raises(InvalidStatus) as refused:
            connect(url(server, path), additional_headers=headers)
        assert refused.value.response.status_code == 401
    key = Subprotocol(f"openai-insecure-api-key.{KEY}")
    with connect(url(server, path), subprotocols=[key]) as ws:
        assert event(ws)["type"] == "session.created"
        assert ws.subprotocol is None  # never the key-bearing one back
    with connect(url(server, path), additional_headers=AUTH) as ws:
        assert event(ws)["type"] == "session.created"


# -- /ws/tts -------------------------------------------------------------------------------


def test_tts_speaks_sentences_as_they_form(server: RunningServer) -> None:
    with connect(url(server, "/ws/tts"), additional_headers=AUTH) as ws:
        created = event(ws)
        assert created["config"]["response_format"] == "pcm"
        assert created["config"]["sample_rate"] == 24_000
        first, second = "Hello there, my friend.", "The weather is lovely today"
        for token in (first + " " + second).split(" "):  # as an LLM streams them
            ws.send(json.dumps({"type": "text", "text": token + " "}))
        # The first sentence is spoken before any flush: more text has followed its end.
        audio = bytearray()
        while isinstance(message := ws.recv(timeout=60), bytes):
            audio += message
        done = json.loads(message)
        assert done["type"] == "audio.done" and done["text"] == first
        assert len(audio) == pytest.approx(done["duration_s"] * 24_000 * 2, rel=0.02)
        ws.send(json.dumps({"type": "flush"}))
        while isinstance(message := ws.recv(timeout=60), bytes):
            audio += message
        assert json.loads(message)["text"] == second
        assert event(ws)["type"] == "flushed"
        ws.send(json.dumps({"type": "end"}))
        assert event(ws)["type"] == "done"
    samples = np.frombuffer(bytes(audio), dtype="<i2")
    assert np.abs(samples).max() > 1000  # speech, not silence
    heard = transcribe(server, bytes(audio))
    assert wer(first + " " + second, heard) <= 0.35, heard


def test_tts_wav_in_json_events(server: RunningServer) -> None:
    with connect(url(server, "/ws/tts", response_format="wav", framing="json"),
                 additional_headers=AUTH) as ws:
        assert event(ws)["config"]["framing"] == "json"
        ws.send(json.dumps({"type": "text", "text": "One small step."}))
        ws.send(json.dumps({"type": "end"}))
        events = until(ws, "done")
    wav = b"".join(base64.b64decode(e["audio"]) for e in of(events, "audio"))
    assert wav[:4] == b"RIFF"
    assert of(events, "audio.done")[0]["format"] == "wav"
    with wave.open(io.BytesIO(_fixed_wav(wav))) as w:
        assert w.getframerate() == 24_000 and w.getnframes() > 24_000 // 2


def test_tts_bad_input_is_answered_and_the_session_goes_on(server: RunningServer) -> None:
    with connect(url(server, "/ws/tts"), additional_headers=AUTH) as ws:
        assert event(ws)["type"] == "session.created"
        ws.send(json.dumps({"type": "config", "voice": "no-such-voice"}))
        assert event(ws)["type"] == "session.updated"
        ws.send(json.dumps({"type": "text", "text": "Nobody speaks this."}))
        ws.send(json.dumps({"type": "flush"}))
        assert (bad := error(ws))["param"] == "voice" and "no-such-voice" in bad["message"]
        assert event(ws)["type"] == "flushed"
        ws.send(json.dumps({"type": "config", "voice": "alloy", "response_format": "ogg"}))
        assert error(ws)["param"] == "response_format"  # and nothing of it is taken
        ws.send(json.dumps({"type": "config", "voice": "alloy"}))
        assert event(ws)["config"]["voice"] == "alloy"
        ws.send(json.dumps({"type": "config", "speed": 9}))
        assert error(ws)["param"] == "speed"
        ws.send(json.dumps({"type": "text", "text": 42}))
        assert error(ws)["param"] == "text"
        ws.send(json.dumps({"type": "speak.now"}))
        assert error(ws)["param"] == "type"
        ws.send("[]")
        assert error(ws)["param"] == "type"
        ws.send(b"\x00\x01")  # audio where text belongs
        assert error(ws)["code"] == "invalid_message"
        ws.send(json.dumps({"type": "text", "text": "x" * MAX_MESSAGE}))
        assert error(ws)["code"] == "message_too_large"
        ws.send(json.dumps({"type": "text", "text": "Still here."}))
        ws.send(json.dumps({"type": "end"}))
        ws.send(json.dumps({"type": "text", "text": "Too late."}))  # text after end
        events = until(ws, "done")
    assert of(events, "error")[0]["error"]["code"] == "session_ending"
    assert [e["text"] for e in of(events, "audio.done")] == ["Still here."]


def test_a_vanished_tts_client_frees_the_model(server: RunningServer) -> None:
    # About 3.5 minutes of speech in one unit: far longer to make than the test allows.
    long_text = " ".join(["This sentence is here to keep the speaker busy for a while."] * 60)
    for _ in range(2):
        with connect(url(server, "/ws/tts"), additional_headers=AUTH) as ws:
            assert event(ws)["type"] == "session.created"
            ws.send(json.dumps({"type": "text", "text": long_text}))
            ws.send(json.dumps({"type": "flush"}))
            assert isinstance(ws.recv(timeout=60), bytes)  # speaking has begun
            ws.close_socket()
    start = time.monotonic()
    with connect(url(server, "/ws/tts"), additional_headers=AUTH) as ws:
        assert event(ws)["type"] == "session.created"
        ws.send(json.dumps({"type": "text", "text": "Next, please."}))
        ws.send(json.dumps({"type": "end"}))
        assert of(until(ws, "done", timeout=60), "audio.done")[0]["text"] == "Next, please."
    # The abandoned speech was not made first: it was cancelled when its client left.
    assert time.monotonic() - start < 15


def transcribe(server: RunningServer, pcm: bytes) -> str:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(24_000)
        w.writeframes(pcm)
    client = OpenAI(base_url=server.base_url + "/v1", api_key=KEY, max_retries=0)
    result = client.audio.transcriptions.create(model="whisper-tiny.en",
                                                file=("speech.wav", buf.getvalue()))
    return result.text


def _fixed_wav(wav: bytes) -> bytes:
    """A streamed WAV names no lengths (0xFFFFFFFF); the wave module wants real ones."""
    data = wav[44:]
    return (wav[:4] + (36 + len(data)).to_bytes(4, "little") + wav[8:40]
            + len(data).to_bytes(4, "little") + data)
