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


class Done:
    """Like CTranslate2's asynchronous result: `result()` gives the row's answer."""

    def __init__(self, value: Any):
        self.value = value

    def result(self) -> Any:
        return self.value


class FakeWhisper:
    """Answers each batch row with (row's feature value, its prompt), and records batches."""

    is_multilingual = True

    def __init__(self) -> None:
        self.batches: list[int] = []

    def generate(self, features: Any, prompts: list[list[int]], asynchronous: bool = False,
                 **kwargs: Any) -> list[Any]:
        rows = np.asarray(features)
        self.batches.append(len(prompts))
        out = [(float(rows[i, 0, 0]), prompts[i], kwargs["beam_size"])
               for i in range(len(prompts))]
        return [Done(o) for o in out] if asynchronous else out


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
    decoder = _BatchedDecoder(model, max_batch=4, window_s=0.5)
    start = threading.Barrier(4)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda v: _request(decoder, v, 5, start), [1.0, 2.0, 3.0, 4.0]))
    decoder.close()
    assert results == [(v, [int(v)], 5) for v in (1.0, 2.0, 3.0, 4.0)]
    assert model.batches == [4]
    assert decoder.batch_sizes == [4]


def test_calls_with_different_options_are_not_merged() -> None:
    model = FakeWhisper()
    decoder = _BatchedDecoder(model, max_batch=4, window_s=0.5)
    start = threading.Barrier(4)
    beams = {1.0: 5, 2.0: 1, 3.0: 5, 4.0: 1}
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda v: _request(decoder, v, beams[v], start), list(beams)))
    decoder.close()
    assert results == [(v, [int(v)], beams[v]) for v in beams]
    assert sorted(model.batches) == [2, 2]  # one batched call per set of options


def test_a_lone_request_does_not_wait_for_a_batch() -> None:
    model = FakeWhisper()
    decoder = _BatchedDecoder(model, max_batch=4, window_s=5.0)
    decoder.begin(threading.Event())
    began = time.monotonic()
    assert decoder.generate(_features(7.0), [[7]], beam_size=5) == [(7.0, [7], 5)]
    decoder.end()
    decoder.close()
    assert time.monotonic() - began < 1.0
    assert decoder.batch_sizes == []  # went straight to the model


def test_a_cancelled_request_leaves_the_queue() -> None:
    model = FakeWhisper()
    decoder = _BatchedDecoder(model, max_batch=4, window_s=0.5)
    decoder.begin(threading.Event())  # another request, still encoding: worth waiting for
    leaving = threading.Event()
    outcome: list[Any] = []

    def request() -> None:
        decoder.begin(leaving)
        try:
            outcome.append(decoder.generate(_features(2.0), [[2]], beam_size=5))
        except Cancelled:
            outcome.append("cancelled")
        finally:
            decoder.end()

    waiting = threading.Thread(target=request)
    waiting.start()
    time.sleep(0.1)  # the call waits in the batch window
    leaving.set()
    waiting.join()
    decoder.end()
    decoder.close()
    assert outcome == ["cancelled"]
    assert model.batches == []  # the cancelled call never reached the model
    assert decoder._queued == 0


def test_a_cancelled_request_does_not_start_decoding() -> None:
    decoder = _BatchedDecoder(FakeWhisper(), max_batch=4, window_s=0.0)
    cancelled = threading.Event()
    cancelled.set()
    decoder.begin(cancelled)
    with pytest.raises(Cancelled):
        decoder.generate(_features(2.0), [[2]], beam_size=5)
    decoder.end()
    decoder.close()
