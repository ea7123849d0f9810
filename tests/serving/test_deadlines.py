"""Deadlines (request_timeout_s, X-Request-Timeout): a request past its deadline fails with
DeadlineExceeded (504) whether it was waiting in line, waiting for its model to load or
running, and the worker stops working on it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from pocketserve.errors import DeadlineExceeded
from pocketserve.ops.chat import CHAT, TextDelta
from tests.serving.helpers import (
    chat,
    deadline_in,
    eventually,
    fake,
    reply,
    serving,
    settings,
    words,
    worker_idle,
)


def test_deadline_while_queued(tmp_path: Path) -> None:
    config = settings(tmp_path, fake("f", token_delay_s=0.05), max_in_flight=1)

    async def body() -> None:
        async with serving(config) as registry:
            running = asyncio.create_task(reply(registry, "f", words(20)))  # about 1 s
            await asyncio.sleep(0.1)
            began = time.monotonic()
            with deadline_in(0.3), pytest.raises(DeadlineExceeded, match="in the queue"):
                async for _ in registry.stream("f", CHAT, chat("late")):
                    pass
            assert 0.25 < time.monotonic() - began < 1.5
            assert registry.model("f").admission.queued == 0  # it left the line
            assert await running == words(20)  # the one ahead was not disturbed
            # Its 20 tokens and usage are all the worker ever sent: the late one never ran.
            assert (await registry.worker("f").stats()).events == 21

    asyncio.run(body())


def test_deadline_while_running_stops_the_worker(tmp_path: Path) -> None:
    config = settings(tmp_path, fake("f", token_delay_s=0.05))

    async def body() -> None:
        async with serving(config) as registry:
            got: list[str] = []
            began = time.monotonic()
            with deadline_in(0.5), pytest.raises(DeadlineExceeded, match="past its deadline"):
                async for event in registry.stream("f", CHAT, chat(words(100))):  # about 5 s
                    if isinstance(event, TextDelta):
                        got.append(event.text)
            assert time.monotonic() - began < 1.5
            assert 2 <= len(got) < 20  # it was streaming when the deadline came
            assert await eventually(worker_idle(registry, "f"), 2.0)
            events = (await registry.worker("f").stats()).events
            await asyncio.sleep(0.3)
            assert (await registry.worker("f").stats()).events == events  # nothing more sent
            rejected = registry.metrics.registry.get_sample_value(
                "pocketserve_rejected_total", {"model": "f", "reason": "deadline"})
            assert rejected == 1

    asyncio.run(body())


def test_deadline_while_loading_leaves_the_load_running(tmp_path: Path) -> None:
    config = settings(tmp_path, fake("f", load_delay_s=1.0),
                      model_policies={"f": {"preload": False}})

    async def body() -> None:
        async with serving(config) as registry:
            assert registry.model("f").state() == "unloaded"
            with deadline_in(0.3), pytest.raises(DeadlineExceeded, match="loading"):
                await reply(registry, "f", "hello")
            # The load is shared by every request waiting for it, so it goes on.
            assert registry.model("f").state() == "loading"

            async def ready() -> bool:
                return registry.model("f").state() == "ready"

            assert await eventually(ready, 5.0)
            assert await reply(registry, "f", "hello there") == "hello there"

    asyncio.run(body())
