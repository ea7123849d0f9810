"""The CPU plan's core count under a cgroup CPU quota (a container given fewer CPUs than the
host has): read from cgroup v2's cpu.max and v1's cfs files, the tightest of the process's
cgroup and its parents, in fake cgroup trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketserve.serving import cpu
from pocketserve.serving.cpu import cgroup_cpu_quota, machine_cores


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# (the process's /proc/self/cgroup, files under the cgroup mount, the quota expected)
TREES = {
    "v2 quota of the process's cgroup": (
        "0::/kubepods/pod1/box\n",
        {"cpu.max": "max 100000\n", "kubepods/pod1/box/cpu.max": "150000 100000\n"}, 1.5),
    "v2 a parent's quota binds when tighter": (
        "0::/a/b\n", {"a/cpu.max": "100000 100000\n", "a/b/cpu.max": "max 100000\n"}, 1.0),
    "v2 no quota anywhere": ("0::/a\n", {"a/cpu.max": "max 100000\n"}, None),
    # Inside a container the cgroup is the mount's top, not under the host's path.
    "v1 host path unseen inside a container": (
        "4:memory:/docker/abc\n3:cpuset:/\n2:cpu,cpuacct:/docker/abc\n",
        {"cpu,cpuacct/cpu.cfs_quota_us": "300000\n",
         "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 3.0),
    "v1 unlimited is minus one": (
        "1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
        None),
}


@pytest.mark.parametrize(("cgroup", "files", "expected"), TREES.values(), ids=TREES.keys())
def test_quota_read_from_a_cgroup_tree(tmp_path: Path, cgroup: str, files: dict[str, str],
                                       expected: float | None) -> None:
    proc = tmp_path / "cgroup"
    _write(proc, cgroup)
    root = tmp_path / "fs"
    for name, text in files.items():
        _write(root / name, text)
    assert cgroup_cpu_quota(proc, root) == expected


def test_unreadable_or_malformed_files_mean_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path / "missing", tmp_path) is None
    proc = tmp_path / "cgroup"
    _write(proc, "not a cgroup line\n0::/\n")
    _write(tmp_path / "fs/cpu.max", "garbage\n")
    assert cgroup_cpu_quota(proc, tmp_path / "fs") is None


@pytest.mark.parametrize(("quota", "expected"), [(None, 8), (3.0, 3), (1.5, 1), (0.5, 1),
                                                 (32.0, 8)])
def test_machine_cores_is_the_affinity_cut_to_the_quota(
        monkeypatch: pytest.MonkeyPatch, quota: float | None, expected: int) -> None:
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(cpu, "cgroup_cpu_quota", lambda: quota)
    assert machine_cores() == expected
