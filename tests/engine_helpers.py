"""Run one operation of an engine in the test's process, as the worker would: the request and
every event cross the same msgspec encoding they cross on the worker socket."""

from __future__ import annotations

import threading
from typing import Any

import msgspec

from pocketserve.engines.base import Call, Engine
from pocketserve.ops.wire import Op, encode


def run_op(engine: Engine, op: Op[Any, Any], payload: dict[str, Any],
           cancelled: threading.Event | None = None,
           emit: Any = None, as_dicts: bool = False) -> list[Any]:
    """The events the engine emitted, decoded; as plain dicts (tag `type`) if `as_dicts`."""
    served = {s.op.name: s for s in engine.operations()}[op.name]
    request = op.decode_request(encode(payload))
    events: list[Any] = []

    def collect(event: Any) -> None:
        decoded = op.decode_event(encode(event))
        if as_dicts:
            decoded = msgspec.to_builtins(decoded, builtin_types=(bytes,))
        events.append(decoded)
        if emit is not None:
            emit(decoded)

    served.run(request, collect, Call(cancelled=cancelled or threading.Event()))
    return events
