"""The HTTP layer's error mapping, on an app serving no model (no worker is started)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from pocketserve.api.app import create_app
from pocketserve.config import Settings


@pytest.fixture()
def http() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models=[], max_body_bytes=4096))) as client:
        yield client


def test_validation_names_nested_param(http: TestClient) -> None:
    reply = http.post("/v1/chat/completions", json={
        "model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "xml"}})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "response_format.type"


def test_unknown_model_with_nothing_served(http: TestClient) -> None:
    reply = http.post("/v1/completions", json={"model": "m", "prompt": "x"})
    assert reply.status_code == 404
    assert "Available models: none" in reply.json()["error"]["message"]


def test_declared_and_chunked_bodies_over_limit(http: TestClient) -> None:
    big = b"x" * 5000
    declared = http.post("/v1/completions", content=big,
                         headers={"content-type": "application/json"})
    assert declared.status_code == 413
    chunked = http.post("/v1/completions", content=iter([big[:3000], big[3000:]]),
                        headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    assert chunked.json()["error"]["code"] == "request_too_large"


def test_small_chunked_body_is_replayed(http: TestClient) -> None:
    body = b'{"model": "m", "prompt": "x"}'
    reply = http.post("/v1/completions", content=iter([body[:10], body[10:]]),
                      headers={"content-type": "application/json"})
    assert reply.status_code == 404  # parsed fine, then the model is unknown


def test_method_not_allowed_is_enveloped(http: TestClient) -> None:
    reply = http.get("/v1/chat/completions")
    assert reply.status_code == 405 and "error" in reply.json()


def test_health_with_no_models(http: TestClient) -> None:
    assert http.get("/health").json() == {"status": "ok", "models": {}, "not_ready": []}


JSON_ROUTES = {"/v1/chat/completions": "model", "/v1/completions": "model",
               "/tokenize": "model", "/detokenize": "model", "/v1/embeddings": "model",
               "/v1/rerank": "model", "/v2/rerank": "model", "/rerank": "model",
               "/v1/audio/speech": "model"}


@pytest.mark.parametrize("path", sorted(JSON_ROUTES))
def test_missing_body_says_so_and_names_the_first_field(http: TestClient, path: str) -> None:
    error = http.post(path).json()["error"]
    assert error["message"].startswith("The request body is missing: send a JSON object with "
                                       f"'{JSON_ROUTES[path]}'"), error
    assert error["param"] == JSON_ROUTES[path] and error["code"] == "missing"
    assert "None" not in error["message"]


def test_rerank_missing_body_lists_every_required_field(http: TestClient) -> None:
    error = http.post("/v2/rerank").json()["error"]
    assert error["message"] == ("The request body is missing: send a JSON object with "
                                "'model', 'query', 'documents'.")


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"3"])
def test_body_that_is_not_an_object(http: TestClient, body: bytes) -> None:
    reply = http.post("/v2/rerank", content=body, headers={"content-type": "application/json"})
    error = reply.json()["error"]
    assert reply.status_code == 400
    assert error["message"].startswith("The request body must be a JSON object with 'model'")
    assert "None" not in error["message"]


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/embeddings", {"model": "m", "input": [[5, 10**30]]}, "input[0][1]"),
    ("/v1/completions", {"model": "m", "prompt": "x", "top_k": 10**22}, "top_k"),
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}],
                              "seed": -(10**20)}, "seed"),
    ("/v2/rerank", {"model": "m", "query": "q", "documents": ["d"], "top_n": 2**64},
     "top_n"),
])
def test_integers_past_64_bits_are_400_naming_them(http: TestClient, path: str,
                                                    body: dict[str, object], param: str) -> None:
    """They cannot cross the worker socket (msgpack); they were a 500 there."""
    reply = http.post(path, json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["code"] == "integer_too_large"


def test_form_integers_past_64_bits_are_400(http: TestClient) -> None:
    reply = http.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF")},
                      data={"model": "m", "chunking_strategy[type]": "server_vad",
                            "chunking_strategy[prefix_padding_ms]": str(10**30)})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == "chunking_strategy.prefix_padding_ms"


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/completions", {"model": "m", "prompt": [[5], [2**40]]}),
    ("/v1/completions", {"model": "m", "prompt": [-1]}),
    ("/detokenize", {"model": "m", "tokens": [2**31]}),
])
def test_token_ids_outside_32_bits_are_400(http: TestClient, path: str,
                                          body: dict[str, object]) -> None:
    """A larger id wrapped around in llama.cpp and was read as another token."""
    reply = http.post(path, json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] in ("prompt", "tokens[0]")
