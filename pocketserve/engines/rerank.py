"""Reranking: score documents against a query, sort them, keep the best `top_n`.

Two scorers: a cross-encoder (query and document read together; the accurate kind), and cosine
similarity of embeddings (what we can serve by default, since no cross-encoder's weights ship
in a package). Both batch the pairs or texts of concurrent requests.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pocketserve.engines.base import Call, Emit, Served, Warmup, serve
from pocketserve.engines.batching import Batcher, by_length
from pocketserve.engines.embeddings import BatchOptions, Embedder
from pocketserve.errors import ContextLengthExceeded
from pocketserve.ops.common import Usage
from pocketserve.ops.embeddings import EmbedRequest
from pocketserve.ops.rerank import RERANK, Ranked, Ranking, RerankRequest


def rank(scores: list[float], top_n: int | None) -> list[Ranked]:
    """Best first; equal scores keep the documents' order; `top_n` of None or 0 keeps all."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if top_n:
        order = order[:top_n]
    return [Ranked(i, float(scores[i])) for i in order]


class Scorer(Protocol):
    def score(self, req: RerankRequest, cancelled: threading.Event) -> tuple[list[float], int]:
        """One score per document, in order, and the number of tokens the model read."""
        ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class RerankEngine:
    """The worker's `rerank` operation."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer

    def info(self) -> dict[str, Any]:
        return self.scorer.info()

    def operations(self) -> Sequence[Served[Any, Any]]:
        return [serve(RERANK, self._rerank)]

    def warmups(self) -> Sequence[Warmup[Any]]:
        return [Warmup(RERANK, RerankRequest(query="greeting", documents=["Hello there."]))]

    def close(self) -> None:
        self.scorer.close()

    def _rerank(self, req: RerankRequest, emit: Emit, call: Call) -> None:
        scores, tokens = self.scorer.score(req, call.cancelled)
        emit(Ranking(rank(scores, req.top_n), tokens))
        emit(Usage(tokens))


class CosineScorer:
    """Scores a document by the cosine of its embedding with the query's."""

    def __init__(self, embedder: Embedder):
        self.embedder = embedder

    def info(self) -> dict[str, Any]:
        b = self.embedder.backend
        return {"scoring": "embedding cosine similarity", "dimensions": b.dimension,
                "context_length": b.max_tokens}

    def score(self, req: RerankRequest, cancelled: threading.Event) -> tuple[list[float], int]:
        query = self.embedder.sequences(
            EmbedRequest(texts=[req.query], truncate=req.truncate, single=True), param="query")
        docs = self.embedder.sequences(
            EmbedRequest(texts=req.documents, truncate=req.truncate), param="documents")
        vectors = self.embedder.vectors(query + docs, cancelled)
        scores = vectors[1:] @ vectors[0]
        return [float(s) for s in scores], sum(len(s) for s in query + docs)

    def close(self) -> None:
        self.embedder.close()


@dataclass
class Pair:
    """A query and a document as one model input."""

    ids: list[int]
    type_ids: list[int]


class PairBackend(Protocol):
    """What a library must do to serve a cross-encoder."""

    max_tokens: int

    def encode_pairs(self, query: str, documents: list[str], truncate: bool) -> list[Pair]:
        """Each (query, document) as one sequence with special tokens; when `truncate`,
        documents are cut to fit `max_tokens`."""
        ...

    def score(self, batch: list[Pair]) -> np.ndarray:
        """float32 [len(batch)] relevance scores."""
        ...

    def close(self) -> None: ...


class CrossEncoderScorer:
    """Runs (query, document) pairs of all concurrent requests through one cross-encoder."""

    def __init__(self, backend: PairBackend, batching: BatchOptions, name: str = "model"):
        self.backend = backend
        self.name = name
        self._batch_size = batching.batch_size
        self._batcher: Batcher[Pair, float] = Batcher(
            self._run, max_batch=batching.max_batch, window_s=batching.window_s,
            name="rerank-batcher")

    def info(self) -> dict[str, Any]:
        return {"scoring": "cross-encoder", "context_length": self.backend.max_tokens}

    def score(self, req: RerankRequest, cancelled: threading.Event) -> tuple[list[float], int]:
        pairs = self.backend.encode_pairs(req.query, req.documents, req.truncate)
        limit = self.backend.max_tokens
        for i, pair in enumerate(pairs):
            if len(pair.ids) > limit:
                raise ContextLengthExceeded(
                    f"The query with 'documents[{i}]' is {len(pair.ids)} tokens long, but the "
                    f"model {self.name!r} reads at most {limit} tokens per pair. Shorten it, "
                    "or have the server truncate documents (setting `rerank_truncate`).",
                    param=f"documents[{i}]")
        scores = self._batcher.submit_many(pairs, cancelled)
        return scores, sum(len(p.ids) for p in pairs)

    def close(self) -> None:
        self._batcher.close()
        self.backend.close()

    def _run(self, batch: list[Pair]) -> list[float]:
        scores = by_length(batch, self._batch_size, lambda p: len(p.ids), self.backend.score)
        return [float(s) for s in scores]
