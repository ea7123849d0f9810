"""/v1/audio/speech and /v1/audio/voices through the official SDK, on real voices."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import av
import httpx
import numpy as np
import openai
import psutil
import pytest
from openai import OpenAI

from tests.conftest import RunningServer, start_server, stop_server

TEXT = "The quick brown fox jumps over the lazy dog. Speech should sound clear and natural."
THREE = ("Streaming sends audio as soon as the first sentence is ready. The second sentence "
         "follows while the client already plays the first. The third one ends the request.")


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server(["piper-joe-medium", "espeak-ng", "smollm2-135m-instruct"])
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> OpenAI:
    return server.client(timeout=120)


def decode(data: bytes) -> tuple[int, np.ndarray]:
    """(sample rate, mono samples) of any encoded audio, through PyAV."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
        return stream.rate, np.concatenate(frames)


def words_per_second(text: str, seconds: float) -> float:
    return len(text.split()) / seconds


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_every_format_decodes_with_a_plausible_duration(client: OpenAI, fmt: str) -> None:
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT,
                                       response_format=fmt)  # type: ignore[arg-type]
    rate, samples = decode(audio.content)
    assert rate == (48_000 if fmt == "opus" else 24_000)
    assert 1.5 < words_per_second(TEXT, len(samples) / rate) < 4.5
    assert np.abs(samples.astype(np.float64)).max() > 0  # not silence


def test_pcm_is_24khz_16bit_mono(client: OpenAI) -> None:
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT,
                                       response_format="pcm")
    assert audio.response.headers["content-type"] == "audio/pcm"
    samples = np.frombuffer(audio.content, "<i2")
    assert 1.5 < words_per_second(TEXT, len(samples) / 24_000) < 4.5
    assert np.abs(samples).max() > 16_000  # Piper's sentences are peak-normalized


def test_audio_streams_sentence_by_sentence(client: OpenAI) -> None:
    start = time.perf_counter()
    arrivals: list[float] = []
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=THREE, response_format="mp3") as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        assert response.headers["content-type"] == "audio/mpeg"
        data = b""
        for chunk in response.iter_bytes():
            arrivals.append(time.perf_counter() - start)
            data += chunk
    total = time.perf_counter() - start
    assert len(arrivals) >= 3
    # The first sentence's audio is out well before the last is synthesized.
    assert arrivals[0] < 0.6 * total, (arrivals, total)
    rate, samples = decode(data)
    assert 1.5 < words_per_second(THREE, len(samples) / rate) < 4.5


def test_sse_events(client: OpenAI) -> None:
    with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="nova", input=TEXT, response_format="pcm",
            stream_format="sse", instructions="Speak cheerfully.") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line.removeprefix("data: "))
                  for line in response.iter_lines() if line.startswith("data: ")]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) >= 2
    assert events[-1]["type"] == "speech.audio.done"
    usage = events[-1]["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    seconds = len(pcm) / 2 / 24_000
    assert 1.5 < words_per_second(TEXT, seconds) < 4.5
    assert usage["output_tokens"] == pytest.approx(seconds * 50, abs=2)


def test_speed_shortens_the_audio(client: OpenAI) -> None:
    def seconds(speed: float) -> float:
        audio = client.audio.speech.create(model="tts-1-hd", voice="echo", input=TEXT,
                                           response_format="pcm", speed=speed)
        return len(audio.content) / 2 / 24_000

    # Piper alone stops shortening speech near 2x; past that a tempo change does the rest.
    normal = seconds(1.0)
    for speed in (0.5, 2.0, 4.0):
        assert seconds(speed) == pytest.approx(normal / speed, rel=0.2), speed


def test_espeak_speaks_other_languages(client: OpenAI) -> None:
    audio = client.audio.speech.create(model="espeak-ng", voice="de", response_format="wav",
                                       input="Guten Morgen. Wie geht es Ihnen heute?")
    rate, samples = decode(audio.content)
    assert rate == 24_000
    assert 1.0 < len(samples) / rate < 6.0


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"input": ""}, "input"),
    ({"input": "   \n"}, "input"),
    ({"input": "a" * 4097}, "input"),
    ({"voice": "nobody"}, "voice"),
    ({"response_format": "ogg"}, "response_format"),
    ({"speed": 4.5}, "speed"),
    ({"speed": 0.1}, "speed"),
    ({"model": "smollm2-135m-instruct"}, "model"),
    ({"instructions": "x" * 4097}, "instructions"),
])
def test_bad_requests_are_400_naming_the_parameter(client: OpenAI, kwargs: dict[str, object],
                                                    param: str) -> None:
    args: dict[str, object] = {"model": "tts-1", "voice": "alloy", "input": "Hello.", **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(**args)  # type: ignore[call-overload]
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"


def test_unknown_model_is_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.audio.speech.create(model="no-such-tts", voice="alloy", input="Hello.")


def test_voices_list(server: RunningServer) -> None:
    voices = httpx.get(server.base_url + "/v1/audio/voices").json()
    assert voices["object"] == "list"
    piper = [v for v in voices["data"] if v["model"] == "piper-joe-medium"]
    assert {v["id"] for v in piper} >= {"alloy", "echo", "nova", "shimmer", "joe"}
    assert {v["backend_voice"] for v in piper} == {"joe"}
    only_espeak = httpx.get(server.base_url + "/v1/audio/voices",
                            params={"model": "espeak"}).json()["data"]
    assert {v["model"] for v in only_espeak} == {"espeak-ng"}
    assert {"de", "fr-fr", "alloy"} <= {v["id"] for v in only_espeak}
    # Open WebUI's shapes: `voices` with each id once, and `models` from /v1/audio/models.
    listed = [v["id"] for v in voices["voices"]]
    assert len(listed) == len(set(listed)) and set(listed) == {v["id"] for v in voices["data"]}
    assert all(v["name"] == v["id"] for v in voices["voices"])
    models = httpx.get(server.base_url + "/v1/audio/models").json()
    assert [m["id"] for m in models["models"]] == [m["id"] for m in models["data"]]
    assert {"piper-joe-medium", "espeak-ng"} <= {m["id"] for m in models["models"]}
    assert "whisper-base" not in {m["id"] for m in models["models"]}
    wrong = httpx.get(server.base_url + "/v1/audio/voices",
                      params={"model": "smollm2-135m-instruct"})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["param"] == "model"


def test_a_voice_object_is_accepted(server: RunningServer) -> None:
    reply = httpx.post(server.base_url + "/v1/audio/speech", timeout=60, json={
        "model": "espeak-ng", "input": "Hello.", "voice": {"id": "fable"},
        "response_format": "wav"})
    assert reply.status_code == 200
    assert reply.content[:4] == b"RIFF"


def test_a_client_that_leaves_stops_the_synthesis(server: RunningServer,
                                                  client: OpenAI) -> None:
    """After the client hangs up, the worker's CPU goes quiet within about a sentence."""
    worker = next(p for p in psutil.Process(server.proc.pid).children()
                  if "piper-joe-medium" in " ".join(p.cmdline()))
    long_text = " ".join(f"This is sentence number {i} of a long story." for i in range(40))
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=long_text, response_format="pcm") as response:
        next(response.iter_bytes())
    time.sleep(2.0)  # the sentence being synthesized when the client left may finish
    before = sum(worker.cpu_times()[:2])
    time.sleep(2.0)
    busy = sum(worker.cpu_times()[:2]) - before
    assert busy < 0.3, f"worker still used {busy:.2f} s of CPU after the client left"


def test_concurrent_requests_are_all_served(client: OpenAI) -> None:
    texts = [f"Request number {i} is spoken at the same time as the others." for i in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        replies = list(pool.map(lambda t: client.audio.speech.create(
            model="tts-1", voice="alloy", input=t, response_format="pcm").content, texts))
    for text, pcm in zip(texts, replies, strict=True):
        assert 1.5 < words_per_second(text, len(pcm) / 2 / 24_000) < 4.5
