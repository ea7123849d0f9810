"""Model lifecycle through real workers: idle TTL unload and reload on use, LRU eviction under
a memory budget, and loads that fail saying why."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
import pytest

from pocketserve.config import ModelSpec
from pocketserve.errors import ModelNotReady
from pocketserve.serving.registry import ModelRegistry
from tests.serving.helpers import eventually, fake, reply, serving, settings, words


def _in_state(registry: ModelRegistry, model: str, state: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return registry.model(model).state() == state
    return check


def _count(registry: ModelRegistry, name: str, **labels: str) -> float | None:
    return registry.metrics.registry.get_sample_value(name, labels)


def test_idle_ttl_unloads_and_the_next_request_reloads(tmp_path: Path) -> None:
    config = settings(tmp_path, fake("f", token_delay_s=0.05),
                      model_policies={"f": {"ttl_s": 0.3}})

    async def body() -> None:
        async with serving(config) as registry:
            pid = registry.worker("f").pid
            assert pid is not None and registry.model("f").state() == "ready"
            # Busy for longer than its TTL: a request in flight keeps it loaded.
            assert await reply(registry, "f", words(15)) == words(15)
            assert registry.worker("f").pid == pid
            assert await eventually(_in_state(registry, "f", "unloaded"), 3.0)
            assert not psutil.pid_exists(pid)  # the process is gone, its memory with it
            assert registry.model("f").memory_bytes() == 0
            assert await reply(registry, "f", "hello again") == "hello again"  # loads on use
            assert registry.worker("f").pid not in (None, pid)
            assert _count(registry, "pocketserve_model_loads_total", model="f",
                          outcome="ok") == 2
            assert _count(registry, "pocketserve_model_unloads_total", model="f",
                          reason="idle") == 1

    asyncio.run(body())


def test_memory_budget_evicts_the_least_recently_used(tmp_path: Path) -> None:
    # Each fake really holds 100 MB (about 140 MB resident with Python); before its first
    # load one counts as its policy's 150 MB. Two fit in 330 MB, three do not.
    specs = [fake(name, hold_mb=100) for name in ("pinned", "older", "newer")]
    lazy = {"preload": False, "memory_mb": 150}
    config = settings(tmp_path, *specs, fake("huge"), memory_budget_mb=330, model_policies={
        "pinned": {**lazy, "pin": True}, "older": lazy, "newer": lazy,
        "huge": {"preload": False, "memory_mb": 5000}})

    async def body() -> None:
        async with serving(config) as registry:
            def states() -> dict[str, str]:
                return {m: registry.model(m).state() for m in ("pinned", "older", "newer")}

            assert set(states().values()) == {"unloaded"}
            for name in ("pinned", "older"):
                assert await reply(registry, name, "hi") == "hi"
            assert states() == {"pinned": "ready", "older": "ready", "newer": "unloaded"}
            assert await reply(registry, "newer", "hi") == "hi"  # no room for 3: LRU goes
            assert states() == {"pinned": "ready", "older": "unloaded", "newer": "ready"}
            assert await reply(registry, "older", "hi") == "hi"  # the pinned one stays
            assert states() == {"pinned": "ready", "older": "ready", "newer": "unloaded"}
            assert _count(registry, "pocketserve_model_unloads_total", model="older",
                          reason="evicted") == 1

            with pytest.raises(ModelNotReady, match="memory budget"):
                await reply(registry, "huge", "hi")
            assert registry.model("huge").state() == "failed"
            assert states() == {"pinned": "ready", "older": "ready", "newer": "unloaded"}

    asyncio.run(body())


@pytest.mark.parametrize(("spec", "cause"), [
    (fake("broken", fail_load=True), "fail_load is set"),
    (fake("broken", token_delay=0.1), "unknown option(s) token_delay"),
    (ModelSpec(id="broken", capability="chat", backend="nope", source="none:"),
     "entry point named 'nope' in the group 'pocketserve.backends'"),
    (ModelSpec(id="broken", capability="chat", backend="fake", source="/no/such/file"),
     "/no/such/file does not exist"),
])
def test_a_failed_load_says_why_and_the_others_serve(tmp_path: Path, spec: ModelSpec,
                                                     cause: str) -> None:
    async def body() -> None:
        async with serving(settings(tmp_path, spec, fake("good"))) as registry:
            status = next(s for s in registry.statuses() if s.id == "broken")
            assert status.state == "failed" and cause in (status.error or "")
            with pytest.raises(ModelNotReady) as refused:
                await reply(registry, "broken", "hi")
            assert cause in refused.value.message and refused.value.status == 503
            with pytest.raises(ModelNotReady, match="not available"):
                await registry.load("broken")  # an admin retry fails the same way
            assert await reply(registry, "good", "fine here") == "fine here"

    asyncio.run(body())
