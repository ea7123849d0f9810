"""Which models to unload for the budget (LRU, never pinned or busy) and for idleness."""

from __future__ import annotations

from pathlib import Path

from pocketserve.config import ModelPolicy, ModelSpec
from pocketserve.serving.admission import Admission
from pocketserve.serving.lifecycle import MB, ServedModel, expired, plan_eviction
from pocketserve.serving.worker import WorkerOptions, WorkerProcess, WorkerState


def _model(name: str, mb: float, last_used: float, *, pin: bool = False,
           ready: bool = True, ttl_s: float | None = None) -> ServedModel:
    spec = ModelSpec(id=name, capability="chat", backend="llamacpp", source="/nonexistent")
    worker = WorkerProcess(spec, WorkerOptions(threads=1, start_timeout_s=1, max_backoff_s=1,
                                               cache_dir=Path("/nonexistent")))
    worker.state = WorkerState.READY if ready else WorkerState.UNLOADED
    return ServedModel(spec=spec, policy=ModelPolicy(pin=pin, memory_mb=mb), worker=worker,
                       admission=Admission(name, 1, 1), ttl_s=ttl_s, preload=False,
                       last_used=last_used)


def test_fits_without_evicting() -> None:
    a, new = _model("a", 100, 1), _model("new", 100, 0, ready=False)
    assert plan_eviction(new, [a, new], 300 * MB) == []


def test_evicts_least_recently_used_first_and_spares_pinned() -> None:
    pinned = _model("pinned", 100, 0, pin=True)
    old, recent = _model("old", 100, 1), _model("recent", 100, 2)
    new = _model("new", 100, 0, ready=False)
    victims = plan_eviction(new, [pinned, old, recent, new], 300 * MB)
    assert victims == [old]
    victims = plan_eviction(new, [pinned, old, recent, new], 200 * MB)
    assert victims == [old, recent]


def test_busy_models_are_not_evicted_and_too_big_is_none() -> None:
    busy = _model("busy", 100, 0)
    busy.admission.in_flight = 1
    new = _model("new", 100, 0, ready=False)
    assert plan_eviction(new, [busy, new], 150 * MB) is None
    huge = _model("huge", 10_000, 0, ready=False)
    assert plan_eviction(huge, [huge], 1000 * MB) is None


def test_expired_only_idle_unpinned_past_ttl() -> None:
    idle = _model("idle", 1, last_used=0, ttl_s=10)
    fresh = _model("fresh", 1, last_used=95, ttl_s=10)
    pinned = _model("pinned", 1, last_used=0, ttl_s=10, pin=True)
    no_ttl = _model("no-ttl", 1, last_used=0)
    busy = _model("busy", 1, last_used=0, ttl_s=10)
    busy.admission.in_flight = 1
    assert expired([idle, fresh, pinned, no_ttl, busy], now=100) == [idle]
