"""Models that live on another server: a second pocketserve started here holds the models, and
the front server serves them through the `remote` backend, with its own keys, metrics and
errors. What the front answers must be what the remote answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from openai import APIStatusError, InternalServerError, OpenAI

from tests.conftest import RunningServer, start_server, stop_server
from tests.e2e.helpers import write_config
from tests.stt_helpers import espeak

REMOTE_KEY, FRONT_KEY = "sk-remote-side", "sk-front-side"
NAMES = {"chat": "echo", "embeddings": "all-minilm-l6-v2", "transcription": "whisper-tiny.en",
         "speech": "espeak-ng"}


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("remote-side")
    config = write_config(folder, {
        "models": list(NAMES.values()), "api_keys": [REMOTE_KEY], "threads": 1,
        "extra_models": [{"id": "echo", "capability": "chat", "backend": "fake",
                          "source": "none:"}]})
    running = start_server([], "--config", str(config))
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def front(remote: RunningServer, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("front-side")
    key_file = folder / "remote.key"
    key_file.write_text(REMOTE_KEY + "\n")
    extra = [{"id": f"far-{capability}", "capability": capability, "backend": "remote",
              "source": "none:", "options": {
                  "base_url": remote.base_url + "/v1", "remote_model": name,
                  "api_key_file": str(key_file), "retries": 1, "backoff_s": 0.05,
                  "timeout_s": 60}}
             for capability, name in NAMES.items()]
    config = write_config(folder, {"models": [m["id"] for m in extra],
                                   "api_keys": [FRONT_KEY], "extra_models": extra})
    running = start_server([], "--config", str(config))
    yield running
    stop_server(running)


def _client(server: RunningServer, key: str) -> OpenAI:
    return OpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def near(front: RunningServer) -> OpenAI:
    return _client(front, FRONT_KEY)


@pytest.fixture(scope="module")
def far(remote: RunningServer) -> OpenAI:
    return _client(remote, REMOTE_KEY)


def test_chat_answers_as_the_remote_does_streamed_or_not(near: OpenAI, far: OpenAI) -> None:
    ask: dict[str, Any] = {"messages": [{"role": "user", "content": "the quick brown fox"}],
                           "max_tokens": 3, "logprobs": True}
    there = far.chat.completions.create(model="echo", **ask)
    here = near.chat.completions.create(model="far-chat", **ask)
    assert here.choices[0].message.content == there.choices[0].message.content == "the quick brown"
    assert here.choices[0].finish_reason == "length"
    assert here.usage is not None and there.usage is not None
    assert here.usage.prompt_tokens == there.usage.prompt_tokens
    assert here.choices[0].logprobs is not None
    assert [t.token for t in here.choices[0].logprobs.content or []] == ["the", " quick",
                                                                         " brown"]
    stream = near.chat.completions.create(model="far-chat", stream=True,
                                          messages=ask["messages"])
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) >= 4 and "".join(pieces) == "the quick brown fox"
    completion = near.completions.create(model="far-chat", prompt="one two three",
                                         max_tokens=2)
    assert completion.choices[0].text == "one two"


def test_embeddings_are_the_remote_vectors(near: OpenAI, far: OpenAI) -> None:
    texts = ["A cat sat on the mat.", "Stock prices fell sharply."]
    here = near.embeddings.create(model="far-embeddings", input=texts)
    there = far.embeddings.create(model="all-minilm-l6-v2", input=texts)
    for a, b in zip(here.data, there.data, strict=True):
        np.testing.assert_allclose(a.embedding, b.embedding, rtol=0, atol=1e-6)
    assert here.usage.prompt_tokens == there.usage.prompt_tokens > 0


def test_transcription_and_speech_pass_through(near: OpenAI, far: OpenAI,
                                               tmp_path: Path) -> None:
    clip = espeak("What is the capital of France?", tmp_path / "q.wav").read_bytes()
    here = near.audio.transcriptions.create(model="far-transcription", file=("q.wav", clip),
                                            response_format="verbose_json")
    there = far.audio.transcriptions.create(model="whisper-tiny.en", file=("q.wav", clip),
                                            response_format="verbose_json")
    assert here.text == there.text and "capital" in here.text.lower()
    assert here.segments and len(here.segments) == len(there.segments or [])
    spoken = near.audio.speech.create(model="far-speech", voice="alloy", input="Hello there.",
                                      response_format="wav")
    direct = far.audio.speech.create(model="espeak-ng", voice="alloy", input="Hello there.",
                                     response_format="wav")
    assert spoken.content[:4] == b"RIFF" and spoken.content == direct.content


def test_a_remote_400_reaches_the_client_naming_its_parameter(near: OpenAI) -> None:
    with pytest.raises(APIStatusError) as refused:
        near.embeddings.create(model="far-embeddings", input="hi", dimensions=7)
    assert refused.value.status_code == 400
    assert refused.value.body["param"] == "dimensions"  # type: ignore[index]


def test_front_keys_and_metrics_apply(front: RunningServer) -> None:
    with pytest.raises(APIStatusError) as refused:
        _client(front, REMOTE_KEY).embeddings.create(model="far-embeddings", input="hi")
    assert refused.value.status_code == 401  # the remote's key is not a key here
    metrics = httpx.get(front.base_url + "/metrics",
                        headers={"Authorization": f"Bearer {FRONT_KEY}"}).text
    assert 'model="far-embeddings"' in metrics
    models = httpx.get(front.base_url + "/admin/models",
                       headers={"Authorization": f"Bearer {FRONT_KEY}"}).json()
    far_chat = next(m for m in models["data"] if m["id"] == "far-chat")
    assert far_chat["cpu"] is None  # nothing of it runs on this machine's CPU
    assert json.dumps(far_chat).count("remote") >= 1


def test_a_remote_that_is_gone_is_a_clear_error(near: OpenAI, remote: RunningServer) -> None:
    stop_server(remote)
    with pytest.raises(InternalServerError) as failed:
        near.embeddings.create(model="far-embeddings", input="hi")
    assert "did not answer" in failed.value.message and "2 tries" in failed.value.message
