"""The CPU plan: how many threads each worker gets, and who goes first when several are busy.

One place decides both, so backends take their thread counts from here, never from the machine.

Threads: a model alone must keep its full speed, so by default each worker may use every core
this process may run on: its affinity (`os.sched_getaffinity`, which respects taskset and cgroup
cpusets, unlike `os.cpu_count`), cut to a cgroup CPU quota where one is set (a container given
2 CPUs on a 16-core host must not start 16 spinning llama.cpp threads). Contention is then
handled in time, not by smaller thread pools: the `CpuScheduler` (serving/cpu_scheduler.py)
pauses and resumes workers when several are busy.

Priority: `interactive` work (a chat stream a person reads, speech a client waits for) gets
the largest slices, `bulk` work (embedding batches) the smallest, `normal` sits between; every
busy model gets some CPU in every period, so none starves. Defaults come from the capability;
`model_policies.<id>.priority` overrides them.

Gang: llama.cpp's threads wait for each other at every op on spin barriers, so when another
process takes a core from one of them, the others spin instead of working. Such a worker is
given slices of its own (all its threads run together, nothing else of ours runs); workers
without that trait (onnxruntime with spinning off, CTranslate2) share the remaining slice.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pocketserve.config import ModelPolicy, ModelSpec, Priority

log = logging.getLogger("pocketserve.cpu")

# A slice's length is proportional to these among the groups that compete.
WEIGHTS: dict[str, int] = {"interactive": 4, "normal": 2, "bulk": 1}

DEFAULT_PRIORITY: dict[str, Priority] = {
    "chat": "interactive",       # a person reads the stream as it comes
    "speech": "interactive",     # a client waits for the audio, often to play it at once
    "rerank": "normal",          # usually on a search path a person waits for, but short
    "transcription": "normal",   # a voice command is urgent, a long recording is not
    "embeddings": "bulk",        # batches for an index
}

# Backends whose threads synchronise on spin barriers, so they need all theirs at once.
GANG_BACKENDS = frozenset({"llamacpp"})
# Backends whose work runs elsewhere (another server): never paused, never counted as busy.
OFF_CPU_BACKENDS = frozenset({"remote"})


def machine_cores() -> int:
    """Cores this process may run on (its affinity mask, cut to a cgroup CPU quota), at
    least 1."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))  # 1.5 CPUs: one thread, not throttled
    return cores


def cgroup_cpu_quota(proc_cgroup: Path = Path("/proc/self/cgroup"),
                     root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPUs this process's cgroups allow (quota / period, the tightest of its cgroup and
    their parents), or None when no quota is set or none can be read. cgroup v2 (`cpu.max`)
    and v1 (`cpu.cfs_quota_us` over `cpu.cfs_period_us`) alike."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        fields = line.split(":", 2)  # hierarchy id, controllers, path
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":  # v2: one tree, mounted at the root
            limits += _quotas(root, path, _v2_quota)
        elif "cpu" in controllers.split(","):
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                if mount.is_dir():
                    limits += _quotas(mount, path, _v1_quota)
                    break
    return min(limits) if limits else None


def _quotas(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """Quotas of the cgroup at `path` under `mount` and of its parents. Inside a container the
    path may name the host's hierarchy while the mount shows only the container's own part:
    then only the mount's top (the container's cgroup) can be read."""
    found: list[float] = []
    where = mount / path.strip("/")
    for folder in [where, *where.parents]:
        if folder == mount.parent:
            break
        value = read(folder)
        if value is not None:
            found.append(value)
    return found


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else _ratio(quota, period)


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = (folder / "cpu.cfs_quota_us").read_text().strip()
        period = (folder / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return None if quota.startswith("-") else _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


@dataclass(frozen=True)
class CpuShare:
    """One model's part of the plan."""

    model: str
    threads: int
    priority: Priority
    weight: int
    gang: bool  # gets exclusive slices when others are busy


class CpuPlan:
    """Decides threads and priority per model from the settings and the machine."""

    def __init__(self, cores: int | None = None, threads: int | None = None):
        self.cores = cores or machine_cores()
        self.default_threads = threads  # settings.threads: one count for every worker

    def share(self, spec: ModelSpec, policy: ModelPolicy) -> CpuShare:
        priority: Priority = policy.priority or DEFAULT_PRIORITY.get(spec.capability, "normal")
        return CpuShare(model=spec.id, threads=self.threads(spec), priority=priority,
                        weight=WEIGHTS[priority], gang=spec.backend in GANG_BACKENDS)

    def threads(self, spec: ModelSpec) -> int:
        """The model's own `threads` option, else the server's `threads`, else all cores.
        An explicit count is honoured as given, even above the cores."""
        explicit = spec.options.get("threads", self.default_threads)
        return self.cores if explicit is None else max(1, int(explicit))


def continue_on_parent_death() -> None:
    """In a worker: have the kernel send SIGCONT to this process when the server dies.

    The scheduler may hold a worker stopped (SIGSTOP); if the server is then killed outright,
    nothing would ever continue it, and a stopped process cannot notice that its socket has
    closed. With this, the kernel continues it, it reads EOF and exits on its own. Linux
    only; elsewhere (no prctl) the scheduler is not used either.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        if libc.prctl(pr_set_pdeathsig, int(signal.SIGCONT), 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError):
        return
