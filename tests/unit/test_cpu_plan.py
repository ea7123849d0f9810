"""The CPU plan: thread counts from the plan (never the machine's count behind its back),
priorities by capability with per-model overrides, and the slices of one period."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pocketserve.config import ModelPolicy, ModelSpec, Settings
from pocketserve.serving.admission import Admission
from pocketserve.serving.cpu import CpuPlan, machine_cores
from pocketserve.serving.cpu_scheduler import Member, plan_slices
from pocketserve.serving.lifecycle import ServedModel
from pocketserve.serving.worker import WorkerOptions, WorkerProcess, WorkerState


def _spec(capability: str = "chat", backend: str = "llamacpp", **options: object) -> ModelSpec:
    return ModelSpec(id=f"{capability}-model", capability=capability,  # type: ignore[arg-type]
                     backend=backend, source="/nonexistent", options=options)


def test_threads_default_to_every_core_this_process_may_use() -> None:
    assert CpuPlan().threads(_spec()) == machine_cores()
    assert CpuPlan(cores=6).threads(_spec()) == 6


def test_threads_from_the_server_setting_and_the_model_option_win_in_that_order() -> None:
    assert CpuPlan(cores=8, threads=3).threads(_spec()) == 3
    assert CpuPlan(cores=8, threads=3).threads(_spec(threads=1)) == 1
    assert CpuPlan(cores=2).threads(_spec(threads=4)) == 4  # explicit: honoured as given


def test_priority_defaults_by_capability_and_policy_overrides() -> None:
    plan = CpuPlan(cores=2)
    chat = plan.share(_spec("chat"), ModelPolicy())
    embed = plan.share(_spec("embeddings", "onnx_embeddings"), ModelPolicy())
    assert (chat.priority, chat.weight, chat.gang) == ("interactive", 4, True)
    assert (embed.priority, embed.weight, embed.gang) == ("bulk", 1, False)
    assert plan.share(_spec("speech", "piper"), ModelPolicy()).priority == "interactive"
    assert plan.share(_spec("transcription", "faster_whisper"),
                      ModelPolicy()).priority == "normal"
    forced = plan.share(_spec("chat"), ModelPolicy(priority="bulk"))
    assert (forced.priority, forced.weight) == ("bulk", 1)


def test_an_unknown_priority_is_refused() -> None:
    with pytest.raises(ValidationError, match="priority"):
        Settings(model_policies={"x": {"priority": "urgent"}})  # type: ignore[dict-item]


def _m(name: str, weight: int, gang: bool) -> Member:
    return Member(name, weight, gang, pid=lambda: 1, busy=lambda: True)


def test_one_group_busy_is_never_sliced() -> None:
    assert plan_slices([]) == []
    assert plan_slices([_m("chat", 4, True)]) == []
    # models that share cores well run side by side: nothing to pause
    assert plan_slices([_m("embed", 1, False), _m("speech", 4, False)]) == []


def test_a_gang_model_gets_its_own_slice_sized_by_weight_heaviest_first() -> None:
    slices = plan_slices([_m("embed", 1, False), _m("chat", 4, True)])
    assert [s.members for s in slices] == [("chat",), ("embed",)]
    assert [round(s.fraction, 2) for s in slices] == [0.8, 0.2]


def test_the_shared_slice_weighs_what_its_members_weigh_on_average() -> None:
    """Three models sharing one slice split it, so it must not count as three models'
    claim (nor as the most urgent one's alone: then chat got half the CPU and kept 0.35 of
    its speed in bench/mixed_load.py)."""
    slices = plan_slices([_m("chat", 4, True), _m("speech", 4, False), _m("embed", 1, False),
                          _m("stt", 2, False)])
    assert {s.members: round(s.fraction, 2) for s in slices} == {
        ("chat",): 0.63, ("speech", "embed", "stt"): 0.37}


def test_two_gang_models_take_turns_and_no_slice_is_starved() -> None:
    slices = plan_slices([_m("a", 4, True), _m("b", 4, True)])
    assert [round(s.fraction, 2) for s in slices] == [0.5, 0.5]
    many = plan_slices([_m(f"g{i}", 4, True) for i in range(30)] + [_m("tiny", 1, True)])
    assert min(s.fraction for s in many) > 0.01
    assert round(sum(s.fraction for s in many), 6) == 1


def _served(backend: str = "llamacpp") -> ServedModel:
    spec = _spec(backend=backend)
    worker = WorkerProcess(spec, WorkerOptions(threads=1, start_timeout_s=1, max_backoff_s=1,
                                               cache_dir=Path("/nonexistent")))
    return ServedModel(spec=spec, policy=ModelPolicy(), worker=worker,
                       admission=Admission(spec.id, 2, 2), ttl_s=None, preload=False,
                       cpu=CpuPlan(cores=2).share(spec, ModelPolicy()))


def test_a_worker_is_offered_to_the_scheduler_only_while_it_serves() -> None:
    model = _served()
    member = model.cpu_member()
    assert member is not None and (member.weight, member.gang) == (4, True)
    model.worker.pid = 4242
    assert member.pid() is None  # not started
    model.worker.state = WorkerState.READY
    assert member.pid() == 4242
    assert not member.busy()
    model.admission.in_flight = 1
    assert member.busy()
    model.worker._stopping = True  # unloading: must never be paused now
    assert member.pid() is None
