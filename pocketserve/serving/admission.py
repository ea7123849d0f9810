"""Per-model admission: a bounded number of requests in flight and a bounded FIFO queue.

A request that finds every slot taken waits in line; one that finds the line full is refused at
once with QueueFull (429 + Retry-After) instead of piling up memory and latency. A request that
reaches its deadline while waiting leaves the line with DeadlineExceeded (504). Plain asyncio,
no model: tested on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pocketserve.errors import DeadlineExceeded, QueueFull


@dataclass
class Admitted:
    """What a request learns when it gets its slot."""

    queue_wait_s: float
    running: int  # requests in flight, this one included: the batch the model now serves


class Admission:
    def __init__(self, name: str, max_in_flight: int, max_queue: int):
        self.name = name
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._service_s = 1.0  # moving average of how long a slot is held, for Retry-After

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def retry_after_s(self) -> float:
        """A fair guess of when a slot frees up: the queue ahead, served `max_in_flight` at
        a time, at the recent average service time."""
        rounds = (self.queued + 1) / max(1, self.max_in_flight)
        return max(1.0, rounds * self._service_s)

    @asynccontextmanager
    async def slot(self, deadline: float | None = None) -> AsyncIterator[Admitted]:
        """Hold one in-flight slot for the body of the `async with`."""
        waited = await self._acquire(deadline)
        started = time.monotonic()
        try:
            yield Admitted(queue_wait_s=waited, running=self.in_flight)
        finally:
            held = time.monotonic() - started
            self._service_s = 0.8 * self._service_s + 0.2 * held
            self._release()

    async def _acquire(self, deadline: float | None) -> float:
        if self.in_flight < self.max_in_flight and not self._waiters:
            self.in_flight += 1
            return 0.0
        if len(self._waiters) >= self.max_queue:
            raise QueueFull(
                f"The model {self.name!r} is busy: {self.in_flight} requests running and "
                f"{len(self._waiters)} waiting. Retry later.",
                retry_after_s=self.retry_after_s())
        began = time.monotonic()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        timeout = None if deadline is None else max(0.0, deadline - began)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except BaseException as exc:
            self._leave(waiter)
            if isinstance(exc, TimeoutError):
                raise DeadlineExceeded(
                    f"The request waited {time.monotonic() - began:.1f}s in the queue of "
                    f"model {self.name!r} and reached its deadline.") from None
            raise
        return time.monotonic() - began

    def _leave(self, waiter: asyncio.Future[None]) -> None:
        """Give up a place in line; a slot handed over meanwhile goes to the next one."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            waiter.cancel()
        elif waiter.done() and not waiter.cancelled():
            self._release()  # the slot was handed to us as we left: pass it on

    def _release(self) -> None:
        """Hand the slot straight to the first in line (FIFO), or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_flight -= 1
