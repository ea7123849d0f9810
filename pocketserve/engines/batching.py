"""Dynamic batching for engines whose model runs faster on a batch (embeddings, speech).

Requests arrive on many worker threads; `Batcher.submit` blocks its caller until the item's
result is ready. A collector runs a batch as soon as it is full, or when its oldest item has
waited `window_s` (LitServe's rule). Items whose request was cancelled while queued are
dropped before the batch runs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Cancelled(Exception):
    """The request was cancelled before its item ran."""


@dataclass
class _Entry(Generic[T, R]):
    item: T
    future: Future[R]
    cancelled: threading.Event | None


class Batcher(Generic[T, R]):
    def __init__(self, run: Callable[[list[T]], Sequence[R]], max_batch: int, window_s: float,
                 concurrency: int = 1, name: str = "batcher"):
        """`run` maps a batch to results in the same order; `concurrency` batches may run
        at once (for libraries with several inter-op workers)."""
        if max_batch < 1 or window_s < 0 or concurrency < 1:
            raise ValueError("max_batch and concurrency must be >= 1, window_s >= 0")
        self._run = run
        self._max_batch = max_batch
        self._window_s = window_s
        self._queue: queue.Queue[_Entry[T, R] | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._collect, name=f"{name}-{i}", daemon=True)
            for i in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, item: T, cancelled: threading.Event | None = None) -> R:
        return self.enqueue(item, cancelled).result()

    def enqueue(self, item: T, cancelled: threading.Event | None = None) -> Future[R]:
        """Queue one item without waiting: for items that finish before their batch does
        (a short answer generated beside a long one signals its own end)."""
        future: Future[R] = Future()
        self._queue.put(_Entry(item, future, cancelled))
        return future

    def submit_many(self, items: Sequence[T], cancelled: threading.Event | None = None) -> list[R]:
        """Queue all items at once (so they can share batches), then wait for all of them."""
        futures: list[Future[R]] = []
        for item in items:
            future: Future[R] = Future()
            self._queue.put(_Entry(item, future, cancelled))
            futures.append(future)
        return [f.result() for f in futures]

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=5)

    def _collect(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self._window_s
            while len(batch) < self._max_batch:
                remaining = deadline - time.monotonic()
                try:
                    entry = self._queue.get(timeout=max(remaining, 0)) if remaining > 0 \
                        else self._queue.get_nowait()
                except queue.Empty:
                    break
                if entry is None:
                    self._queue.put(None)  # leave the stop signal for this thread's next turn
                    break
                batch.append(entry)
            self._execute(batch)

    def _execute(self, batch: list[_Entry[T, R]]) -> None:
        live = []
        for entry in batch:
            if entry.cancelled is not None and entry.cancelled.is_set():
                entry.future.set_exception(Cancelled())
            else:
                live.append(entry)
        if not live:
            return
        try:
            results = self._run([e.item for e in live])
        except BaseException as exc:
            for entry in live:
                entry.future.set_exception(exc)
            return
        if len(results) != len(live):
            error = RuntimeError(f"batch of {len(live)} gave {len(results)} results")
            for entry in live:
                entry.future.set_exception(error)
            return
        for entry, result in zip(live, results, strict=True):
            entry.future.set_result(result)


def by_length(items: Sequence[T], size: int, length: Callable[[T], int],
              run: Callable[[list[T]], Iterable[R]]) -> list[R]:
    """Run `items` through `run` in chunks of `size`, shortest first (so little padding is
    wasted), and hand the results back in the items' order."""
    order = sorted(range(len(items)), key=lambda i: length(items[i]))
    out: list[R | None] = [None] * len(items)
    for start in range(0, len(order), size):
        chunk = order[start:start + size]
        for i, result in zip(chunk, run([items[i] for i in chunk]), strict=True):
            out[i] = result
    return out  # type: ignore[return-value]  # every slot was filled
