"""Legacy completions, tokenize/detokenize and the model list."""

from __future__ import annotations

import httpx
import pytest
from openai import NotFoundError, OpenAI

from tests.conftest import RunningServer

MODEL = "smollm2-135m-instruct"


def _tokenize(server: RunningServer, text: str) -> list[int]:
    reply = httpx.post(server.base_url + "/tokenize", json={"model": MODEL, "prompt": text})
    assert reply.status_code == 200
    tokens: list[int] = reply.json()["tokens"]
    return tokens


def test_string_prompt(client: OpenAI, chat_server: RunningServer) -> None:
    r = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=5, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None
    assert r.usage.prompt_tokens == len(_tokenize(chat_server, "The sky is"))
    assert r.usage.completion_tokens == 5


def test_default_max_tokens_is_16(client: OpenAI) -> None:
    r = client.completions.create(model=MODEL, prompt="Once upon a time")
    assert r.usage is not None and r.usage.completion_tokens <= 16


def test_prompt_list_and_n(client: OpenAI) -> None:
    prompts = ["Once upon a time", "The sky is"]
    r = client.completions.create(model=MODEL, prompt=prompts, max_tokens=4, n=2, echo=True)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    for c in r.choices:
        assert c.text.startswith(prompts[c.index // 2])
    assert r.usage is not None and r.usage.completion_tokens == 16


def test_token_id_prompts_equal_text(client: OpenAI, chat_server: RunningServer) -> None:
    ids = _tokenize(chat_server, "The capital of France is")
    text = client.completions.create(model=MODEL, prompt="The capital of France is",
                                     max_tokens=6, temperature=0)
    by_ids = client.completions.create(model=MODEL, prompt=ids, max_tokens=6, temperature=0)
    assert by_ids.choices[0].text == text.choices[0].text
    both = client.completions.create(model=MODEL, prompt=[ids, ids[:2]], max_tokens=2)
    assert len(both.choices) == 2


def test_echo_with_token_ids(client: OpenAI, chat_server: RunningServer) -> None:
    ids = _tokenize(chat_server, "Hello there")
    r = client.completions.create(model=MODEL, prompt=ids, max_tokens=3, echo=True)
    assert r.choices[0].text.startswith("Hello there")


def test_legacy_logprobs(client: OpenAI) -> None:
    r = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=4, logprobs=2,
                                  temperature=0)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs
    assert lp.text_offset is not None
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 4
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(4)]
    assert all(len(top) == 2 for top in lp.top_logprobs)


def test_stream(client: OpenAI) -> None:
    whole = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=8,
                                      temperature=0)
    chunks = list(client.completions.create(model=MODEL, prompt="The sky is", max_tokens=8,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


def test_stop_in_completions(client: OpenAI) -> None:
    free = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=10,
                                     temperature=0).choices[0].text
    assert "6" in free
    r = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=10,
                                  temperature=0, stop="6")
    assert "6" not in r.choices[0].text and r.choices[0].finish_reason == "stop"


def test_tokenize_detokenize_round_trip(chat_server: RunningServer) -> None:
    text = "Small models, big server."
    ids = _tokenize(chat_server, text)
    reply = httpx.post(chat_server.base_url + "/detokenize", json={"model": MODEL, "tokens": ids})
    assert reply.status_code == 200 and reply.json()["prompt"] == text
    body = httpx.post(chat_server.base_url + "/tokenize",
                      json={"model": MODEL, "prompt": text}).json()
    assert body["count"] == len(ids) and body["max_model_len"] == 4096


def test_models_list_and_get(client: OpenAI) -> None:
    listed = {m.id: m for m in client.models.list().data}
    assert MODEL in listed
    extra = listed[MODEL].model_extra or {}
    assert extra["capability"] == "chat" and extra["state"] == "ready"
    assert extra["context_length"] == 4096
    assert client.models.retrieve("smollm2").id == MODEL
    with pytest.raises(NotFoundError):
        client.models.retrieve("no-such-model")


def test_health(chat_server: RunningServer) -> None:
    reply = httpx.get(chat_server.base_url + "/health")
    assert reply.status_code == 200
    assert reply.json()["models"] == {MODEL: "ready"}
