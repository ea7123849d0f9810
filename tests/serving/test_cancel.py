"""Cancel: a request whose reader goes away (stream closed early, task cancelled by a client
disconnect) stops in the worker and gives its slot back; one cancelled while waiting in line
never reaches the worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pocketserve.ops.chat import CHAT, TextDelta
from pocketserve.serving.registry import ModelRegistry
from tests.serving.helpers import (
    chat,
    eventually,
    fake,
    reply,
    serving,
    settings,
    words,
    worker_active,
    worker_idle,
)

SLOW = fake("f", token_delay_s=0.05)


async def _assert_stopped(registry: ModelRegistry) -> None:
    """The worker runs nothing, sends nothing more, and the slot is free."""
    assert await eventually(worker_idle(registry, "f"), 2.0)
    events = (await registry.worker("f").stats()).events
    await asyncio.sleep(0.3)  # six tokens' time
    assert (await registry.worker("f").stats()).events == events
    assert registry.model("f").admission.in_flight == 0
    assert await reply(registry, "f", "still here") == "still here"


def test_closing_a_stream_early_stops_it_in_the_worker(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(settings(tmp_path, SLOW)) as registry:
            stream = registry.stream("f", CHAT, chat(words(100)))
            got = [await anext(stream), await anext(stream)]
            assert [e.text for e in got if isinstance(e, TextDelta)] == ["w0", " w1"]
            assert await worker_active(registry, "f") == 1
            await stream.aclose()  # type: ignore[attr-defined]  # a generator
            await _assert_stopped(registry)

    asyncio.run(body())


def test_a_cancelled_task_stops_its_request(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(settings(tmp_path, SLOW)) as registry:
            task = asyncio.create_task(reply(registry, "f", words(100)))
            assert await eventually(lambda: _running(registry))
            task.cancel()  # what the API does when the client disconnects
            with pytest.raises(asyncio.CancelledError):
                await task
            await _assert_stopped(registry)
            cancelled = registry.metrics.registry.get_sample_value(
                "pocketserve_rejected_total", {"model": "f", "reason": "cancelled"})
            assert cancelled == 1

    asyncio.run(body())


def test_cancelled_while_queued_it_never_reaches_the_worker(tmp_path: Path) -> None:
    config = settings(tmp_path, SLOW, max_in_flight=1)

    async def body() -> None:
        async with serving(config) as registry:
            first = asyncio.create_task(reply(registry, "f", words(6)))
            await asyncio.sleep(0.05)
            queued = asyncio.create_task(reply(registry, "f", words(50)))
            await asyncio.sleep(0.05)
            assert registry.model("f").admission.queued == 1
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            assert registry.model("f").admission.queued == 0
            third = asyncio.create_task(reply(registry, "f", words(3)))
            assert (await first, await third) == (words(6), words(3))
            # 6 + 3 tokens and two usages: the cancelled one sent nothing.
            assert (await registry.worker("f").stats()).events == 11

    asyncio.run(body())


async def _running(registry: ModelRegistry) -> bool:
    return await worker_active(registry, "f") == 1
