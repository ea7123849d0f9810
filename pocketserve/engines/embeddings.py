"""Embeddings: token limits, special tokens, dynamic batching, and the `embed` operation.

A backend only turns text into content token ids and a padded batch of ids into unit vectors.
Everything every backend shares lives here: wrapping ids in the model's special tokens,
refusing or truncating inputs that are too long, batching the sequences of concurrent requests
(sorted by length, so little padding is wasted), and Matryoshka-style `dimensions`.

Vectors cross the worker socket as little-endian float32 bytes (`ops.embeddings`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pocketserve.engines.base import Call, Emit, Served, Warmup, serve
from pocketserve.engines.batching import Batcher, by_length
from pocketserve.errors import ContextLengthExceeded, InvalidRequest
from pocketserve.ops.common import Usage
from pocketserve.ops.embeddings import EMBED, Embeddings, EmbedRequest


class EmbeddingBackend(Protocol):
    """What a library must do to serve embeddings."""

    dimension: int
    max_tokens: int  # longest sequence, special tokens included
    vocab_size: int
    prefix: list[int]  # special ids before the content ([CLS])
    suffix: list[int]  # and after it ([SEP])

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Content token ids of each text, no special tokens, no truncation."""
        ...

    def embed(self, batch: list[list[int]]) -> np.ndarray:
        """float32 [len(batch), dimension] unit vectors for full (wrapped) sequences."""
        ...

    def close(self) -> None: ...


@dataclass
class BatchOptions:
    """How sequences of concurrent requests are grouped for the model."""

    batch_size: int = 32  # sequences per model call
    max_batch: int = 128  # sequences collected before sorting by length and splitting
    window_s: float = 0.004  # how long the first sequence waits for others

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> BatchOptions:
        batch_size = int(options.get("batch_size", 32))
        return cls(batch_size=batch_size,
                   max_batch=int(options.get("max_batch", batch_size * 4)),
                   window_s=float(options.get("batch_window_s", 0.004)))


class Embedder:
    """Token limits and batching around a backend; shared by `embed` and cosine reranking."""

    def __init__(self, backend: EmbeddingBackend, batching: BatchOptions, name: str = "model"):
        self.backend = backend
        self.name = name
        self._batch_size = batching.batch_size
        self._batcher: Batcher[list[int], np.ndarray] = Batcher(
            self._run, max_batch=batching.max_batch, window_s=batching.window_s,
            name="embed-batcher")

    def sequences(self, req: EmbedRequest, param: str = "input") -> list[list[int]]:
        """Each input as the model's full token sequence, checked against the limit."""
        if req.texts is not None:
            contents = self.backend.encode(list(req.texts))
        else:
            contents = [list(ids) for ids in req.token_ids or []]
            self._check_ids(contents, param, req.single)
        return [self._wrap(c, req.truncate, param if req.single else f"{param}[{i}]")
                for i, c in enumerate(contents)]

    def vectors(self, sequences: list[list[int]], cancelled: threading.Event) -> np.ndarray:
        """float32 [n, dimension] unit vectors, batched with other requests' sequences."""
        rows = self._batcher.submit_many(sequences, cancelled)
        return np.stack(rows) if rows else np.zeros((0, self.backend.dimension), np.float32)

    def close(self) -> None:
        self._batcher.close()
        self.backend.close()

    def _wrap(self, content: list[int], truncate: bool, param: str) -> list[int]:
        b = self.backend
        room = b.max_tokens - len(b.prefix) - len(b.suffix)
        if len(content) > room:
            if not truncate:
                total = len(content) + len(b.prefix) + len(b.suffix)
                raise ContextLengthExceeded(
                    f"'{param}' is {total} tokens long, but the model {self.name!r} takes at "
                    f"most {b.max_tokens} tokens per input. Shorten the input, or have the "
                    "server truncate long inputs (setting `embeddings_truncate`).", param=param)
            content = content[:room]
        return [*b.prefix, *content, *b.suffix]

    def _check_ids(self, contents: list[list[int]], param: str, single: bool) -> None:
        vocab = self.backend.vocab_size
        for i, ids in enumerate(contents):
            bad = next((t for t in ids if not 0 <= t < vocab), None)
            if bad is not None:
                where = param if single else f"{param}[{i}]"
                raise InvalidRequest(f"Token id {bad} in '{where}' is outside this model's "
                                     f"vocabulary (0 to {vocab - 1}).", param=where)

    def _run(self, batch: list[list[int]]) -> list[np.ndarray]:
        return by_length(batch, self._batch_size, len, self.backend.embed)


def shorten(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """Keep the first `dimensions` components and re-normalise (Matryoshka embeddings)."""
    cut = vectors[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return np.asarray(cut / np.maximum(norms, 1e-12), dtype=np.float32)


class EmbeddingEngine:
    """The worker's `embed` operation."""

    def __init__(self, embedder: Embedder, matryoshka: bool = False):
        self.embedder = embedder
        self.matryoshka = matryoshka

    def info(self) -> dict[str, Any]:
        b = self.embedder.backend
        return {"dimensions": b.dimension, "context_length": b.max_tokens,
                "matryoshka": self.matryoshka}

    def operations(self) -> Sequence[Served[Any, Any]]:
        return [serve(EMBED, self._embed)]

    def warmups(self) -> Sequence[Warmup[Any]]:
        return [Warmup(EMBED, EmbedRequest(texts=["Hello there."]))]

    def close(self) -> None:
        self.embedder.close()

    def _embed(self, req: EmbedRequest, emit: Emit, call: Call) -> None:
        self._check_dimensions(req.dimensions)
        sequences = self.embedder.sequences(req)
        vectors = self.embedder.vectors(sequences, call.cancelled)
        if req.dimensions is not None and req.dimensions != vectors.shape[1]:
            vectors = shorten(vectors, req.dimensions)
        little = vectors.astype("<f4", copy=False)
        tokens = sum(len(s) for s in sequences)
        emit(Embeddings([row.tobytes() for row in little], tokens))
        emit(Usage(tokens))

    def _check_dimensions(self, dimensions: int | None) -> None:
        native = self.embedder.backend.dimension
        if dimensions is None or dimensions == native:
            return
        if not self.matryoshka:
            raise InvalidRequest(
                f"The model {self.embedder.name!r} does not support `dimensions`: its vectors "
                f"always have {native} dimensions.", param="dimensions")
        if not 1 <= dimensions <= native:
            raise InvalidRequest(f"`dimensions` must be between 1 and {native} for the model "
                                 f"{self.embedder.name!r}.", param="dimensions")
