"""Which models this server serves, by id or alias, and the worker behind each."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pocketserve.catalog import Catalog
from pocketserve.config import ModelSpec, Settings
from pocketserve.errors import ModelNotFound
from pocketserve.serving.worker import WorkerOptions, WorkerProcess, WorkerState


@dataclass
class ModelStatus:
    id: str
    capability: str
    backend: str
    aliases: list[str]
    state: str
    info: dict[str, Any]
    error: str | None
    pid: int | None
    restarts: int


class ModelRegistry:
    """Owns one WorkerProcess per served model; the API talks only to this."""

    def __init__(self, settings: Settings, catalog: Catalog):
        self._workers: dict[str, WorkerProcess] = {}
        self.started_at = int(time.time())
        threads = settings.threads or os.cpu_count() or 1
        for name in settings.models:
            spec = catalog.find(name)
            options = WorkerOptions(
                threads=int(spec.options.get("threads", threads)),
                start_timeout_s=settings.worker_start_timeout_s,
                max_backoff_s=settings.worker_restart_max_backoff_s,
                log_level=settings.log_level,
            )
            self._workers[spec.id] = WorkerProcess(spec, options)

    async def start(self) -> None:
        """Load every served model in parallel; a failed one is reported, not fatal."""
        await asyncio.gather(*(w.start() for w in self._workers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self._workers.values()))

    def worker(self, name: str) -> WorkerProcess:
        """The worker for a model id or alias; ModelNotFound names the served ones."""
        if name in self._workers:
            return self._workers[name]
        for worker in self._workers.values():
            if name in worker.spec.aliases:
                return worker
        served = ", ".join(sorted(self._workers)) or "none"
        raise ModelNotFound(f"The model {name!r} does not exist. Available models: {served}.")

    def spec(self, name: str) -> ModelSpec:
        return self.worker(name).spec

    def stream(self, name: str, op: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self.worker(name).stream(op, payload)

    async def call(self, name: str, op: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.worker(name).call(op, payload)

    def statuses(self) -> list[ModelStatus]:
        return [
            ModelStatus(
                id=w.spec.id, capability=w.spec.capability, backend=w.spec.backend,
                aliases=list(w.spec.aliases), state=w.state.value, info=dict(w.info),
                error=w.error, pid=w.pid, restarts=w.restarts,
            )
            for w in self._workers.values()
        ]

    def all_ready(self) -> bool:
        return all(w.state == WorkerState.READY for w in self._workers.values())
