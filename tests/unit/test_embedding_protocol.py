"""The wire schemas of /v1/embeddings and /v1/rerank, without a server."""

from __future__ import annotations

import array
import base64
from typing import Any

import msgspec
import pytest
from pydantic import ValidationError

from pocketserve.api.protocol.embeddings import EmbeddingRequest, embedding_list
from pocketserve.api.protocol.rerank import RerankRequest, rerank_response
from pocketserve.errors import InvalidRequest
from pocketserve.ops.rerank import Ranked, Ranking
from pocketserve.ops.rerank import RerankRequest as EngineRerank


def payload(raw: object, **extra: object) -> dict[str, Any]:
    req = EmbeddingRequest.model_validate({"model": "m", "input": raw, **extra}).to_engine(False)
    out: dict[str, Any] = msgspec.structs.asdict(req)
    return out


def test_every_input_shape_becomes_texts_or_token_lists() -> None:
    assert payload("hi") == {"texts": ["hi"], "single": True, "dimensions": None,
                             "truncate": False, "token_ids": None}
    assert payload(["a", "b"])["texts"] == ["a", "b"]
    assert payload(["a"])["single"] is False
    one = payload([1, 2, 3])
    assert one["token_ids"] == [[1, 2, 3]] and one["single"] is True
    assert payload([[1], [2, 3]])["token_ids"] == [[1], [2, 3]]


@pytest.mark.parametrize(("raw", "param"), [("", "input"), ([], "input"), (["a", ""], "input[1]"),
                                            ([[1], []], "input[1]")])
def test_empty_inputs_are_refused_naming_the_input(raw: object, param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        payload(raw)
    assert err.value.param == param


def test_wrong_types_and_too_many_inputs() -> None:
    for raw in ([1, "a"], [True], 5, [["a"]]):
        with pytest.raises(ValidationError):
            payload(raw)
    with pytest.raises(ValidationError):
        payload("a", encoding_format="hex")
    with pytest.raises(InvalidRequest):
        payload(["a"] * 2049)


def test_float_and_base64_carry_the_same_float32_values() -> None:
    raw = array.array("f", [0.1, -2.5, 3.0]).tobytes()
    floats = embedding_list([raw], "float", "m", 3)
    b64 = embedding_list([raw], "base64", "m", 3)
    assert floats["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    decoded = array.array("f", base64.b64decode(b64["data"][0]["embedding"])).tolist()
    assert floats["data"][0]["embedding"] == decoded
    assert floats["data"][0] == {"object": "embedding", "index": 0, "embedding": decoded}


def test_rerank_documents_as_strings_or_objects() -> None:
    req = RerankRequest.model_validate({"model": "m", "query": "q",
                                        "documents": ["a", {"text": "b"}], "top_n": 1})
    assert req.to_engine(True) == EngineRerank(query="q", documents=["a", "b"], top_n=1,
                                               truncate=True)
    body = rerank_response(req, "m", Ranking([Ranked(1, 0.5)], 7))
    assert body["results"] == [{"index": 1, "relevance_score": 0.5, "document": {"text": "b"}}]
    assert body["usage"]["total_tokens"] == 7 and body["id"].startswith("rerank-")
    for bad, param in (({"query": ""}, "query"), ({"documents": []}, "documents"),
                       ({"documents": ["a", ""]}, "documents[1]")):
        data = {"model": "m", "query": "q", "documents": ["a"], **bad}
        with pytest.raises(InvalidRequest) as err:
            RerankRequest.model_validate(data).to_engine(True)
        assert err.value.param == param
