"""Image chat through the real server and the openai SDK, on tiny random-weight Qwen2-VL
models built in the test: one on transformers (`--model FOLDER`), the same converted for
llama.cpp (`--model X.gguf --mmproj P.gguf`), and that GGUF again without its projector (a
model that cannot see). Random weights give no sensible answer, so what is checked is what
the server does with images: answers, streamed or not, the same greedy tokens on both routes,
several images, concurrent requests, a refusal. Keys are on.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from openai import OpenAI

from tests.conftest import RunningServer, start_server, stop_server
from tests.vision_models import Built, cached_build, convert_script, png, torch_missing

KEY = "vision-test-key"
PROMPT_TOKENS = 36  # one 112 x 112 image (16 tokens on both routes) and the question
IMAGE_TOKENS = 16 + 2

pytestmark = pytest.mark.skipif(torch_missing() is not None, reason=str(torch_missing()))


@pytest.fixture(scope="module")
def built() -> Built:
    found = cached_build("qwen2_vl")
    if found.gguf is None:
        pytest.skip(f"llama.cpp's converter is not here ({convert_script()}); make test "
                    "fetches it (tests/get_llama_convert.py)")
    return found


@pytest.fixture(scope="module")
def server(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    assert built.gguf is not None and built.mmproj is not None
    config = tmp_path_factory.mktemp("vision") / "config.yaml"
    config.write_text(yaml.safe_dump({"extra_models": [
        {"id": "tiny-blind", "capability": "chat", "backend": "llamacpp",
         "source": str(built.gguf), "options": {"n_ctx": 1024, "n_parallel": 2}}]}))
    running = start_server(
        [str(built.folder), str(built.gguf), "tiny-blind"], "--mmproj", str(built.mmproj),
        "--config", str(config), "--threads", "1",
        env={"POCKETSERVE_API_KEYS": json.dumps([KEY])})
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server: RunningServer, built: Built) -> OpenAI:
    c = OpenAI(base_url=server.base_url + "/v1", api_key=KEY, max_retries=0, timeout=120)
    try:
        c.chat.completions.create(model=built.folder.name, messages=ask(), max_tokens=1)
    except openai.BadRequestError as exc:
        if "is not supported by this model" in str(exc):
            pytest.skip("the API does not pass image parts on to the models yet")
        raise
    return c


def data_url(seed: int = 0) -> str:
    return "data:image/png;base64," + base64.b64encode(png(seed=seed)).decode()


QUESTION = "Describe the picture."


def ask(*seeds: int, text: str = QUESTION) -> list[Any]:
    images = [{"type": "image_url", "image_url": {"url": data_url(s)}} for s in seeds or (0,)]
    return [{"role": "user", "content": [*images, {"type": "text", "text": text}]}]


def routes(built: Built) -> list[str]:
    assert built.gguf is not None
    return [built.folder.name, built.gguf.stem]


def same(a: str | None, b: str | None) -> bool:
    """Random weights may end on part of a character's bytes: transformers decodes it as
    U+FFFD, llama.cpp leaves it out."""
    return (a or "").rstrip("\ufffd") == (b or "").rstrip("\ufffd")


def test_image_chat_answers_on_both_routes(client: OpenAI, built: Built) -> None:
    for model in routes(built):
        r = client.chat.completions.create(model=model, messages=ask(), max_tokens=6,
                                           temperature=0)
        assert r.choices[0].message.content, model
        assert r.usage is not None and r.usage.prompt_tokens == PROMPT_TOKENS, model
        assert r.usage.completion_tokens == 6 and r.choices[0].finish_reason == "length"


def test_streamed_answer_is_the_whole_answer(client: OpenAI, built: Built) -> None:
    for model in routes(built):
        whole = client.chat.completions.create(model=model, messages=ask(1), max_tokens=6,
                                               temperature=0).choices[0].message.content
        stream = client.chat.completions.create(model=model, messages=ask(1), max_tokens=6,
                                                temperature=0, stream=True)
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
        assert len([p for p in pieces if p]) > 1, model  # it really streamed
        assert "".join(pieces) == whole, model


def test_same_greedy_answer_through_llamacpp_and_transformers(client: OpenAI,
                                                              built: Built) -> None:
    for seed in (0, 2):
        hf, gguf = (client.chat.completions.create(
            model=m, messages=ask(seed), max_tokens=8, temperature=0).choices[0].message.content
            for m in routes(built))
        assert same(hf, gguf) and len((hf or "").rstrip("\ufffd")) > 2


def test_several_images(client: OpenAI, built: Built) -> None:
    answers = []
    for model in routes(built):
        two = client.chat.completions.create(model=model, messages=ask(1, 2), max_tokens=4,
                                             temperature=0)
        assert two.usage is not None and two.usage.prompt_tokens == PROMPT_TOKENS + IMAGE_TOKENS
        answers.append(two.choices[0].message.content)
    assert same(*answers)


def test_concurrent_image_requests(client: OpenAI, built: Built) -> None:
    for model in routes(built):
        alone = {s: answer(client, model, s) for s in range(4)}
        together: dict[int, str | None] = {}
        threads = [threading.Thread(target=lambda s=s, m=model, out=together: out.__setitem__(
            s, answer(client, m, s))) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert together == alone, model


def answer(client: OpenAI, model: str, seed: int) -> str | None:
    return client.chat.completions.create(model=model, messages=ask(seed), max_tokens=4,
                                          temperature=0).choices[0].message.content


def test_a_model_without_vision_refuses(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny-blind", messages=ask(), max_tokens=2)
    body: Any = caught.value.body
    assert str(body.get("param", "")).startswith("messages")
    r = client.chat.completions.create(model="tiny-blind", max_tokens=2,
                                       messages=[{"role": "user", "content": "Hello"}])
    assert r.choices[0].message.content is not None


def test_keys_still_guard_it(server: RunningServer, built: Built) -> None:
    reply = httpx.post(server.base_url + "/v1/chat/completions", timeout=30, json={
        "model": built.folder.name, "messages": ask(), "max_tokens": 1})
    assert reply.status_code == 401


def test_the_models_are_listed(server: RunningServer, built: Built) -> None:
    reply = httpx.get(server.base_url + "/v1/models", timeout=30,
                      headers={"Authorization": f"Bearer {KEY}"})
    ids = {m["id"] for m in reply.json()["data"]}
    assert {*routes(built), "tiny-blind"} <= ids
    assert Path(str(built.mmproj)).is_file()


def test_describe_on_both_routes(server: RunningServer, client: OpenAI, built: Built) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    for model in routes(built):
        reply = httpx.post(server.base_url + "/v1/images/describe", headers=headers, timeout=60,
                           json={"image": data_url(3), "prompt": QUESTION, "model": model,
                                 "max_tokens": 5, "temperature": 0})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["object"] == "image.description" and body["description"], model
        chat = client.chat.completions.create(
            model=model, messages=ask(3), max_tokens=5, temperature=0).choices[0].message.content
        assert same(body["description"], chat)  # the same prompt as a chat with the image


def test_responses_and_messages_see_the_image_as_chat_does(server: RunningServer, client: OpenAI,
                                                           built: Built) -> None:
    """Responses' input_image and Anthropic's image block reach the same model input as a
    chat image part: the same greedy answer, on both routes, through both official SDKs."""
    import anthropic

    messages = anthropic.Anthropic(base_url=server.base_url, api_key=KEY, max_retries=0,
                                   timeout=120)
    png_b64 = base64.b64encode(png(seed=4)).decode()
    for model in routes(built):
        chat = client.chat.completions.create(
            model=model, messages=ask(4), max_tokens=16, temperature=0).choices[0].message.content
        response = client.responses.create(model=model, max_output_tokens=16, temperature=0,
                                           input=[{"role": "user", "content": [
                                               {"type": "input_image", "image_url": data_url(4)},
                                               {"type": "input_text", "text": QUESTION}]}])
        message = messages.messages.create(  # this SDK has no temperature argument
            model=model, max_tokens=16, extra_body={"temperature": 0}, messages=[
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": png_b64}},
                {"type": "text", "text": QUESTION}]}])
        said = "".join(b.text for b in message.content if b.type == "text")
        assert chat and same(response.output_text, chat), model
        assert same(said, chat), model
        assert response.usage is not None and response.usage.input_tokens == PROMPT_TOKENS
        usage = message.usage  # Anthropic's input_tokens leave out what came from the cache
        assert usage.input_tokens + (usage.cache_read_input_tokens or 0) == PROMPT_TOKENS
