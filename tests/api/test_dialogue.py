"""POST /v1/dialogue against a real server: speech from espeak-ng heard by Whisper tiny.en,
answered by the `fake` chat model (it echoes the last user message and counts one prompt
token per word of every message it reads, so what the model received is checked exactly),
spoken by espeak-ng. Two turns with memory, the history, key isolation, streaming, bounds and
every kind of bad input."""

from __future__ import annotations

import base64
import io
import json
import struct
import wave
from collections.abc import Iterator
from typing import Any

import av
import httpx
import pytest

from tests.conftest import RunningServer, start_server, stop_server, wait_healthy
from tests.e2e.helpers import write_config
from tests.stt_helpers import espeak, wer

KEY_A, KEY_B = "sk-dialogue-a", "sk-dialogue-b"
FAKE = "echo"
MAX_BYTES = 400_000
MAX_SECONDS = 15
MAX_TURNS = 2
INSTRUCTIONS = "Answer briefly."
SAID = ["Please call Stella and ask her to bring the books.",
        "What is the weather like today?",
        "The library will be closed during the summer."]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    config = write_config(tmp_path_factory.mktemp("dialogue"), {
        "models": [FAKE, "whisper-tiny.en", "espeak-ng"],
        "extra_models": [{"id": FAKE, "capability": "chat", "backend": "fake",
                          "source": "none:"}],
        "api_keys": [KEY_A, KEY_B],
        "realtime_chat_model": FAKE, "realtime_transcription_model": "whisper-tiny.en",
        "realtime_speech_model": "espeak-ng", "audio_max_bytes": MAX_BYTES,
        "audio_max_seconds": MAX_SECONDS, "dialogue_max_turns": MAX_TURNS})
    running = start_server([], "--config", str(config), "--threads", "1")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    folder = tmp_path_factory.mktemp("said")
    return [espeak(text, folder / f"{i}.wav").read_bytes() for i, text in enumerate(SAID)]


def post(server: RunningServer, audio: bytes | None, key: str = KEY_A,
         **fields: Any) -> httpx.Response:
    data = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()}
    files = None if audio is None else {"file": ("said.wav", audio, "audio/wav")}
    return httpx.post(server.base_url + "/v1/dialogue", data=data, files=files,
                      headers={"Authorization": f"Bearer {key}"}, timeout=120)


def session(server: RunningServer, session_id: str, key: str = KEY_A,
            method: str = "GET") -> httpx.Response:
    return httpx.request(method, f"{server.base_url}/v1/dialogue/{session_id}",
                         headers={"Authorization": f"Bearer {key}"}, timeout=30)


def words(text: str) -> int:
    return len(text.split())


def wav_info(data: bytes) -> tuple[int, int, float]:
    with wave.open(io.BytesIO(data)) as w:
        return w.getframerate(), w.getnchannels(), w.getnframes() / w.getframerate()


def test_two_turns_remember_the_first(server: RunningServer, clips: list[bytes]) -> None:
    first = post(server, clips[0], instructions=INSTRUCTIONS, response_format="wav")
    assert first.status_code == 200, first.text
    one = first.json()
    assert one["object"] == "dialogue.turn" and one["session_id"].startswith("dlg_")
    assert wer(SAID[0], one["transcript"]) < 0.3
    assert one["reply"] == one["transcript"]  # the echo model says back what it heard
    assert one["turns"] == 1 and one["dropped_turns"] == 0
    assert one["usage"]["prompt_tokens"] == words(INSTRUCTIONS) + words(one["transcript"])
    rate, channels, seconds = wav_info(base64.b64decode(one["audio"]))
    assert (rate, channels) == (24_000, 1) and seconds > 1.0
    assert one["usage"]["output_audio_seconds"] == pytest.approx(seconds, abs=0.01)
    assert one["response_format"] == "wav" and one["media_type"] == "audio/wav"

    second = post(server, clips[1], instructions=INSTRUCTIONS, session_id=one["session_id"],
                  response_format="wav").json()
    assert second["session_id"] == one["session_id"] and second["turns"] == 2
    # The chat model read the instructions, the whole first turn and the new question.
    assert second["usage"]["prompt_tokens"] == (words(INSTRUCTIONS) + words(one["transcript"])
                                                + words(one["reply"])
                                                + words(second["transcript"]))

    history = session(server, one["session_id"])
    assert history.status_code == 200
    body = history.json()
    assert body["object"] == "dialogue.session" and body["id"] == one["session_id"]
    assert body["messages"] == [
        {"role": "user", "content": one["transcript"]},
        {"role": "assistant", "content": one["reply"]},
        {"role": "user", "content": second["transcript"]},
        {"role": "assistant", "content": second["reply"]}]
    assert body["turns"] == 2 and 0 < body["expires_in_s"] <= 1800


def test_timings_are_measured(server: RunningServer, clips: list[bytes]) -> None:
    t = post(server, clips[1]).json()["timings"]
    assert set(t) == {"transcribe_ms", "reply_first_token_ms", "reply_ms", "speech_ms",
                      "first_audio_ms", "total_ms"}
    assert all(isinstance(v, float) and v >= 0 for v in t.values()), t
    assert t["reply_first_token_ms"] <= t["reply_ms"]
    assert t["transcribe_ms"] < t["first_audio_ms"] <= t["total_ms"]
    assert t["transcribe_ms"] + t["reply_ms"] <= t["total_ms"] + 1


def test_the_oldest_turns_are_dropped_past_the_bound(server: RunningServer,
                                                     clips: list[bytes]) -> None:
    sid = None
    turns = []
    for clip in clips:  # one more than MAX_TURNS
        fields = {"session_id": sid} if sid else {}
        turns.append(post(server, clip, response_format="pcm", **fields).json())
        sid = turns[-1]["session_id"]
    assert turns[-1]["turns"] == MAX_TURNS and turns[-1]["dropped_turns"] == 1
    kept = [m["content"] for m in session(server, sid).json()["messages"] if m["role"] == "user"]
    assert kept == [t["transcript"] for t in turns[1:]]


def test_delete_forgets_and_other_keys_see_nothing(server: RunningServer,
                                                   clips: list[bytes]) -> None:
    sid = post(server, clips[2]).json()["session_id"]
    for method in ("GET", "DELETE"):
        other = session(server, sid, key=KEY_B, method=method)
        assert other.status_code == 404
        assert other.json()["error"]["param"] == "session_id"
    hijack = post(server, clips[0], key=KEY_B, session_id=sid)
    assert hijack.status_code == 404 and hijack.json()["error"]["code"] == "session_not_found"
    assert session(server, sid).status_code == 200  # still there for its own key
    deleted = session(server, sid, method="DELETE")
    assert deleted.json() == {"object": "dialogue.session.deleted", "id": sid, "deleted": True}
    assert session(server, sid).status_code == 404
    assert post(server, clips[0], session_id=sid).status_code == 404
    no_key = httpx.get(f"{server.base_url}/v1/dialogue/{sid}", timeout=10)
    assert no_key.status_code == 401


def sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for block in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if lines:
            data = json.loads(lines["data"])
            assert lines["event"] == data["type"]
            found.append((lines["event"], data))
    return found


def test_streamed_turn(server: RunningServer, clips: list[bytes]) -> None:
    reply = post(server, clips[0], stream=True, response_format="mp3")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = sse(reply)
    kinds = [k for k, _ in events]
    assert kinds[0] == "dialogue.transcript" and kinds[-1] == "dialogue.done"
    assert set(kinds[1:-1]) == {"dialogue.reply.delta", "dialogue.audio.delta"}
    heard, done = events[0][1], events[-1][1]
    assert heard["session_id"] == done["session_id"]
    assert heard["transcript"] == done["transcript"]
    text = "".join(e["delta"] for k, e in events if k == "dialogue.reply.delta")
    assert text == done["reply"] and wer(SAID[0], text) < 0.3
    audio = b"".join(base64.b64decode(e["audio"]) for k, e in events
                     if k == "dialogue.audio.delta")
    with av.open(io.BytesIO(audio)) as container:
        stream = container.streams.audio[0]
        samples = sum(f.samples for f in container.decode(stream))
        assert stream.rate == 24_000
    assert samples / 24_000 == pytest.approx(done["usage"]["output_audio_seconds"], abs=0.2)
    assert session(server, done["session_id"]).json()["turns"] == 1


def wav_bytes(fmt_tag: int, bits: int, data: bytes, rate: int = 16_000) -> bytes:
    block = max(bits // 8, 1)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, fmt_tag, 1, rate, rate * block, block, bits)
            + b"data" + struct.pack("<I", len(data)) + data)


BAD_AUDIO = {
    "garbage": (b"this is not audio at all " * 200, 400, "invalid_audio"),
    "unknown sample format": (wav_bytes(0x1234, 16, bytes(32_000)), 400, "invalid_audio"),
    "float format with 16-bit samples": (wav_bytes(3, 16, bytes(32_000)), 400,
                                         "invalid_audio"),
    "empty": (b"", 400, "empty_file"),
    "silence": (wav_bytes(1, 16, bytes(64_000)), 400, "no_speech"),
    "too long": (wav_bytes(1, 16, bytes(2 * 1000 * (MAX_SECONDS + 5)), rate=1000), 400,
                 "audio_too_long"),
    "oversized": (bytes(MAX_BYTES + 1), 413, "file_too_large"),
}


@pytest.mark.parametrize("case", sorted(BAD_AUDIO))
def test_bad_audio_is_refused_naming_the_file(server: RunningServer, case: str) -> None:
    audio, status, code = BAD_AUDIO[case]
    for stream in (False, True):
        reply = post(server, audio, stream=stream)
        assert reply.status_code == status, reply.text
        error = reply.json()["error"]
        assert (error["param"], error["code"]) == ("file", code)


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"response_format": "ogg"}, "response_format"),
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": "3"}, "temperature"),
    ({"stream": "perhaps"}, "stream"),
    ({"max_tokens": "0"}, "max_tokens"),
    ({"max_tokens": "many"}, "max_tokens"),
    ({"speed": "9"}, "speed"),
    ({"language": "klingon"}, "language"),
    ({"sesion_id": "dlg_x"}, "sesion_id"),
    ({"model": "whisper-tiny.en"}, "model"),
    ({"transcription_model": FAKE}, "transcription_model"),
    ({"speech_model": "whisper-tiny.en"}, "speech_model"),
    ({"voice": "nobody"}, "voice"),
]


@pytest.mark.parametrize(("fields", "param"), BAD_FIELDS, ids=[p for _, p in BAD_FIELDS])
def test_bad_fields_are_400_naming_them(server: RunningServer, clips: list[bytes],
                                        fields: dict[str, Any], param: str) -> None:
    reply = post(server, clips[1], **fields)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


def test_missing_or_misplaced_file_and_unknown_names(server: RunningServer,
                                                     clips: list[bytes]) -> None:
    missing = post(server, None, voice="alloy")
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"
    as_text = httpx.post(server.base_url + "/v1/dialogue", data={"file": "hello"},
                         headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
    assert as_text.status_code == 400 and as_text.json()["error"]["param"] == "file"
    unknown = post(server, clips[1], session_id="dlg_000000000000000000000000")
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "session_id"
    no_model = post(server, clips[1], model="no-such-model")
    assert no_model.status_code == 404 and no_model.json()["error"]["param"] == "model"
    assert session(server, "dlg_nope").status_code == 404
    assert session(server, "dlg_nope", method="DELETE").status_code == 404


def test_a_model_that_fails_mid_answer_ends_the_stream_with_an_error_event(
        server: RunningServer, clips: list[bytes]) -> None:
    """The echo model's worker dies after its first token when its prompt says CRASH: the
    stream has begun, so the failure arrives as an `error` event, and nothing is remembered."""
    reply = post(server, clips[1], stream=True, instructions="CRASH after one word.")
    assert reply.status_code == 200
    events = sse(reply)
    assert events[0][0] == "dialogue.transcript"
    kind, last = events[-1]
    assert kind == "error" and set(last["error"]) == {"message", "type", "param", "code"}
    assert "dialogue.done" not in [k for k, _ in events]
    sid = events[0][1]["session_id"]
    assert session(server, sid).status_code == 404
    wait_healthy(server, 60)  # the worker is restarted


def test_the_server_keeps_serving_after_bad_input(server: RunningServer,
                                                  clips: list[bytes]) -> None:
    for audio, _, _ in BAD_AUDIO.values():
        post(server, audio)
    assert httpx.get(server.base_url + "/health", timeout=10).status_code == 200
    good = post(server, clips[2])
    assert good.status_code == 200, good.text
    assert wer(SAID[2], good.json()["transcript"]) < 0.3, good.json()["transcript"]
