"""One served model over time: its worker, its admission line, and when it loads and unloads.

Decisions the registry takes with these: what fits in the memory budget (`plan_eviction`), which
models have been idle past their TTL (`expired`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from pocketserve.catalog import SourceUnavailable, resolve_source
from pocketserve.config import ModelPolicy, ModelSpec
from pocketserve.ops.wire import WorkerStats
from pocketserve.serving.admission import Admission
from pocketserve.serving.cpu import CpuShare
from pocketserve.serving.cpu_scheduler import Member
from pocketserve.serving.worker import WorkerProcess, WorkerState

MB = 1024 * 1024

@dataclass
class ServedModel:
    spec: ModelSpec
    policy: ModelPolicy
    worker: WorkerProcess
    admission: Admission
    ttl_s: float | None
    preload: bool
    last_used: float = field(default_factory=time.monotonic)
    last_rss: int = 0  # measured memory of the last loaded worker, for the next estimate
    load_error: str | None = None  # why the last load was refused before the worker started
    load_task: asyncio.Task[None] | None = None
    stats: WorkerStats = field(default_factory=WorkerStats)
    cpu: CpuShare | None = None  # its part of the CPU plan (threads, priority)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def ready(self) -> bool:
        return self.worker.state == WorkerState.READY

    @property
    def loaded(self) -> bool:
        """Holds memory: a worker is running or starting."""
        return self.worker.state in (WorkerState.READY, WorkerState.LOADING,
                                     WorkerState.RESTARTING)

    @property
    def busy(self) -> bool:
        return self.admission.in_flight > 0 or self.admission.queued > 0

    def cpu_member(self) -> Member | None:
        """What the CPU scheduler sees of this model: its worker's pid only while the worker
        serves (never while it loads, stops or restarts), busy while requests hold slots."""
        if self.cpu is None:
            return None
        worker, admission = self.worker, self.admission

        def pid() -> int | None:
            serving = worker.state == WorkerState.READY and not worker.stopping
            return worker.pid if serving else None

        return Member(self.id, self.cpu.weight, self.cpu.gang, pid,
                      lambda: admission.in_flight > 0)

    def state(self) -> str:
        if self.load_task is not None and not self.load_task.done():
            return "loading"
        if self.load_error is not None and not self.loaded:
            return "failed"
        return self.worker.state.value

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def memory_bytes(self) -> int:
        rss = self.worker.memory_bytes()
        if rss:
            self.last_rss = rss
        return rss

    def estimate_bytes(self) -> int:
        """Memory this model will need: last measured, configured, or 1.5 x its weights."""
        if self.last_rss:
            return self.last_rss
        if self.policy.memory_mb is not None:
            return int(self.policy.memory_mb * MB)
        try:
            path = resolve_source(self.spec.source)
        except SourceUnavailable:
            return 0
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        projector = self.spec.options.get("mmproj")  # a vision model's second file
        if projector:
            with contextlib.suppress(SourceUnavailable):
                files.append(resolve_source(str(projector)))
        return int(1.5 * sum(p.stat().st_size for p in files))


def plan_eviction(target: ServedModel, models: list[ServedModel],
                  budget_bytes: int) -> list[ServedModel] | None:
    """Least recently used idle unpinned models to unload so `target` fits, or None if even
    unloading all of them would not make room."""
    others = [m for m in models if m is not target and m.loaded]
    used = sum(m.memory_bytes() or m.estimate_bytes() for m in others)
    need = target.estimate_bytes()
    if used + need <= budget_bytes:
        return []
    victims: list[ServedModel] = []
    candidates = sorted((m for m in others if not m.policy.pin and not m.busy and m.ready),
                        key=lambda m: m.last_used)
    for model in candidates:
        victims.append(model)
        used -= model.memory_bytes() or model.estimate_bytes()
        if used + need <= budget_bytes:
            return victims
    return None


def expired(models: list[ServedModel], now: float) -> list[ServedModel]:
    """Ready, idle, unpinned models whose TTL has run out."""
    return [m for m in models
            if m.ttl_s is not None and m.ready and not m.busy and not m.policy.pin
            and now - m.last_used >= m.ttl_s]
