"""Fake models behind a real `ModelRegistry`: real worker processes, admission, deadlines and
lifecycle, with no model weights, so each test runs in about a second.

Tests are plain sync functions that run their body with `asyncio.run`, the way the server's
own event loop would run it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from pocketserve.catalog import Catalog
from pocketserve.config import ModelSpec, Settings
from pocketserve.ops.chat import CHAT, ChatMessage, ChatRequest, SamplingParams, TextDelta
from pocketserve.serving.context import RequestContext, request_scope
from pocketserve.serving.registry import ModelRegistry


def fake(model_id: str, **options: Any) -> ModelSpec:
    return ModelSpec(id=model_id, capability="chat", backend="fake", source="none:",
                     options=options)


def settings(tmp_path: Path, *specs: ModelSpec, **fields: Any) -> Settings:
    """Settings serving `specs` (and nothing else), one thread per worker."""
    fields.setdefault("models", [s.id for s in specs])
    return Settings(extra_models=list(specs), threads=1, cache_dir=tmp_path / "cache",
                    worker_restart_max_backoff_s=0.5, **fields)


@asynccontextmanager
async def serving(config: Settings) -> AsyncIterator[ModelRegistry]:
    """A started registry (preloaded models ready), stopped afterwards."""
    registry = ModelRegistry(config, Catalog(config.extra_models))
    await registry.start()
    try:
        yield registry
    finally:
        await registry.stop()


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def chat(text: str, max_tokens: int | None = None) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage(role="user", content=text)],
                       sampling=SamplingParams(max_tokens=max_tokens))


def text_of(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def reply(registry: ModelRegistry, model: str, text: str) -> str:
    """The whole reply of one chat request."""
    return text_of([e async for e in registry.stream(model, CHAT, chat(text))])


@contextmanager
def deadline_in(seconds: float, request_id: str = "test") -> Iterator[RequestContext]:
    """The current request, with a deadline `seconds` from now (what the API's middleware
    sets from request_timeout_s and X-Request-Timeout)."""
    with request_scope(RequestContext(request_id, deadline=time.monotonic() + seconds)) as ctx:
        yield ctx


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> bool:
    """Poll `check` until it holds; False if it never did within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.02)
    return False


async def worker_active(registry: ModelRegistry, model: str) -> int:
    """Requests the worker process itself says it is running."""
    return (await registry.worker(model).stats()).active


def worker_idle(registry: ModelRegistry, model: str) -> Callable[[], Awaitable[bool]]:
    """A check for `eventually`: the worker process runs no request of `model`."""
    async def check() -> bool:
        return await worker_active(registry, model) == 0
    return check
