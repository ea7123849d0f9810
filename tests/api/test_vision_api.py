"""Images through the three chat APIs (openai SDK for chat and responses, anthropic SDK for
messages) and the describe endpoints (httpx), against a server with API keys whose models are
fake engines: `seer` sees (it answers with what it received of each image: type, size, byte
count, SHA-256 prefix, detail), `echo` cannot. Remote fetching is on, with localhost
allowlisted: it is still refused, and the recording server gets no hit."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai import OpenAI

from pocketserve.backends.fake import FakeOptions, FakeTextBackend
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import ChatMessage, ChatRequest, ImagePart, TextPart
from tests.conftest import RunningServer, start_server, stop_server
from tests.image_helpers import RecordingServer, body, data_url, gif, png, png_bomb, seen

KEY = "sk-vision-test"
SEER, BLIND = "seer", "echo"
PNG, GIF = png(3, 2), gif(3, 5)
PNG_SEEN, GIF_SEEN = ("image/png", "3x2"), ("image/gif", "3x5")
BATCH_MAX = 3


@pytest.fixture(scope="module")
def images_host() -> Iterator[RecordingServer]:
    running = RecordingServer()
    running.routes["/cat.png"] = body(PNG)
    yield running
    running.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    config = tmp_path_factory.mktemp("vision") / "config.yaml"
    config.write_text(json.dumps({
        "models": [BLIND, SEER], "api_keys": [KEY],
        "extra_models": [
            {"id": SEER, "capability": "chat", "backend": "fake", "source": "none:",
             "options": {"vision": True}},
            {"id": BLIND, "capability": "chat", "backend": "fake", "source": "none:"}],
        "image_fetch_enabled": True, "image_fetch_allowed_hosts": ["localhost", "127.0.0.1"],
        "image_describe_max_batch": BATCH_MAX}))
    running = start_server([], "--config", str(config))
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=server.base_url + "/v1", api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def claude(server: RunningServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key=KEY, max_retries=0)


def post(server: RunningServer, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.base_url + path, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=30, **kwargs)


def said(text: str, *images: tuple[bytes, tuple[str, str], str]) -> str:
    lines = [seen(i, data, kind[0], kind[1], detail) for i, (data, kind, detail)
             in enumerate(images, 1)]
    return " ".join([text, *lines])


def chat_error(client: OpenAI, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**kwargs)
    assert isinstance(caught.value.body, dict)
    return caught.value.body  # the SDK keeps the envelope's `error` object


# -- chat completions ------------------------------------------------------------------------


def test_chat_several_images_reach_the_engine_intact(client: OpenAI) -> None:
    reply = client.chat.completions.create(model=SEER, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What are these?"},
        {"type": "image_url", "image_url": {"url": data_url(PNG)}},
        {"type": "image_url", "image_url": {"url": data_url(GIF, "image/gif"),
                                            "detail": "low"}}]}])
    assert reply.choices[0].message.content == said(
        "What are these?", (PNG, PNG_SEEN, "auto"), (GIF, GIF_SEEN, "low"))


def test_chat_images_across_the_conversation_and_the_string_form(client: OpenAI) -> None:
    messages: Any = [
        {"role": "user", "content": [{"type": "image_url", "image_url": data_url(GIF)}]},
        {"role": "assistant", "content": "A GIF."},
        {"role": "user", "content": [{"type": "text", "text": "And this?"},
                                     {"type": "image_url", "image_url": data_url(PNG)}]}]
    reply = client.chat.completions.create(model=SEER, messages=messages)
    assert reply.choices[0].message.content == said(
        "And this?", (GIF, GIF_SEEN, "auto"), (PNG, PNG_SEEN, "auto"))


def test_chat_a_model_that_cannot_see_refuses(client: OpenAI) -> None:
    error = chat_error(client, model=BLIND, messages=[{"role": "user", "content": [
        {"type": "text", "text": "Look"},
        {"type": "image_url", "image_url": {"url": data_url(PNG)}}]}])
    assert error["param"] == "messages[0].content[1]" and error["code"] == "image_not_supported"
    assert BLIND in error["message"]


@pytest.mark.parametrize(("url", "code"), [
    (data_url(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
     "invalid_image_format"),
    (data_url(png_bomb()), "invalid_image_format"),
    ("data:image/png;base64,not*base64", "invalid_image_format"),
    ("https://example.com/cat.png", "invalid_image_url"),  # not allowlisted: no network
])
def test_chat_a_bad_image_is_a_400_naming_its_part(client: OpenAI, url: str, code: str) -> None:
    error = chat_error(client, model=SEER, messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(PNG)}},
        {"type": "image_url", "image_url": {"url": url}}]}])
    assert (error["param"], error["code"]) == ("messages[0].content[1]", code), error


def test_chat_an_allowlisted_local_host_is_never_fetched(client: OpenAI,
                                                         images_host: RecordingServer) -> None:
    for host in ("localhost", "127.0.0.1"):
        url = f"http://{host}:{images_host.port}/cat.png"
        error = chat_error(client, model=SEER, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}]}])
        assert error["code"] == "invalid_image_url" and "loopback" in error["message"], error
    assert images_host.hits == []


def test_chat_images_only_in_user_messages(client: OpenAI) -> None:
    messages: Any = [{"role": "system", "content": [
        {"type": "image_url", "image_url": {"url": data_url(PNG)}}]},
        {"role": "user", "content": "Hi"}]
    error = chat_error(client, model=SEER, messages=messages)
    assert error["param"] == "messages[0].content[0]" and "user messages" in error["message"]


# -- responses -------------------------------------------------------------------------------


def test_responses_input_image(client: OpenAI) -> None:
    response = client.responses.create(model=SEER, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "Look"},
        {"type": "input_image", "image_url": data_url(PNG), "detail": "high"},
        {"type": "input_image", "image_url": data_url(GIF), "detail": "auto"}]}])
    assert response.output_text == said("Look", (PNG, PNG_SEEN, "high"),
                                        (GIF, GIF_SEEN, "auto"))


@pytest.mark.parametrize(("model", "part", "param", "code"), [
    (BLIND, {"type": "input_image", "image_url": data_url(PNG), "detail": "auto"},
     "input[0].content[1]", "image_not_supported"),
    (SEER, {"type": "input_image", "image_url": data_url(b"GIF89a"), "detail": "auto"},
     "input[0].content[1]", "invalid_image_format"),
    (SEER, {"type": "input_image", "file_id": "file-1", "detail": "auto"},
     "input[0].content[1].file_id", None),
])
def test_responses_refusals(client: OpenAI, model: str, part: dict[str, Any], param: str,
                            code: str | None) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=model, input=[{"role": "user", "content": [
            {"type": "input_text", "text": "Look"}, part]}])  # type: ignore[list-item]
    error = caught.value.body
    assert isinstance(error, dict)
    assert (error["param"], error["code"]) == (param, code), error


# -- messages (Anthropic) --------------------------------------------------------------------


def test_messages_image_blocks(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model=SEER, max_tokens=64, messages=[{
        "role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": data_url(PNG).split(",", 1)[1]}},
            {"type": "text", "text": "Describe it."}]}])
    assert message.content[0].type == "text"
    assert message.content[0].text == said("Describe it.", (PNG, PNG_SEEN, "auto"))


@pytest.mark.parametrize("model", [SEER, BLIND])
def test_messages_refusals_in_anthropics_envelope(claude: anthropic.Anthropic, model: str,
                                                  images_host: RecordingServer) -> None:
    url = f"http://localhost:{images_host.port}/cat.png"
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model=model, max_tokens=16, messages=[{"role": "user", "content": [
            {"type": "text", "text": "Look"},
            {"type": "image", "source": {"type": "url", "url": url}}]}])
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "messages[0].content[1]" in body["error"]["message"]
    assert ("loopback" if model == SEER else "cannot see images") in body["error"]["message"]
    assert images_host.hits == []


# -- /v1/models ------------------------------------------------------------------------------


def test_models_say_which_see(client: OpenAI) -> None:
    listed = {m.id: m.model_dump() for m in client.models.list()}
    assert listed[SEER]["input_modalities"] == ["text", "image"] and listed[SEER]["vision"]
    assert listed[BLIND]["input_modalities"] == ["text"] and listed[BLIND]["vision"] is False
    assert client.models.retrieve(SEER).model_dump()["input_modalities"] == ["text", "image"]


# -- /v1/images/describe ---------------------------------------------------------------------


def test_describe_json_and_multipart(server: RunningServer) -> None:
    reply = post(server, "/v1/images/describe", json={"image": data_url(GIF)})
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["object"] == "image.description" and answer["model"] == SEER  # the default
    assert answer["description"] == said("Describe this image.", (GIF, GIF_SEEN, "auto"))
    assert answer["usage"]["total_tokens"] > 0 and answer["finish_reason"] == "stop"
    reply = post(server, "/v1/images/describe", files={"file": ("cat.png", PNG, "image/png")},
                 data={"prompt": "What colour?", "detail": "low", "model": SEER})
    assert reply.status_code == 200, reply.text
    assert reply.json()["description"] == said("What colour?", (PNG, PNG_SEEN, "low"))


@pytest.mark.parametrize(("request_kwargs", "status", "param"), [
    ({"json": {"image": data_url(PNG), "model": BLIND}}, 400, "model"),
    ({"json": {"image": data_url(PNG), "model": "nope"}}, 404, "model"),
    ({"json": {"image": "data:image/png;base64,AAAA"}}, 400, "image"),
    ({"json": {"prompt": "no image"}}, 400, "image"),
    ({"files": {"file": ("x.txt", b"hello", "text/plain")}}, 400, "file"),
    ({"data": {"prompt": "no file"}, "files": {"other": ("x", b"x")}}, 400, "file"),
    ({"data": {"max_tokens": "many"}, "files": {"file": ("x.png", PNG)}}, 400, "max_tokens"),
])
def test_describe_refusals(server: RunningServer, request_kwargs: dict[str, Any], status: int,
                           param: str) -> None:
    reply = post(server, "/v1/images/describe", **request_kwargs)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["param"] == param


def test_describe_takes_one_file(server: RunningServer) -> None:
    reply = post(server, "/v1/images/describe", files=[("file", ("a.png", PNG)),
                                                        ("file", ("b.png", PNG))])
    assert reply.status_code == 400, reply.text
    assert "error" in reply.json()


def test_describe_needs_a_key(server: RunningServer) -> None:
    reply = httpx.post(server.base_url + "/v1/images/describe", json={"image": data_url(PNG)})
    assert reply.status_code == 401


def test_describe_batch_one_result_per_image(server: RunningServer) -> None:
    reply = post(server, "/v1/images/describe/batch", json={"prompt": "What?", "images": [
        {"image": data_url(PNG)},
        {"image": data_url(b"not an image")},
        {"image": data_url(GIF), "prompt": "Count.", "detail": "high"}]})
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    first, bad, third = answer["data"]
    assert [r["index"] for r in answer["data"]] == [0, 1, 2]
    assert first["description"] == said("What?", (PNG, PNG_SEEN, "auto"))
    assert third["description"] == said("Count.", (GIF, GIF_SEEN, "high"))
    assert set(bad) == {"index", "object", "error"}
    assert bad["error"]["param"] == "images[1]" and bad["error"]["code"] == "invalid_image_format"
    assert bad["error"]["type"] == "invalid_request_error"
    assert answer["usage"]["total_tokens"] == sum(r["usage"]["total_tokens"]
                                                  for r in (first, third))


def test_describe_batch_multipart(server: RunningServer) -> None:
    reply = post(server, "/v1/images/describe/batch", data={"prompt": "Hm?"}, files=[
        ("file", ("a.png", PNG, "image/png")), ("file", ("b.gif", GIF, "image/gif"))])
    assert reply.status_code == 200, reply.text
    assert [r["description"] for r in reply.json()["data"]] == [
        said("Hm?", (PNG, PNG_SEEN, "auto")), said("Hm?", (GIF, GIF_SEEN, "auto"))]


def test_describe_batch_is_bounded(server: RunningServer) -> None:
    images = [{"image": data_url(PNG)}] * (BATCH_MAX + 1)
    reply = post(server, "/v1/images/describe/batch", json={"images": images})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "images"
    assert post(server, "/v1/images/describe/batch", json={"images": []}).status_code == 400


def test_describe_batch_runs_concurrently(server: RunningServer) -> None:
    """Many batches at once all succeed, each image answered with its own bytes."""
    colours = [png(2, 2, (i, i, i)) for i in range(BATCH_MAX)]
    results: list[httpx.Response] = []

    def send() -> None:
        results.append(post(server, "/v1/images/describe/batch",
                            json={"images": [{"image": data_url(c)} for c in colours]}))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for reply in results:
        assert reply.status_code == 200, reply.text
        assert [r["description"] for r in reply.json()["data"]] == [
            said("Describe this image.", (c, ("image/png", "2x2"), "auto")) for c in colours]


# -- the engine's own refusal ----------------------------------------------------------------


def test_a_blind_fake_engine_refuses_images_itself() -> None:
    backend = FakeTextBackend(FakeOptions())
    request = ChatRequest(messages=[ChatMessage(role="user", content=[
        TextPart("hi"), ImagePart(PNG, "image/png")])])
    with pytest.raises(InvalidRequest, match="cannot see"):
        backend.chat(request, lambda event: None, threading.Event())

