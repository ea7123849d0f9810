"""Sentence embeddings on onnxruntime with a `tokenizers` tokenizer (no torch).

Serves an encoder exported to ONNX (`last_hidden_state` output, pooled here by the model's
pooling mode, mean by default, then L2-normalised) or one whose graph already pools
(a 2-D output). The same backend also serves a reranker that scores documents by cosine
similarity to the query, when its spec's capability is `rerank`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pocketserve.backends.onnx_common import (
    feeds,
    load_tokenizer,
    make_session,
    max_tokens,
    model_files,
    pad_id,
    padded,
    read_json,
    special_tokens,
)
from pocketserve.config import ModelSpec
from pocketserve.engines.base import Engine
from pocketserve.engines.embeddings import BatchOptions, Embedder, EmbeddingEngine
from pocketserve.engines.rerank import CosineScorer, RerankEngine


def build_engine(spec: ModelSpec, path: Path, threads: int) -> Engine:
    embedder = Embedder(OnnxEmbeddingBackend(path, threads, spec.options),
                        BatchOptions.from_options(spec.options), name=spec.id)
    if spec.capability == "rerank":
        return RerankEngine(CosineScorer(embedder))
    return EmbeddingEngine(embedder, matryoshka=bool(spec.options.get("matryoshka", False)))


class OnnxEmbeddingBackend:
    def __init__(self, path: Path, threads: int, options: dict[str, Any]):
        onnx_file, tokenizer_file, folder = model_files(path, options)
        self._tokenizer = load_tokenizer(tokenizer_file)
        self.prefix, self.suffix = special_tokens(self._tokenizer)
        self.vocab_size = self._tokenizer.get_vocab_size()
        self.max_tokens = max_tokens(folder, options)
        self._pad = pad_id(self._tokenizer)
        self._pooling = str(options.get("pooling") or _pooling_mode(folder))
        self._session = make_session(onnx_file, threads)
        self._output = self._session.get_outputs()[0].name
        self.dimension = int(options.get("dimension") or self._probe_dimension())

    def encode(self, texts: list[str]) -> list[list[int]]:
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        return [list(e.ids) for e in encodings]

    def embed(self, batch: list[list[int]]) -> np.ndarray:
        arrays = padded(batch, pad_id=self._pad)
        hidden = self._session.run([self._output], feeds(self._session, arrays))[0]
        hidden = np.asarray(hidden, dtype=np.float32)
        pooled = hidden if hidden.ndim == 2 else self._pool(hidden, arrays["attention_mask"])
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)

    def close(self) -> None:
        del self._session

    def _pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self._pooling == "cls":
            return hidden[:, 0]
        weights = mask[:, :, None].astype(np.float32)
        summed = (hidden * weights).sum(axis=1)
        return np.asarray(summed / np.maximum(weights.sum(axis=1), 1e-9), dtype=np.float32)

    def _probe_dimension(self) -> int:
        shape = self._session.get_outputs()[0].shape
        if isinstance(shape[-1], int):
            return shape[-1]
        return int(self.embed([[*self.prefix, *self.suffix]]).shape[1])


def _pooling_mode(folder: Path) -> str:
    """sentence-transformers' pooling config, where the folder has one; mean otherwise."""
    config = read_json(folder / "1_Pooling" / "config.json")
    if config.get("pooling_mode_cls_token"):
        return "cls"
    return "mean"
