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


def test_v2_quota_of_the_process_cgroup(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    _write(proc, "0::/kubepods/pod1/box\n")
    root = tmp_path / "fs"
    _write(root / "cpu.max", "max 100000\n")
    _write(root / "kubepods/pod1/box/cpu.max", "150000 100000\n")
    assert cgroup_cpu_quota(proc, root) == 1.5


def test_v2_a_parent_quota_binds_when_tighter(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    _write(proc, "0::/a/b\n")
    root = tmp_path / "fs"
    _write(root / "a/cpu.max", "100000 100000\n")
    _write(root / "a/b/cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(proc, root) == 1.0


def test_v2_no_quota_anywhere(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    _write(proc, "0::/a\n")
    root = tmp_path / "fs"
    _write(root / "a/cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(proc, root) is None


def test_v1_quota_with_the_host_path_unseen_inside_a_container(tmp_path: Path) -> None:
    """The container sees its own cgroup at the mount's top, not under the host's path."""
    proc = tmp_path / "cgroup"
    _write(proc, "4:memory:/docker/abc\n3:cpuset:/\n2:cpu,cpuacct:/docker/abc\n")
    root = tmp_path / "fs"
    _write(root / "cpu,cpuacct/cpu.cfs_quota_us", "300000\n")
    _write(root / "cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(proc, root) == 3.0


def test_v1_unlimited_is_minus_one(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    _write(proc, "1:cpu:/\n")
    root = tmp_path / "fs"
    _write(root / "cpu/cpu.cfs_quota_us", "-1\n")
    _write(root / "cpu/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(proc, root) is None


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
