"""Which models this server serves, by id or alias, and how every request reaches them.

Every capability goes through `stream`/`call`, so this is where admission (bounded in-flight and
queue), deadlines, cancellation, load-on-first-use, the memory budget and metrics apply, once
for all routes. Request facts (id, deadline) come from the current `RequestContext`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pocketserve.catalog import Catalog
from pocketserve.config import ModelSpec, Settings
from pocketserve.errors import (
    DeadlineExceeded,
    EngineFailure,
    ModelNotFound,
    ModelNotReady,
    RetryLater,
)
from pocketserve.ops.wire import Op, WorkerStats
from pocketserve.serving.admission import Admission
from pocketserve.serving.context import current_request
from pocketserve.serving.cpu import OFF_CPU_BACKENDS, CpuPlan
from pocketserve.serving.cpu_scheduler import CpuScheduler, Member
from pocketserve.serving.lifecycle import MB, ServedModel, expired
from pocketserve.serving.loader import Loader
from pocketserve.serving.metrics import Metrics, WorkerSnapshot
from pocketserve.serving.usage import check_input, observe_event
from pocketserve.serving.worker import OpStream, WorkerOptions, WorkerProcess

WorkerFactory = Callable[[ModelSpec, WorkerOptions], Any]
"""Builds a model's worker (anything shaped as WorkerProcess); default: WorkerProcess."""

Req = TypeVar("Req")
Ev = TypeVar("Ev")
T = TypeVar("T")

log = logging.getLogger("pocketserve.registry")


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
    memory_bytes: int = 0
    pinned: bool = False
    in_flight: int = 0
    queued: int = 0
    idle_s: float = 0.0
    active_sequences: int = 0
    generated_events: int = 0
    cpu: dict[str, Any] | None = None  # threads, priority, weight, gang, wait_s, paused


class ModelRegistry:
    """Owns one ServedModel (worker + admission line) per model; the API talks only to this."""

    def __init__(self, settings: Settings, catalog: Catalog, metrics: Metrics | None = None,
                 worker_factory: WorkerFactory | None = None):
        self.settings = settings
        # Another home for the models (Ray Serve): no local process, so no CPU scheduling.
        self.worker_factory = worker_factory
        self.metrics = metrics or Metrics()
        self.started_at = int(time.time())
        self.draining = False
        self._models: dict[str, ServedModel] = {}
        self._reaper: asyncio.Task[None] | None = None
        self.cpu_plan = CpuPlan(threads=settings.threads)
        self.cpu_scheduler = CpuScheduler(
            self._cpu_members, period_s=settings.cpu_slice_period_ms / 1000) if (
            settings.cpu_slicing and hasattr(signal, "SIGSTOP")) else None
        for name in settings.models:
            spec = catalog.find(name)
            self._models[spec.id] = self._served(spec)
        self._aliases = self._resolved_aliases(settings.model_aliases)
        budget = settings.memory_budget_mb
        self._loader = Loader(self.metrics, None if budget is None else int(budget * MB),
                              lambda: list(self._models.values()))
        self.metrics.watch_workers(self._snapshots)

    def _served(self, spec: ModelSpec) -> ServedModel:
        s = self.settings
        policy = s.policy(spec)
        share = self.cpu_plan.share(spec, policy)
        options = WorkerOptions(
            threads=share.threads,
            start_timeout_s=s.worker_start_timeout_s,
            max_backoff_s=s.worker_restart_max_backoff_s, cache_dir=s.cache_dir,
            log_level=s.log_level)
        admission = Admission(spec.id, policy.max_in_flight or s.max_in_flight,
                              s.max_queue if policy.max_queue is None else policy.max_queue)
        self.metrics.queue_depth.labels(spec.id).set_function(lambda: admission.queued)
        self.metrics.in_flight.labels(spec.id).set_function(lambda: admission.in_flight)
        return ServedModel(
            spec=spec, policy=policy, admission=admission,
            worker=(self.worker_factory or WorkerProcess)(spec, options),
            ttl_s=policy.ttl_s or s.idle_ttl_s,
            preload=s.preload if policy.preload is None else policy.preload,
            cpu=None if spec.backend in OFF_CPU_BACKENDS or self.worker_factory else share)

    def _cpu_members(self) -> list[Member]:
        return [m for m in (s.cpu_member() for s in self._models.values()) if m is not None]

    # -- start and stop ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the preloaded models (a failed one is reported, not fatal); start the reaper."""
        preload = [m for m in self._models.values() if m.preload]
        if self._loader.budget_bytes is None:
            await asyncio.gather(*(self._loader.load(m, quiet=True) for m in preload))
        else:  # one at a time, so each sees what the others really use
            for model in preload:
                await self._loader.load(model, quiet=True)
        if self.cpu_scheduler is not None:
            self.cpu_scheduler.start()
        ttls = [m.ttl_s for m in self._models.values() if m.ttl_s is not None]
        if ttls:
            self._reaper = asyncio.create_task(self._reap(min(ttls)), name="ttl-reaper")

    async def stop(self) -> None:
        """Refuse new work, continue any paused worker, and stop every worker process."""
        self.draining = True
        if self.cpu_scheduler is not None:
            self.cpu_scheduler.stop()
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await asyncio.gather(*(m.worker.stop() for m in self._models.values()))

    async def _reap(self, shortest_ttl: float) -> None:
        interval = min(5.0, max(0.05, shortest_ttl / 4))
        while True:
            await asyncio.sleep(interval)
            for model in expired(list(self._models.values()), time.monotonic()):
                log.info("model %s idle for %.1fs: unloading", model.id, model.ttl_s or 0)
                await self._loader.unload(model, "idle")

    # -- lookup --------------------------------------------------------------------------------

    def _find(self, name: str) -> ServedModel | None:
        """The model for an id or one of its catalog aliases."""
        if name in self._models:
            return self._models[name]
        return next((m for m in self._models.values() if name in m.spec.aliases), None)

    def _resolved_aliases(self, aliases: dict[str, str]) -> dict[str, str]:
        """The `model_aliases` setting as alias -> served id; one that shadows a served name
        or points at no served model is logged and left out (a 404 like any unknown name)."""
        resolved: dict[str, str] = {}
        for alias, target in aliases.items():
            model = self._find(target)
            if self._find(alias) is not None:
                log.warning("model_aliases: %r already names a served model; alias ignored",
                            alias)
            elif model is None:
                log.warning("model_aliases: %r points at %r, which is not served; alias "
                            "ignored", alias, target)
            else:
                resolved[alias] = model.id
        return resolved

    def model(self, name: str) -> ServedModel:
        """The served model for an id or alias; ModelNotFound names the served ones."""
        model = self._find(name)
        if model is None and name in self._aliases:
            model = self._models[self._aliases[name]]
        if model is not None:
            return model
        served = ", ".join(sorted(self._models)) or "none"
        raise ModelNotFound(f"The model {name!r} does not exist. Available models: {served}.")

    def aliases(self, model_id: str) -> list[str]:
        """Every other name of a served model: its catalog aliases, then configured ones."""
        configured = [a for a, target in self._aliases.items() if target == model_id]
        return [*self._models[model_id].spec.aliases, *configured]

    def worker(self, name: str) -> WorkerProcess:
        return self.model(name).worker

    def spec(self, name: str) -> ModelSpec:
        return self.model(name).spec

    # -- serving -------------------------------------------------------------------------------

    def stream(self, name: str, op: Op[Req, Ev], request: Req) -> AsyncIterator[Ev]:
        """Events of one request, admitted, deadline-bound and cancellable (close it early)."""
        model = self.model(name)  # unknown model: fail now, before any iteration
        return self._serve(model, op, request)

    async def call(self, name: str, op: Op[Req, Ev], request: Req, answer: type[T]) -> T:
        """The `answer` event of a request (its other events, like usage, are counted). Read
        to its end, so a finished request is not mistaken for a cancelled one."""
        found: T | None = None
        async for event in self._serve(self.model(name), op, request):
            if found is None and isinstance(event, answer):
                found = event
        if found is None:
            raise EngineFailure(f"model {name!r} gave no {answer.__name__} to {op.name!r}")
        return found

    @contextlib.asynccontextmanager
    async def open(self, name: str, op: Op[Req, Ev],
                   request: Req) -> AsyncIterator[OpStream[Ev]]:
        """A request whose input keeps arriving (`op.input`): send frames with `send`, read
        `events()`. It holds its admission slot until the block exits, which cancels it in
        the worker unless its events were read to the end."""
        model = self.model(name)
        ctx = current_request()
        deadline = ctx.deadline if ctx else None
        if self.draining:
            raise ModelNotReady("The server is shutting down and takes no new requests.")
        async with model.admission.slot(deadline):
            model.touch()
            await self._loader.ensure_loaded(model, deadline)
            stream = model.worker.open(op, request, deadline=deadline,
                                       request_id=ctx.request_id if ctx else None)
            try:
                yield stream
            finally:
                stream.close()
                model.touch()

    async def _serve(self, model: ServedModel, op: Op[Req, Ev],
                     request: Req) -> AsyncGenerator[Ev]:
        ctx = current_request()
        deadline = ctx.deadline if ctx else None
        if ctx is not None:
            ctx.model = model.id
        if self.draining:
            raise ModelNotReady("The server is shutting down and takes no new requests.")
        check_input(model.spec.capability, request, self.settings.max_input_chars)
        m = self.metrics
        try:
            async with model.admission.slot(deadline) as admitted:
                m.queue_wait.labels(model.id).observe(admitted.queue_wait_s)
                m.batch_size.labels(model.id).observe(admitted.running)
                model.touch()
                await self._loader.ensure_loaded(model, deadline)
                started = time.monotonic()
                first: float | None = None
                events = model.worker.stream(op, request, deadline=deadline,
                                             request_id=ctx.request_id if ctx else None)
                async with contextlib.aclosing(events):
                    async for event in events:
                        if first is None:
                            first = time.monotonic()
                            m.ttft.labels(model.id).observe(first - started)
                        observe_event(event, model.id, m, ctx, first)
                        yield event
        except RetryLater:
            m.rejected.labels(model.id, "queue_full").inc()
            raise
        except DeadlineExceeded:
            m.rejected.labels(model.id, "deadline").inc()
            raise
        except (asyncio.CancelledError, GeneratorExit):
            m.rejected.labels(model.id, "cancelled").inc()
            raise
        finally:
            model.touch()

    # -- admin ---------------------------------------------------------------------------------

    async def load(self, name: str) -> ModelStatus:
        """Load a model now (retrying a failed one); its error says why when it cannot."""
        model = self.model(name)
        model.load_error = None
        await self._loader.ensure_loaded(model, None, retry_failed=True)
        return self._status(model)

    async def unload(self, name: str) -> ModelStatus:
        model = self.model(name)
        await self._loader.unload(model, "admin")
        return self._status(model)

    async def refresh_stats(self) -> None:
        """Ask each ready worker what it is running (for /metrics and the admin list)."""
        async def one(model: ServedModel) -> None:
            model.stats = await model.worker.stats() if model.ready else WorkerStats()
        await asyncio.gather(*(one(m) for m in self._models.values()))

    def statuses(self) -> list[ModelStatus]:
        return [self._status(m) for m in self._models.values()]

    def _status(self, m: ServedModel) -> ModelStatus:
        w = m.worker
        return ModelStatus(
            id=m.id, capability=m.spec.capability, backend=m.spec.backend,
            aliases=self.aliases(m.id), state=m.state(), info=dict(w.info),
            error=m.load_error or w.error, pid=w.pid if m.loaded else None, restarts=w.restarts,
            memory_bytes=m.memory_bytes(), pinned=m.policy.pin, in_flight=m.admission.in_flight,
            queued=m.admission.queued, idle_s=round(time.monotonic() - m.last_used, 3),
            active_sequences=m.stats.active, generated_events=m.stats.events,
            cpu=self._cpu_status(m))

    def _cpu_status(self, m: ServedModel) -> dict[str, Any] | None:
        if m.cpu is None:
            return None
        sched = self.cpu_scheduler
        return {"threads": m.cpu.threads, "priority": m.cpu.priority, "weight": m.cpu.weight,
                "gang": m.cpu.gang, "wait_s": round(sched.waited_s(m.id), 3) if sched else 0.0,
                "paused": sched.paused(m.id) if sched else False}

    def _snapshots(self) -> list[WorkerSnapshot]:
        return [WorkerSnapshot(s.id, s.state, s.memory_bytes, s.restarts, s.active_sequences,
                               s.generated_events, s.cpu) for s in self.statuses()]

    def all_ready(self) -> bool:
        """Every model answers or can be loaded on demand (none loading or failed)."""
        return not self.draining and all(s.state in ("ready", "unloaded")
                                         for s in self.statuses())
