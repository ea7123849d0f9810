from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pocketserve.engines.batching import Batcher, Cancelled


def test_concurrent_items_share_batches_and_keep_order() -> None:
    sizes: list[int] = []

    def run(items: list[int]) -> list[int]:
        sizes.append(len(items))
        time.sleep(0.05)
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(run, max_batch=8, window_s=0.05)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(batcher.submit, range(16)))
    batcher.close()
    assert results == [i * 10 for i in range(16)]
    assert max(sizes) > 1 and max(sizes) <= 8 and sum(sizes) == 16


def test_full_batch_runs_before_window() -> None:
    batcher: Batcher[int, int] = Batcher(lambda xs: xs, max_batch=2, window_s=5.0)
    start = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(batcher.submit, [1, 2])) == [1, 2]
    assert time.monotonic() - start < 2.0
    batcher.close()


def test_errors_reach_every_caller() -> None:
    def run(items: list[int]) -> list[int]:
        raise ValueError("boom")

    batcher: Batcher[int, int] = Batcher(run, max_batch=4, window_s=0.01)
    with pytest.raises(ValueError, match="boom"):
        batcher.submit(1)
    batcher.close()


def test_cancelled_items_are_dropped() -> None:
    seen: list[list[int]] = []
    gate = threading.Event()

    def run(items: list[int]) -> list[int]:
        seen.append(items)
        gate.wait(2)
        return items

    batcher: Batcher[int, int] = Batcher(run, max_batch=1, window_s=0)
    cancelled = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(batcher.submit, 1)
        time.sleep(0.1)  # item 1 is running; item 2 waits in the queue
        second = pool.submit(batcher.submit, 2, cancelled)
        time.sleep(0.1)
        cancelled.set()
        gate.set()
        assert first.result() == 1
        with pytest.raises(Cancelled):
            second.result()
    assert seen == [[1]]
    batcher.close()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Batcher(lambda xs: xs, max_batch=0, window_s=0.1)
