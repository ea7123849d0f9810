"""What every engine offers to the worker loop.

An engine serves a few operations (`pocketserve.ops`): for each, a function that takes the
decoded request, an `emit` for its events and a `Call` (cancellation, and for operations whose
input keeps arriving, that input), and returns when done. It checks `call.cancelled` between
steps so work stops soon after a client goes away. It also names a short real request per
operation worth warming up, which the worker runs once right after loading.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pocketserve.ops.wire import Op

Req = TypeVar("Req")
Ev = TypeVar("Ev")
Emit = Callable[[Any], None]

_END = object()


class Inputs:
    """Input frames of a running operation, in order, as the server sends them.

    Iterating blocks until the next frame; it stops when the server ends the input or the
    call is cancelled (then `cancelled` is set too).
    """

    def __init__(self, cancelled: threading.Event):
        self._queue: queue.Queue[Any] = queue.Queue()
        self._cancelled = cancelled

    def put(self, frame: Any) -> None:
        self._queue.put(frame)

    def end(self) -> None:
        self._queue.put(_END)

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is _END or self._cancelled.is_set():
                return
            yield item

    def waiting(self) -> bool:
        """Whether more frames have already arrived (the handler is behind the client)."""
        return not self._queue.empty()

    def get(self, timeout: float | None = None) -> Any:
        """The next frame, or None once the input ended; queue.Empty after `timeout`."""
        item = self._queue.get(timeout=timeout)
        return None if item is _END or self._cancelled.is_set() else item


@dataclass
class Call:
    """One running operation's controls."""

    cancelled: threading.Event = field(default_factory=threading.Event)
    inputs: Inputs | None = None  # set for operations that stream input

    def cancel(self) -> None:
        self.cancelled.set()
        if self.inputs is not None:
            self.inputs.end()  # wake a handler waiting for input


Handler = Callable[[Req, Emit, Call], None]
"""What runs one operation: (its request, emit one event, the call's controls)."""


@dataclass(frozen=True)
class Served(Generic[Req, Ev]):
    """An operation bound to the function that runs it."""

    op: Op[Req, Ev]
    run: Handler[Req]


def serve(op: Op[Req, Ev], run: Handler[Req]) -> Served[Req, Ev]:
    return Served(op, run)


@dataclass(frozen=True)
class Warmup(Generic[Req]):
    op: Op[Req, Any]
    request: Req


class Engine(Protocol):
    def info(self) -> dict[str, Any]:
        """Facts about the loaded model that the server shows (context length, ...)."""
        ...

    def operations(self) -> Sequence[Served[Any, Any]]:
        """The operations this engine runs."""
        ...

    def warmups(self) -> Sequence[Warmup[Any]]:
        """Short real requests run once after loading, so the first user request does not
        pay for cold caches and lazy allocations."""
        ...

    def close(self) -> None:
        """Free the model's memory."""
        ...
