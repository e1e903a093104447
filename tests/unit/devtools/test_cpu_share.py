"""bench.cpu_share without root or a real cgroup: which hierarchy it picks from a mount
table (v1 on a hybrid machine, v2 on Debian 12/13), the quota files it writes, and the
process tree it confines. The real cgroups are exercised by `bench.fleet_pull --node-cpu`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bench.cpu_share import CpuShareError, _create, _enable_cpu_v2, find_hierarchy, process_tree


def _mounts(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "mounts"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_hybrid_machine_uses_the_v1_cpu_hierarchy(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    mounts = _mounts(
        tmp_path,
        f"cgroup2 {tmp_path}/unified cgroup2 rw,relatime 0 0",
        f"cgroup {tmp_path}/cpu cgroup rw,relatime,cpu 0 0",
    )
    hierarchy = find_hierarchy(mounts)
    assert (hierarchy.root, hierarchy.version) == (tmp_path / "cpu", 1)


def test_unified_machine_uses_cgroup2(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    mounts = _mounts(tmp_path, f"cgroup2 {tmp_path} cgroup2 rw,nosuid 0 0")
    hierarchy = find_hierarchy(mounts)
    assert (hierarchy.root, hierarchy.version) == (tmp_path, 2)


def test_no_cpu_controller_says_what_it_found(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("hugetlb\n")
    mounts = _mounts(tmp_path, f"cgroup2 {tmp_path} cgroup2 rw 0 0")
    with pytest.raises(CpuShareError, match="lacks cpu"):
        find_hierarchy(mounts)


def test_quota_files(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "cgroup.controllers").write_text("cpu\n")
    (tmp_path / "v2" / "cgroup.subtree_control").write_text("\n")
    (tmp_path / "v1" / "cpu.cfs_quota_us").write_text("-1\n")
    v1 = find_hierarchy(_mounts(tmp_path, f"cgroup {tmp_path}/v1 cgroup rw,cpu,cpuacct 0 0"))
    group = _create(v1, "node-0", 0.35)
    assert (group.path / "cpu.cfs_period_us").read_text() == "100000\n"
    assert (group.path / "cpu.cfs_quota_us").read_text() == "35000\n"
    v2 = find_hierarchy(_mounts(tmp_path, f"cgroup2 {tmp_path}/v2 cgroup2 rw 0 0"))
    _enable_cpu_v2(v2)
    assert v2.enabled_cpu
    assert (tmp_path / "v2" / "cgroup.subtree_control").read_text() == "+cpu\n"
    group = _create(v2, "node-0", 0.3)
    assert (group.path / "cpu.max").read_text() == "30000 100000\n"


def test_process_tree_holds_children_and_grandchildren() -> None:
    # The child execs a shell that starts a sleep: a grandchild of this process.
    child = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    grandchildren: list[int] = []
    try:
        for _ in range(200):
            tree = process_tree(os.getpid())
            grandchildren = [pid for pid in tree if pid not in (os.getpid(), child.pid)]
            if grandchildren:
                break
            time.sleep(0.02)
        assert tree[0] == os.getpid()
        assert child.pid in tree
        assert grandchildren
    finally:
        for pid in grandchildren:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        child.kill()
        child.wait()
