"""Admission through real workers: at most max_in_flight requests reach the worker, the rest
wait in a FIFO line, and past max_queue a request is refused at once (429)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from pocketserve.errors import QueueFull
from pocketserve.ops.chat import CHAT, TextDelta
from pocketserve.serving.registry import ModelRegistry
from tests.serving.helpers import chat, fake, serving, settings, worker_active


async def _timeline(registry: ModelRegistry, name: str, log: list[tuple[str, str]],
                    length: int = 5) -> str:
    """Run one request whose reply starts with `name`; log its first token and its end."""
    parts = []
    async for event in registry.stream("f", CHAT, chat(f"{name}" + " x" * (length - 1))):
        if isinstance(event, TextDelta):
            if not parts:
                log.append(("start", name))
            parts.append(event.text)
    log.append(("end", name))
    return "".join(parts)


def _most_at_once(log: list[tuple[str, str]]) -> int:
    running = most = 0
    for kind, _ in log:
        running += 1 if kind == "start" else -1
        most = max(most, running)
    return most


def test_in_flight_bound_fifo_line_and_429_past_it(tmp_path: Path) -> None:
    config = settings(tmp_path, fake("f", token_delay_s=0.1), max_in_flight=2, max_queue=2)

    async def body() -> None:
        async with serving(config) as registry:
            log: list[tuple[str, str]] = []
            # a ends well before b, so the first slot to free up is a's, at about 0.3 s.
            lengths = {"a": 3, "b": 8, "c": 3, "d": 3}
            tasks = [asyncio.create_task(_timeline(registry, n, log, lengths[n]))
                     for n in "abcd"]
            await asyncio.sleep(0.1)  # a and b run, c and d wait
            admission = registry.model("f").admission
            assert (admission.in_flight, admission.queued) == (2, 2)
            assert await worker_active(registry, "f") == 2  # the worker sees only two

            began = time.monotonic()
            with pytest.raises(QueueFull) as refused:
                async for _ in registry.stream("f", CHAT, chat("e")):
                    pass
            assert time.monotonic() - began < 0.1  # refused at once, not after waiting
            assert refused.value.status == 429 and "Retry-After" in refused.value.headers()
            assert "2 requests running and 2 waiting" in refused.value.message

            replies = await asyncio.gather(*tasks)
            assert replies == [n + " x" * (lengths[n] - 1) for n in "abcd"]
            starts = [name for kind, name in log if kind == "start"]
            # First come, first served: c, in line before d, got the first free slot.
            assert set(starts[:2]) == {"a", "b"} and starts[2:] == ["c", "d"]
            assert log.index(("start", "c")) > log.index(("end", "a"))
            assert _most_at_once(log) == 2  # never more than max_in_flight running
            assert (admission.in_flight, admission.queued) == (0, 0)
            rejected = registry.metrics.registry.get_sample_value(
                "pocketserve_rejected_total", {"model": "f", "reason": "queue_full"})
            assert rejected == 1

    asyncio.run(body())


def test_a_model_policy_overrides_the_server_bounds(tmp_path: Path) -> None:
    config = settings(tmp_path, fake("f", token_delay_s=0.05), max_in_flight=8, max_queue=8,
                      model_policies={"f": {"max_in_flight": 1, "max_queue": 0}})

    async def body() -> None:
        async with serving(config) as registry:
            log: list[tuple[str, str]] = []
            first = asyncio.create_task(_timeline(registry, "a", log))
            await asyncio.sleep(0.1)
            with pytest.raises(QueueFull):  # no line at all: the second is refused
                async for _ in registry.stream("f", CHAT, chat("b")):
                    pass
            assert await first == "a x x x x"  # the default length, 5

    asyncio.run(body())
