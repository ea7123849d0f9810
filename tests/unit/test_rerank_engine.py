"""Ranking, the tiny cross-encoder run in-process, and how paths become catalog entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pocketserve.catalog import Catalog, spec_for_path
from pocketserve.config import ModelSpec
from pocketserve.engines.rerank import RerankEngine, rank
from pocketserve.errors import ContextLengthExceeded, ModelNotFound
from pocketserve.ops.rerank import RERANK
from tests import tiny_cross_encoder as tiny
from tests.engine_helpers import run_op

pytest.importorskip("onnx")


def test_rank_sorts_best_first_keeps_ties_in_order_and_cuts_top_n() -> None:
    ranked = rank([0.1, 0.9, 0.5, 0.9], top_n=None)
    assert [(r.index, r.relevance_score) for r in ranked] == [(1, 0.9), (3, 0.9), (2, 0.5),
                                                              (0, 0.1)]
    assert [r.index for r in rank([0.1, 0.9, 0.5], top_n=2)] == [1, 2]
    assert len(rank([0.1, 0.9], top_n=0)) == 2
    assert [r.index for r in rank([0.3], top_n=5)] == [0]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build(tmp_path_factory.mktemp("models") / "tiny-ce")


def _engine(folder: Path) -> RerankEngine:
    from pocketserve.backends import load_engine

    spec = spec_for_path(str(folder))
    engine = load_engine(spec, folder, threads=1)
    assert isinstance(engine, RerankEngine)
    return engine


def _rerank(engine: RerankEngine, payload: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = run_op(engine, RERANK, payload, as_dicts=True)[0]
    return out


def test_cross_encoder_scores_match_the_numpy_reference(tiny_folder: Path) -> None:
    engine = _engine(tiny_folder)
    docs = ["the cat sleeps on my sofa", "stock market fell", "a dog", "kitten and cat"]
    reply = _rerank(engine, {"query": "my cat", "documents": docs, "truncate": True})
    expected = tiny.reference_scores("my cat", docs)
    results = reply["results"]
    assert isinstance(results, list)
    assert [r["index"] for r in results] == list(np.argsort(-np.array(expected), kind="stable"))
    for r in results:
        assert r["relevance_score"] == pytest.approx(expected[r["index"]], abs=1e-5)
    assert reply["prompt_tokens"] == sum(tiny.token_count("my cat", d) for d in docs)
    engine.close()


def test_cross_encoder_long_documents_truncate_or_fail(tiny_folder: Path) -> None:
    engine = _engine(tiny_folder)
    long_doc = " ".join(["one two three four five"] * 10)
    reply = _rerank(engine, {"query": "cat", "documents": ["dog", long_doc], "truncate": True})
    scores = {r["index"]: r["relevance_score"] for r in reply["results"]}  # type: ignore[attr-defined]
    assert scores[1] == pytest.approx(tiny.reference_scores("cat", [long_doc])[0], abs=1e-5)
    assert reply["prompt_tokens"] == 5 + tiny.MAX_TOKENS
    with pytest.raises(ContextLengthExceeded) as err:
        _rerank(engine, {"query": "cat", "documents": ["dog", long_doc], "truncate": False})
    assert err.value.param == "documents[1]"
    assert f"at most {tiny.MAX_TOKENS} tokens" in err.value.message
    with pytest.raises(ContextLengthExceeded) as err:
        _rerank(engine, {"query": long_doc, "documents": ["dog"], "truncate": True})
    assert err.value.param == "query"
    engine.close()


def test_paths_become_the_right_kind_of_model(tiny_folder: Path, tmp_path: Path) -> None:
    spec = spec_for_path(str(tiny_folder))
    assert (spec.id, spec.capability, spec.backend) == ("tiny-ce", "rerank", "cross_encoder")
    in_sub = tiny.build(tmp_path / "sub-ce", in_onnx_subfolder=True)
    assert spec_for_path(str(in_sub / "onnx" / "model.onnx")).backend == "cross_encoder"
    engine = _engine(in_sub)
    assert engine.info()["scoring"] == "cross-encoder"
    engine.close()
    for plain in (tmp_path / "encoder.onnx", tmp_path / "not-yet-there.onnx"):
        if plain.stem == "encoder":
            plain.write_bytes(b"")
        spec = spec_for_path(str(plain))
        assert (spec.id, spec.capability, spec.backend) == (plain.stem, "embeddings",
                                                            "onnx_embeddings")
    with pytest.raises(ModelNotFound):
        spec_for_path(str(tmp_path))  # a folder with no model files in it


def test_builtin_minilm_entries() -> None:
    catalog = Catalog()
    assert catalog.find("sentence-transformers/all-MiniLM-L6-v2").id == "all-minilm-l6-v2"
    reranker = catalog.find("minilm-cosine-reranker")
    assert isinstance(reranker, ModelSpec)
    assert reranker.capability == "rerank" and "cosine" in reranker.description


def test_a_piper_voice_by_path_is_speech(tmp_path: Path) -> None:
    voice = tmp_path / "en_US-test-medium.onnx"
    voice.write_bytes(b"")
    (tmp_path / "en_US-test-medium.onnx.json").write_text("{}")
    spec = spec_for_path(str(voice))
    assert (spec.capability, spec.backend) == ("speech", "piper")


def test_a_folder_with_only_a_config_is_not_an_encoder(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"architectures": ["BertModel"]}')
    (tmp_path / "model.bin").write_bytes(b"\0")  # CTranslate2-style weights
    with pytest.raises(ModelNotFound):
        spec_for_path(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"\0")
    spec = spec_for_path(str(tmp_path))
    assert (spec.capability, spec.backend) == ("embeddings", "sentence_transformers")
