"""Loading and unloading models: one load at a time per model, and the memory budget. (The
worker warms its engine up before it says it is ready.)

A load runs as its own task, so a request that gives up waiting (deadline, disconnect) does not
abort a load that other requests are waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from pocketserve.errors import DeadlineExceeded, ModelNotReady, PocketserveError
from pocketserve.ops.wire import WorkerStats
from pocketserve.serving.lifecycle import MB, ServedModel, plan_eviction
from pocketserve.serving.metrics import Metrics
from pocketserve.serving.worker import WorkerState

log = logging.getLogger("pocketserve.registry")


class Loader:
    def __init__(self, metrics: Metrics, budget_bytes: int | None,
                 models: Callable[[], list[ServedModel]]):
        self.metrics = metrics
        self.budget_bytes = budget_bytes
        self._models = models
        self._budget_lock = asyncio.Lock()  # one budget decision (and its load) at a time

    async def ensure_loaded(self, model: ServedModel, deadline: float | None,
                            retry_failed: bool = False) -> None:
        """Return once the model is ready; load it first if it is not (sharing a load
        already under way). ModelNotReady says why it cannot be."""
        if model.ready:
            return
        task = model.load_task
        if task is None or task.done():
            state = model.worker.state
            if state in (WorkerState.RESTARTING, WorkerState.LOADING):
                raise ModelNotReady(f"The model {model.id!r} is {state.value}; retry shortly.")
            failed = state == WorkerState.FAILED or model.load_error is not None
            if failed and not retry_failed:
                raise ModelNotReady(_failed_message(model))
            task = asyncio.create_task(self._load(model), name=f"load-{model.id}")
            model.load_task = task
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            raise DeadlineExceeded(
                f"The request reached its deadline while model {model.id!r} was loading.") from None
        if not model.ready:
            raise ModelNotReady(_failed_message(model))

    async def load(self, model: ServedModel, quiet: bool = False) -> None:
        """Load at start-up or by an admin; failures are recorded on the model."""
        try:
            await self.ensure_loaded(model, None, retry_failed=True)
        except PocketserveError as exc:
            if not quiet:
                raise
            log.error("model %s was not loaded: %s", model.id, exc.message)

    async def _load(self, model: ServedModel) -> None:
        async with self._budget_lock:
            model.load_error = None
            if self.budget_bytes is not None and not await self._make_room(model,
                                                                            self.budget_bytes):
                return
            began = time.monotonic()
            await model.worker.start()
        if not model.ready:
            self.metrics.loads.labels(model.id, "failed").inc()
            return
        elapsed = time.monotonic() - began
        self.metrics.loads.labels(model.id, "ok").inc()
        self.metrics.load_time.labels(model.id).observe(elapsed)
        model.memory_bytes()
        model.touch()
        log.info("model %s loaded and warmed up in %.2fs (%.0f MB)", model.id, elapsed,
                 model.last_rss / MB)

    async def _make_room(self, model: ServedModel, budget: int) -> bool:
        """Unload LRU idle unpinned models until `model` fits; False (and why) if it cannot."""
        victims = plan_eviction(model, self._models(), budget)
        if victims is None:
            model.load_error = (
                f"Loading model {model.id!r} needs about {model.estimate_bytes() / MB:.0f} MB, "
                f"more than the memory budget of {budget / MB:.0f} MB leaves free even after "
                "unloading every idle, unpinned model. Raise memory_budget_mb, or unload or "
                "unpin another model.")
            self.metrics.loads.labels(model.id, "over_budget").inc()
            log.error("%s", model.load_error)
            return False
        for victim in victims:
            log.info("unloading %s (least recently used) to make room for %s",
                     victim.id, model.id)
            await self.unload(victim, "evicted")
        return True

    async def unload(self, model: ServedModel, reason: str) -> None:
        """Stop the model's worker process; its memory goes back to the system."""
        if model.load_task is not None and not model.load_task.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(model.load_task)
        if not model.loaded:
            return
        model.memory_bytes()
        await model.worker.stop()
        model.stats = WorkerStats()
        self.metrics.unloads.labels(model.id, reason).inc()
        log.info("model %s unloaded (%s)", model.id, reason)


def _failed_message(model: ServedModel) -> str:
    cause = model.load_error or model.worker.error or f"state: {model.worker.state.value}"
    return f"The model {model.id!r} is not available: {cause}"
