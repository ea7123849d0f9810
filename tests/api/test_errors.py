"""Bad input gets OpenAI's error envelope with the right status and parameter, and the
server keeps serving afterwards."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer

MODEL = "smollm2-135m-instruct"
HI = [{"role": "user", "content": "hi"}]


def _post(server: RunningServer, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, timeout=60, **kw)


def _error(reply: httpx.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    error: dict[str, Any] = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in error["message"]
    return error


CASES = [
    ("unknown model", {"model": "gpt-9", "messages": HI}, 404, "model"),
    ("empty messages", {"model": MODEL, "messages": []}, 400, "messages"),
    ("messages not a list", {"model": MODEL, "messages": "hi"}, 400, "messages"),
    ("bad role", {"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, 400,
     "messages[0].role"),
    ("missing model", {"messages": HI}, 400, "model"),
    ("n zero", {"model": MODEL, "messages": HI, "n": 0}, 400, "n"),
    ("n above slots", {"model": MODEL, "messages": HI, "n": 50}, 400, "n"),
    ("negative max_tokens", {"model": MODEL, "messages": HI, "max_tokens": -1}, 400,
     "max_tokens"),
    ("temperature type", {"model": MODEL, "messages": HI, "temperature": "hot"}, 400,
     "temperature"),
    ("temperature range", {"model": MODEL, "messages": HI, "temperature": 5}, 400,
     "temperature"),
    # Types are strict, as OpenAI's: a boolean or a numeric string is not read as a number.
    ("temperature boolean", {"model": MODEL, "messages": HI, "temperature": True}, 400,
     "temperature"),
    ("top_p numeric string", {"model": MODEL, "messages": HI, "top_p": "0.5"}, 400, "top_p"),
    ("max_tokens boolean", {"model": MODEL, "messages": HI, "max_tokens": True}, 400,
     "max_tokens"),
    ("n float", {"model": MODEL, "messages": HI, "n": 2.0}, 400, "n"),
    ("stream string", {"model": MODEL, "messages": HI, "stream": "yes"}, 400, "stream"),
    ("top_logprobs without logprobs", {"model": MODEL, "messages": HI, "top_logprobs": 2}, 400,
     "top_logprobs"),
    ("invalid json_schema", {"model": MODEL, "messages": HI, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
     400, "response_format.json_schema.schema"),
    ("image part", {"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:,"}}]}]}, 400,
     "messages[0].content[0]"),
]


@pytest.mark.parametrize(("name", "body", "status", "param"), CASES, ids=[c[0] for c in CASES])
def test_chat_bad_input(chat_server: RunningServer, name: str, body: Any, status: int,
                        param: str) -> None:
    error = _error(_post(chat_server, "/v1/chat/completions", body), status)
    assert error["param"] == param, error


def test_unknown_model_names_available(chat_server: RunningServer) -> None:
    error = _error(_post(chat_server, "/v1/chat/completions", {"model": "gpt-9", "messages": HI}),
                   404)
    assert MODEL in error["message"] and error["code"] == "model_not_found"


def test_malformed_json(chat_server: RunningServer) -> None:
    reply = httpx.post(chat_server.base_url + "/v1/chat/completions", content=b'{"model": ',
                       headers={"content-type": "application/json"})
    assert _error(reply, 400)["code"] == "invalid_json"


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_over_context(chat_server: RunningServer, stream: bool) -> None:
    long = [{"role": "user", "content": "hello " * 9000}]
    error = _error(_post(chat_server, "/v1/chat/completions",
                         {"model": MODEL, "messages": long, "stream": stream}), 400)
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    count = _post(chat_server, "/tokenize", {"model": MODEL, "messages": long}).json()["count"]
    assert "context length is 4096 tokens" in error["message"]
    assert f"has {count} prompt tokens" in error["message"]


def test_completions_bad_input(chat_server: RunningServer) -> None:
    for body, param in (({"model": MODEL, "prompt": []}, "prompt"),
                        ({"model": MODEL, "prompt": "x", "logprobs": 2, "echo": True}, "echo"),
                        ({"model": MODEL, "prompt": [99999999]}, "prompt"),
                        ({"model": MODEL, "prompt": "hello " * 9000}, "prompt")):
        assert _error(_post(chat_server, "/v1/completions", body), 400)["param"] == param


def test_tokenize_bad_input(chat_server: RunningServer) -> None:
    _error(_post(chat_server, "/tokenize", {"model": MODEL}), 400)
    _error(_post(chat_server, "/detokenize", {"model": MODEL, "tokens": []}), 400)


def test_body_too_large(chat_server: RunningServer) -> None:
    big = b'{"model": "x", "messages": [], "pad": "' + b"a" * (33 * 1024 * 1024) + b'"}'
    reply = httpx.post(chat_server.base_url + "/v1/chat/completions", content=big,
                       headers={"content-type": "application/json"}, timeout=60)
    _error(reply, 413)


def test_unknown_route_is_enveloped(chat_server: RunningServer) -> None:
    _error(httpx.get(chat_server.base_url + "/v1/nothing-here"), 404)


def test_still_healthy_after_bad_input(chat_server: RunningServer) -> None:
    for body in (c[1] for c in CASES):
        _post(chat_server, "/v1/chat/completions", body)
    assert httpx.get(chat_server.base_url + "/health").status_code == 200
    reply = _post(chat_server, "/v1/chat/completions",
                  {"model": MODEL, "messages": HI, "max_tokens": 3})
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]
