"""The decoder batching behind faster-whisper, with a stand-in model: concurrent requests'
`generate` calls become one batched call, and each caller gets its own result back."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

ctranslate2 = pytest.importorskip("ctranslate2")

from pocketserve.backends.faster_whisper import _BatchedDecoder  # noqa: E402
from pocketserve.engines.batching import Cancelled  # noqa: E402


class FakeWhisper:
    """Answers each batch row with (row's feature value, its prompt), and records batches."""

    is_multilingual = True

    def __init__(self, delay_s: float = 0.0):
        self.batches: list[int] = []
        self.delay_s = delay_s

    def generate(self, features: Any, prompts: list[list[int]], **kwargs: Any) -> list[Any]:
        rows = np.asarray(features)
        self.batches.append(len(prompts))
        time.sleep(self.delay_s)
        return [(float(rows[i, 0, 0]), prompts[i], kwargs["beam_size"])
                for i in range(len(prompts))]


def _features(value: float) -> Any:
    return ctranslate2.StorageView.from_array(np.full((1, 4, 3), value, dtype=np.float32))


def _request(decoder: _BatchedDecoder, value: float, beam: int,
             start: threading.Barrier) -> Any:
    decoder.begin(threading.Event())
    try:
        start.wait()
        return decoder.generate(_features(value), [[int(value)]], beam_size=beam)[0]
    finally:
        decoder.end()


def test_concurrent_calls_share_one_batch_and_get_their_own_results() -> None:
    model = FakeWhisper()
    decoder = _BatchedDecoder(model, max_batch=4, window_s=0.5, concurrency=1)
    start = threading.Barrier(4)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda v: _request(decoder, v, 5, start), [1.0, 2.0, 3.0, 4.0]))
    decoder.close()
    assert results == [(v, [int(v)], 5) for v in (1.0, 2.0, 3.0, 4.0)]
    assert model.batches == [4]
    assert decoder.batch_sizes == [4]


def test_calls_with_different_options_are_not_merged() -> None:
    model = FakeWhisper()
    decoder = _BatchedDecoder(model, max_batch=4, window_s=0.5, concurrency=1)
    start = threading.Barrier(4)
    beams = {1.0: 5, 2.0: 1, 3.0: 5, 4.0: 1}
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda v: _request(decoder, v, beams[v], start), list(beams)))
    decoder.close()
    assert results == [(v, [int(v)], beams[v]) for v in beams]
    assert sorted(model.batches) == [2, 2]  # one batched call per set of options


def test_a_lone_request_does_not_wait_for_a_batch() -> None:
    model = FakeWhisper()
    decoder = _BatchedDecoder(model, max_batch=4, window_s=5.0, concurrency=1)
    decoder.begin(threading.Event())
    began = time.monotonic()
    assert decoder.generate(_features(7.0), [[7]], beam_size=5) == [(7.0, [7], 5)]
    decoder.end()
    decoder.close()
    assert time.monotonic() - began < 1.0
    assert decoder.batch_sizes == []  # went straight to the model


def test_a_cancelled_request_leaves_the_queue() -> None:
    model = FakeWhisper(delay_s=0.4)
    decoder = _BatchedDecoder(model, max_batch=1, window_s=0.0, concurrency=1)
    outcomes: dict[str, Any] = {}

    def request(name: str, value: float, cancelled: threading.Event) -> None:
        decoder.begin(cancelled)
        try:
            outcomes[name] = decoder.generate(_features(value), [[1]], beam_size=5)
        except Cancelled:
            outcomes[name] = "cancelled"
        finally:
            decoder.end()

    decoder.begin(threading.Event())  # a third request, still encoding: worth batching for
    leaving = threading.Event()
    first = threading.Thread(target=request, args=("first", 1.0, threading.Event()))
    second = threading.Thread(target=request, args=("second", 2.0, leaving))
    first.start()
    time.sleep(0.1)  # the first batch is running; the second call waits behind it
    second.start()
    time.sleep(0.1)
    leaving.set()
    first.join()
    second.join()
    decoder.end()
    decoder.close()
    assert outcomes == {"first": [(1.0, [1], 5)], "second": "cancelled"}
    assert model.batches == [1]  # the cancelled call never reached the model
    assert decoder._queued == 0


def test_a_cancelled_request_does_not_start_decoding() -> None:
    decoder = _BatchedDecoder(FakeWhisper(), max_batch=4, window_s=0.0, concurrency=1)
    cancelled = threading.Event()
    cancelled.set()
    decoder.begin(cancelled)
    with pytest.raises(Cancelled):
        decoder.generate(_features(2.0), [[2]], beam_size=5)
    decoder.end()
    decoder.close()
