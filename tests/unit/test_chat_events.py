"""Text events cross from the worker to the server as plain dicts and come back unchanged."""

from __future__ import annotations

from dataclasses import asdict

import msgpack
import pytest

from pocketserve.engines.chat import (
    Event,
    TextDelta,
    TokenLogprob,
    TopLogprob,
    Usage,
    event_from_wire,
    event_to_wire,
)

EVENTS: list[Event] = [
    TextDelta(index=0, text="Hello"),
    TextDelta(index=2, text="", finish_reason="length"),
    TextDelta(index=1, text=" world", logprobs=[TokenLogprob(
        token=" world", logprob=-0.25, bytes=[32, 119], top=[
            TopLogprob(token=" world", logprob=-0.25, bytes=None),
            TopLogprob(token=" there", logprob=-1.5, bytes=[32, 116])])]),
    Usage(prompt_tokens=12, completion_tokens=7, cached_tokens=3),
]


@pytest.mark.parametrize("event", EVENTS)
def test_round_trip_through_msgpack(event: Event) -> None:
    wire = event_to_wire(event)
    assert wire == asdict(event)  # the same dict the generic conversion gives
    assert event_from_wire(msgpack.unpackb(msgpack.packb(wire))) == event
