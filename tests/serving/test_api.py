"""The HTTP routes over a fake model (create_app in process, the openai SDK as client): the
fake stands in for a real model wherever a test is about serving, not about the model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from pocketserve.api.app import create_app
from pocketserve.config import Settings
from tests.serving.helpers import fake, settings, words


@asynccontextmanager
async def _client(config: Settings) -> AsyncIterator[tuple[AsyncOpenAI, httpx.AsyncClient]]:
    """The app with its lifespan (workers started and stopped) behind an in-process client."""
    app = create_app(config)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield AsyncOpenAI(base_url="http://test/v1", api_key="unused", http_client=http,
                          max_retries=0), http


def test_chat_completions_and_tokenize_routes(tmp_path: Path) -> None:
    async def body() -> None:
        async with _client(settings(tmp_path, fake("f"))) as (client, http):
            messages = [{"role": "user", "content": "hello fake world"}]
            whole = await client.chat.completions.create(model="f", messages=messages)
            assert whole.choices[0].message.content == "hello fake world"
            assert whole.choices[0].finish_reason == "stop"
            assert whole.usage is not None
            assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (3, 3)

            cut = await client.chat.completions.create(model="f", messages=messages,
                                                       max_tokens=2, n=2)
            assert [c.message.content for c in cut.choices] == ["hello fake"] * 2
            assert {c.finish_reason for c in cut.choices} == {"length"}

            stopped = await client.chat.completions.create(model="f", messages=messages,
                                                           stop=[" wor"], logprobs=True)
            assert stopped.choices[0].message.content == "hello fake"  # the stop is not sent
            assert stopped.choices[0].finish_reason == "stop"
            logprobs = stopped.choices[0].logprobs
            assert logprobs is not None and logprobs.content is not None
            assert [(t.token, t.logprob) for t in logprobs.content] == [
                ("hello", 0.0), (" fake", 0.0)]

            stream = await client.chat.completions.create(
                model="f", messages=messages, stream=True,
                stream_options={"include_usage": True})
            chunks = [c async for c in stream]
            deltas = [c.choices[0].delta.content for c in chunks if c.choices]
            assert deltas == ["hello", " fake", " world"]
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3

            legacy = await client.completions.create(model="f", prompt="one two three",
                                                     max_tokens=2)
            assert legacy.choices[0].text == "one two"

            tokens = (await http.post("/tokenize", json={"model": "f", "prompt": "a b"})).json()
            assert tokens["count"] == 3 and tokens["max_model_len"] == 4096  # <s> a b
            back = await http.post("/detokenize", json={"model": "f", "tokens": tokens["tokens"]})
            assert back.json() == {"prompt": "<s>a b"}
            unknown = await http.post("/detokenize", json={"model": "f", "tokens": [7]})
            assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "tokens"

            listed = await client.models.retrieve("f")
            assert listed.id == "f"

    asyncio.run(body())


def test_deadline_and_crash_answer_in_openai_envelope(tmp_path: Path) -> None:
    config = settings(tmp_path, fake("f", token_delay_s=0.05))

    async def body() -> None:
        async with _client(config) as (client, _):
            with pytest.raises(openai.APIStatusError) as late:
                await client.chat.completions.create(
                    model="f", messages=[{"role": "user", "content": words(100)}],
                    extra_headers={"X-Request-Timeout": "0.3"})
            assert late.value.status_code == 504
            assert late.value.body["code"] == "deadline_exceeded"  # type: ignore[index]

            with pytest.raises(openai.InternalServerError) as crashed:
                await client.chat.completions.create(
                    model="f", messages=[{"role": "user", "content": "CRASH please"}])
            assert crashed.value.status_code == 503
            assert crashed.value.body["code"] == "model_not_ready"  # type: ignore[index]

    asyncio.run(body())


def test_health_and_its_aliases_say_503_naming_a_failed_model(tmp_path: Path) -> None:
    """Probes written for other designs (/healthz, /ping) see what /health sees, with no key."""
    config = settings(tmp_path, fake("f"), fake("broken", fail_load=True), api_keys=["sk-x"])

    async def body() -> None:
        async with _client(config) as (_, http):
            answers = [await http.get(path) for path in ("/health", "/healthz", "/ping")]
            for reply in answers:
                assert reply.status_code == 503, reply.request.url
                assert reply.json() == {"status": "unavailable", "not_ready": ["broken"],
                                        "models": {"f": "ready", "broken": "failed"}}
            assert (await http.get("/v1/models")).status_code == 401

    asyncio.run(body())
