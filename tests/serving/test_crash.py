"""A worker that dies mid-request: its requests fail with ModelNotReady (503) instead of
hanging, the model says it is restarting, and a new worker serves again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
import pytest

from pocketserve.errors import ModelNotReady
from pocketserve.ops.chat import CHAT, TextDelta
from pocketserve.serving.registry import ModelRegistry, ModelStatus
from tests.serving.helpers import chat, eventually, fake, reply, serving, settings, words


def test_a_crash_mid_stream_fails_its_requests_then_the_model_serves_again(
        tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(settings(tmp_path, fake("f", token_delay_s=0.05))) as registry:
            old_pid = registry.worker("f").pid
            assert old_pid is not None
            bystander = asyncio.create_task(reply(registry, "f", words(100)))
            await asyncio.sleep(0.1)

            got: list[str] = []
            with pytest.raises(ModelNotReady, match="stopped while serving this request"):
                async for event in registry.stream("f", CHAT, chat("CRASH right now")):
                    if isinstance(event, TextDelta):
                        got.append(event.text)
            assert got == ["CRASH"]  # mid-stream: one token, then the process was gone
            with pytest.raises(ModelNotReady):  # the other request on that worker too
                await bystander

            # Reaping the process takes a moment after its socket closed; then it restarts
            # after a backoff (0.5 s here), during which requests are refused, not held.
            assert await eventually(_in_state(registry, "restarting"), 2.0)

            async def reaped() -> bool:  # the supervisor counts the restart once it reaps
                return _status(registry).restarts == 1 and not psutil.pid_exists(old_pid)
            assert await eventually(reaped, 2.0)
            with pytest.raises(ModelNotReady, match="restarting"):
                await reply(registry, "f", "too soon")
            assert await eventually(_in_state(registry, "ready"), 10.0)
            assert registry.worker("f").pid not in (None, old_pid)
            assert await reply(registry, "f", "back again") == "back again"
            assert _status(registry).restarts == 1

    asyncio.run(body())


def _status(registry: ModelRegistry) -> ModelStatus:
    return next(s for s in registry.statuses() if s.id == "f")


def _in_state(registry: ModelRegistry, state: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return _status(registry).state == state
    return check
