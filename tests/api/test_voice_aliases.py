"""The reference design's short routes against a real server (SmolLM2, Whisper tiny.en,
espeak-ng): each answers what the OpenAI route it aliases answers for the same request, in
its own shape, and refuses bad input naming its own field."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Iterator
from typing import Any

import av
import httpx
import pytest
from openai import OpenAI

from tests.conftest import RunningServer, start_server, stop_server
from tests.stt_helpers import espeak, wer

KEY = "sk-aliases"
MAX_BYTES = 300_000
SAID = "Please call Stella and ask her to bring the books."
TEXT = "Hello from pocketserve. This is a test of the speech route."


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server(
        ["smollm2-135m-instruct", "whisper-tiny.en", "espeak-ng"], "--threads", "1",
        env={"POCKETSERVE_API_KEYS": f'["{KEY}"]',
             "POCKETSERVE_AUDIO_MAX_BYTES": str(MAX_BYTES),
             "POCKETSERVE_REALTIME_TRANSCRIPTION_MODEL": "whisper-tiny.en",
             "POCKETSERVE_REALTIME_SPEECH_MODEL": "espeak-ng"})
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=server.base_url + "/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return espeak(SAID, tmp_path_factory.mktemp("alias") / "said.wav").read_bytes()


def post(server: RunningServer, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.base_url + path, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=120, **kwargs)


def error_of(reply: httpx.Response, status: int = 400) -> str | None:
    assert reply.status_code == status, reply.text
    param: str | None = reply.json()["error"]["param"]
    return param


# -- /v1/speech-to-text ----------------------------------------------------------------------


def test_speech_to_text_is_the_transcription_route(server: RunningServer, client: OpenAI,
                                                   clip: bytes) -> None:
    reply = post(server, "/v1/speech-to-text", files={"file": ("said.wav", clip)})
    assert reply.status_code == 200, reply.text
    text = reply.json()["text"]
    assert wer(SAID, text) < 0.3
    same = client.audio.transcriptions.create(model="whisper-tiny.en",
                                              file=("said.wav", clip))
    assert same.text == text


def test_speech_to_text_takes_the_transcription_fields(server: RunningServer,
                                                       clip: bytes) -> None:
    plain = post(server, "/v1/speech-to-text", files={"file": ("said.wav", clip)},
                 data={"language": "en", "prompt": "Stella", "response_format": "text",
                       "temperature": "0.2"})
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("text/plain")
    assert wer(SAID, plain.text) < 0.3
    verbose = post(server, "/v1/speech-to-text", files={"file": ("said.wav", clip)},
                   data={"response_format": "verbose_json", "model": "whisper-tiny.en"})
    assert verbose.json()["segments"] and verbose.json()["duration"] > 1


@pytest.mark.parametrize(("files", "data", "status", "param"), [
    (None, {"language": "en"}, 400, "file"),
    ({"file": ("x.wav", b"not audio at all " * 50)}, {}, 400, "file"),
    ({"file": ("x.wav", bytes(MAX_BYTES + 1))}, {}, 413, "file"),
    ("clip", {"response_format": "mp3"}, 400, "response_format"),
    ("clip", {"temperature": "warm"}, 400, "temperature"),
    ("clip", {"language": "klingon"}, 400, "language"),
    ("clip", {"model": "espeak-ng"}, 400, "model"),
    ("clip", {"model": "no-such-model"}, 404, "model"),
], ids=["missing file", "garbage", "oversized", "format", "temperature type", "language",
        "wrong model", "unknown model"])
def test_speech_to_text_bad_input(server: RunningServer, clip: bytes, files: Any,
                                  data: dict[str, str], status: int, param: str) -> None:
    if files == "clip":
        files = {"file": ("said.wav", clip)}
    reply = post(server, "/v1/speech-to-text", files=files, data=data)
    assert error_of(reply, status) == param


# -- /v1/text-to-speech ----------------------------------------------------------------------


def test_text_to_speech_json_is_the_speech_route(server: RunningServer,
                                                 client: OpenAI) -> None:
    reply = post(server, "/v1/text-to-speech", json={"text": TEXT, "format": "wav"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["format"], body["media_type"], body["model"]) == ("wav", "audio/wav",
                                                                   "espeak-ng")
    audio = base64.b64decode(body["audio"])
    with wave.open(io.BytesIO(audio)) as w:
        assert (w.getframerate(), w.getnchannels()) == (24_000, 1)
        assert w.getnframes() == (len(audio) - 44) // 2  # the header has the real sizes
    same = client.audio.speech.create(model="espeak-ng", voice="alloy", input=TEXT,
                                      response_format="wav")
    # espeak-ng is deterministic: the very same samples (the stream's header says "until
    # the end" instead of the sizes).
    assert same.content[44:] == audio[44:] and same.content[:4] == audio[:4] == b"RIFF"
    assert 2.0 < body["duration_s"] < 8.0


def test_text_to_speech_streams_the_audio(server: RunningServer) -> None:
    with httpx.stream("POST", server.base_url + "/v1/text-to-speech",
                      json={"text": TEXT, "format": "mp3", "stream": True, "speed": 1.5},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "audio/mpeg"
        audio = reply.read()
    with av.open(io.BytesIO(audio)) as container:
        stream = container.streams.audio[0]
        seconds = sum(f.samples for f in container.decode(stream)) / stream.rate
    assert 1.0 < seconds < 6.0


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"format": "wav"}, 400, "text"),
    ({"text": "   "}, 400, "text"),
    ({"text": "Hi.", "format": "ogg"}, 400, "format"),
    ({"text": "Hi.", "stream": [1]}, 400, "stream"),
    ({"text": "Hi.", "speed": "fast"}, 400, "speed"),
    ({"text": "Hi.", "input": "Hi."}, 400, "input"),
    ({"text": "Hi.", "voice": "nobody"}, 400, "voice"),
    ({"text": "Hi.", "model": "smollm2"}, 400, "model"),
], ids=["no text", "blank text", "format", "stream type", "speed type", "unknown field",
        "voice", "wrong model"])
def test_text_to_speech_bad_input(server: RunningServer, body: dict[str, Any], status: int,
                                  param: str) -> None:
    assert error_of(post(server, "/v1/text-to-speech", json=body), status) == param


# -- /v1/generate ----------------------------------------------------------------------------


def test_generate_is_the_completions_route(server: RunningServer, client: OpenAI) -> None:
    request = {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}
    reply = post(server, "/v1/generate", json=request)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    same = client.completions.create(model="smollm2-135m-instruct", **request)
    assert body["generated_text"] == same.choices[0].text and body["generated_text"]
    assert body["model"] == "smollm2-135m-instruct"
    assert body["finish_reason"] == same.choices[0].finish_reason
    assert body["usage"]["completion_tokens"] <= 8


@pytest.mark.parametrize(("body", "param"), [
    ({"max_tokens": 4}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "Hi", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "Hi", "max_tokens": "lots"}, "max_tokens"),
    ({"prompt": "Hi", "n": 2}, "n"),
    ({"prompt": "Hi", "model": "espeak-ng"}, "model"),
], ids=["no prompt", "empty prompt", "max_tokens", "max_tokens type", "unknown field",
        "wrong model"])
def test_generate_bad_input(server: RunningServer, body: dict[str, Any], param: str) -> None:
    assert error_of(post(server, "/v1/generate", json=body)) == param


def test_aliases_need_the_key(server: RunningServer) -> None:
    for path in ("/v1/speech-to-text", "/v1/text-to-speech", "/v1/generate"):
        assert httpx.post(server.base_url + path, json={}, timeout=10).status_code == 401
