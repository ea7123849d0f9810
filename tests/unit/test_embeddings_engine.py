"""The embeddings engine with a fake backend: limits, special tokens, batching, dimensions."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import msgspec
import numpy as np
import pytest

from pocketserve.engines.embeddings import (
    BatchOptions,
    Embedder,
    EmbeddingEngine,
    shorten,
)
from pocketserve.errors import ContextLengthExceeded, InvalidRequest
from pocketserve.ops.common import Usage
from pocketserve.ops.embeddings import EMBED
from tests.engine_helpers import run_op

DIM = 16


class FakeBackend:
    """Each word is its length as a token; a vector is one-hot on the first content token,
    so results can be traced back to their input."""

    dimension = DIM
    max_tokens = 8
    vocab_size = 100
    prefix = [98]
    suffix = [99]

    def __init__(self) -> None:
        self.calls: list[list[int]] = []  # lengths of each model call's sequences
        self.lock = threading.Lock()

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [[len(w) for w in t.split()] for t in texts]

    def embed(self, batch: list[list[int]]) -> np.ndarray:
        with self.lock:
            self.calls.append([len(s) for s in batch])
        out = np.zeros((len(batch), DIM), np.float32)
        for row, seq in enumerate(batch):
            out[row, seq[1] % DIM if len(seq) > 2 else 0] = 1.0
        return out

    def close(self) -> None:
        pass


def make(batch_size: int = 4, max_batch: int = 16, window_s: float = 0.05,
         matryoshka: bool = False) -> tuple[EmbeddingEngine, FakeBackend]:
    backend = FakeBackend()
    embedder = Embedder(backend, BatchOptions(batch_size, max_batch, window_s), name="fake")
    return EmbeddingEngine(embedder, matryoshka=matryoshka), backend


def run(engine: EmbeddingEngine, payload: dict[str, object]) -> dict[str, object]:
    out = run_op(engine, EMBED, dict(payload))
    assert len(out) == 2  # the answer, then the serving layer's usage event
    assert out[1] == Usage(prompt_tokens=out[0].prompt_tokens)
    return msgspec.structs.asdict(out[0])


def vectors(reply: dict[str, object]) -> np.ndarray:
    rows = reply["embeddings"]
    assert isinstance(rows, list)
    return np.stack([np.frombuffer(b, "<f4") for b in rows])


def test_texts_are_wrapped_in_special_tokens_and_counted() -> None:
    engine, _ = make()
    reply = run(engine, {"texts": ["aaa bb", "c"]})
    assert reply["prompt_tokens"] == 4 + 3
    got = vectors(reply)
    assert got.shape == (2, DIM)
    assert got[0, 3] == 1.0 and got[1, 1] == 1.0
    engine.close()


def test_too_long_input_names_the_limit_and_the_input() -> None:
    engine, _ = make()
    with pytest.raises(ContextLengthExceeded) as err:
        run(engine, {"texts": ["a", "a b c d e f g"]})
    assert err.value.param == "input[1]"
    assert "9 tokens" in err.value.message and "at most 8" in err.value.message
    with pytest.raises(ContextLengthExceeded) as err:
        run(engine, {"texts": ["a b c d e f g"], "single": True})
    assert err.value.param == "input"
    engine.close()


def test_truncation_keeps_the_special_tokens() -> None:
    engine, _ = make()
    reply = run(engine, {"texts": ["aaaaa b c d e f g h i"], "truncate": True})
    assert reply["prompt_tokens"] == 8
    assert vectors(reply)[0, 5] == 1.0  # the first content token survived
    engine.close()


def test_token_ids_are_checked_against_the_vocabulary() -> None:
    engine, _ = make()
    reply = run(engine, {"token_ids": [[5, 6], [7]]})
    assert reply["prompt_tokens"] == 7
    with pytest.raises(InvalidRequest) as err:
        run(engine, {"token_ids": [[5], [100]]})
    assert err.value.param == "input[1]"
    with pytest.raises(InvalidRequest):
        run(engine, {"token_ids": [[-1]], "single": True})
    engine.close()


def test_dimensions_refused_unless_native_or_matryoshka() -> None:
    engine, _ = make()
    assert vectors(run(engine, {"texts": ["a"], "dimensions": DIM})).shape == (1, DIM)
    with pytest.raises(InvalidRequest) as err:
        run(engine, {"texts": ["a"], "dimensions": 4})
    assert err.value.param == "dimensions"
    engine.close()
    engine, _ = make(matryoshka=True)
    got = vectors(run(engine, {"texts": ["aa", "a"], "dimensions": 4}))
    assert got.shape == (2, 4)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0)
    with pytest.raises(InvalidRequest):
        run(engine, {"texts": ["a"], "dimensions": DIM + 1})
    engine.close()


def test_shorten_renormalises() -> None:
    v = np.array([[3.0, 4.0, 12.0]], np.float32) / 13
    assert np.allclose(shorten(v, 2), [[0.6, 0.8]])


def test_concurrent_requests_share_sorted_batches_and_keep_their_order() -> None:
    engine, backend = make(batch_size=4, max_batch=16, window_s=0.1)
    texts = [" ".join(["a" * (i % 7 + 1)] * (i % 5 + 1)) for i in range(12)]
    requests = [texts[i:i + 3] for i in range(0, 12, 3)]
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda t: run(engine, {"texts": t}), requests))
    for chunk, reply in zip(requests, replies, strict=True):
        got = vectors(reply)
        for text, row in zip(chunk, got, strict=True):
            assert row[len(text.split()[0]) % DIM] == 1.0
    assert all(len(call) <= 4 for call in backend.calls)
    assert all(call == sorted(call) for call in backend.calls)
    assert len(backend.calls) < 12  # sequences of different requests ran together
    engine.close()


def test_empty_request_payloads_are_handled() -> None:
    engine, _ = make()
    assert run(engine, {"texts": []})["prompt_tokens"] == 0
    req = EMBED.decode_request(msgspec.msgpack.encode({"texts": ["x"]}))
    assert req.truncate is False and req.single is False
    engine.close()
