"""Cross-encoder rerankers on onnxruntime: an ONNX file or a Hugging Face folder by path.

The graph takes input_ids, attention_mask and (where it declares it) token_type_ids of a
(query, document) pair and gives logits [batch, labels]. One label (the usual reranker head)
becomes a score with a sigmoid, as sentence-transformers' CrossEncoder does; with several
labels the score is the softmax probability of the last one ("relevant").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from pocketserve.backends.onnx_common import (
    feeds,
    load_tokenizer,
    make_session,
    max_tokens,
    model_files,
    pad_id,
    padded,
)
from pocketserve.config import ModelSpec
from pocketserve.engines.base import Engine
from pocketserve.engines.embeddings import BatchOptions
from pocketserve.engines.rerank import CrossEncoderScorer, Pair, RerankEngine
from pocketserve.errors import ContextLengthExceeded


def build_engine(spec: ModelSpec, path: Path, threads: int) -> Engine:
    backend = OnnxCrossEncoder(path, threads, spec.options)
    return RerankEngine(CrossEncoderScorer(backend, BatchOptions.from_options(spec.options),
                                           name=spec.id))


class OnnxCrossEncoder:
    def __init__(self, path: Path, threads: int, options: dict[str, Any]):
        onnx_file, tokenizer_file, folder = model_files(path, options)
        self.max_tokens = max_tokens(folder, options)
        self._tokenizer = load_tokenizer(tokenizer_file)
        # A second tokenizer that cuts only the document, so the first never has to be
        # reconfigured while other threads use it.
        self._truncating = Tokenizer.from_str(self._tokenizer.to_str())
        self._truncating.enable_truncation(self.max_tokens, strategy="only_second")
        self._pad = pad_id(self._tokenizer)
        self._session = make_session(onnx_file, threads)
        self._output = self._session.get_outputs()[0].name

    def encode_pairs(self, query: str, documents: list[str], truncate: bool) -> list[Pair]:
        pairs = [(query, doc) for doc in documents]
        if not truncate:
            return [Pair(list(e.ids), list(e.type_ids))
                    for e in self._tokenizer.encode_batch(pairs)]
        try:
            encodings = self._truncating.encode_batch(pairs)
        except Exception as exc:  # tokenizers raises a bare Exception when the query is too long
            raise ContextLengthExceeded(
                f"The query alone is too long for this reranker, which reads at most "
                f"{self.max_tokens} tokens per query and document together.",
                param="query") from exc
        return [Pair(list(e.ids), list(e.type_ids)) for e in encodings]

    def score(self, batch: list[Pair]) -> np.ndarray:
        arrays = padded([p.ids for p in batch], [p.type_ids for p in batch], pad_id=self._pad)
        logits = np.asarray(self._session.run([self._output], feeds(self._session, arrays))[0],
                            dtype=np.float64)
        if logits.ndim == 1:
            logits = logits[:, None]
        if logits.shape[1] == 1:
            return np.asarray(1.0 / (1.0 + np.exp(-logits[:, 0])), dtype=np.float32)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(shifted[:, -1] / shifted.sum(axis=1), dtype=np.float32)

    def close(self) -> None:
        del self._session
