"""A fixed CPU share per process tree, with a cgroup CPU quota (cgroup v1 ``cpu`` or v2).

For benchmarks that simulate several nodes on one machine: each node's daemon and its
children go into a cgroup of their own whose quota is ``share`` CPUs, so a node pulling
alone gets no more CPU than a node pulling beside others. Finds the ``cpu`` controller
in /proc/self/mounts: a cgroup v1 hierarchy with it (``cpu.cfs_quota_us``), else a
cgroup2 hierarchy whose root offers it (``cpu.max``). Needs root.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

PERIOD_US = 100_000


class CpuShareError(RuntimeError):
    """No usable cpu controller, or the kernel refused a cgroup operation."""


@dataclass
class _Hierarchy:
    root: Path
    version: int  # 1 or 2
    enabled_cpu: bool = False  # cgroup v2: we wrote +cpu to the root's subtree_control


@dataclass
class CpuGroup:
    """One cgroup with a CPU quota, and where each pid moved into it came from."""

    path: Path
    hierarchy: _Hierarchy
    share: float
    origins: dict[int, Path] = field(default_factory=dict)

    def add_processes(self, pids: Iterable[int]) -> None:
        """Move each pid (a whole process, every thread) into this cgroup; its future
        children start in it too."""
        for pid in pids:
            if pid in self.origins:
                continue
            origin = _cgroup_of(pid, self.hierarchy)
            if origin is None:
                continue  # gone meanwhile
            try:
                (self.path / "cgroup.procs").write_text(f"{pid}\n")
            except ProcessLookupError:
                continue
            except OSError as e:
                raise CpuShareError(f"moving pid {pid} into {self.path}: {e}") from e
            self.origins[pid] = origin

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError):
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        return []

    def throttled_seconds(self) -> float:
        """How long the quota held this group's processes back so far."""
        stat = _read_keyed(self.path / "cpu.stat")
        if self.hierarchy.version == 1:
            return stat.get("throttled_time", 0) / 1e9
        return stat.get("throttled_usec", 0) / 1e6

    def remove(self) -> None:
        """Move every process back (where it came from, else to the parent) and rmdir."""
        parent = self.path.parent
        for _ in range(20):
            for pid in self.pids():
                # The origin may be gone, or (v2) now refuse processes: then the parent.
                for target in (self.origins.get(pid, parent), parent):
                    try:
                        (target / "cgroup.procs").write_text(f"{pid}\n")
                        break
                    except ProcessLookupError:
                        break
                    except OSError:
                        continue
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                # A child forked while we moved the others, or a process still exiting.
                time.sleep(0.1)
        raise CpuShareError(f"cannot remove {self.path}: still holds pids {self.pids()}")


def _read_keyed(path: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                values[key] = int(value)
    return values


def _cgroup_of(pid: int, hierarchy: _Hierarchy) -> Path | None:
    """The cgroup directory ``pid`` is in on ``hierarchy``, or None when it is gone.
    Paths in /proc/PID/cgroup are relative to the hierarchy's root as mounted here."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        mine = controllers == "" if hierarchy.version == 2 else "cpu" in controllers.split(",")
        if mine:
            return hierarchy.root / path.lstrip("/")
    return hierarchy.root


def find_hierarchy(mounts: Path = Path("/proc/self/mounts")) -> _Hierarchy:
    """The mounted hierarchy that offers the cpu controller (v1 first: on a hybrid
    machine the controller is bound to v1 and the unified tree does not have it)."""
    v2_roots: list[Path] = []
    tried: list[str] = []
    for line in mounts.read_text().splitlines():
        _, mountpoint, fstype, options, *_ = line.split()
        if fstype == "cgroup" and "cpu" in options.split(","):
            root = Path(mountpoint)
            if (root / "cpu.cfs_quota_us").exists():
                return _Hierarchy(root, 1)
            tried.append(f"{root}: cgroup v1 without cpu.cfs_quota_us")
        elif fstype == "cgroup2":
            v2_roots.append(Path(mountpoint))
    for root in v2_roots:
        try:
            controllers = (root / "cgroup.controllers").read_text().split()
        except OSError as e:
            tried.append(f"{root}: {e}")
            continue
        if "cpu" in controllers:
            return _Hierarchy(root, 2)
        tried.append(f"{root}: cgroup2 whose cgroup.controllers lacks cpu ({controllers})")
    raise CpuShareError(
        "no mounted cgroup hierarchy offers the cpu controller: " + "; ".join(tried)
    )


def _enable_cpu_v2(hierarchy: _Hierarchy) -> None:
    control = hierarchy.root / "cgroup.subtree_control"
    if "cpu" in control.read_text().split():
        return
    try:
        control.write_text("+cpu\n")
    except OSError as e:
        # Under a cgroup namespace (a container) the root may hold processes, which
        # cgroup v2 forbids beside enabled controllers (EBUSY).
        raise CpuShareError(f"enabling the cpu controller in {control}: {e}") from e
    hierarchy.enabled_cpu = True


def _create(hierarchy: _Hierarchy, name: str, share: float) -> CpuGroup:
    path = hierarchy.root / name
    try:
        path.mkdir()
        quota = round(share * PERIOD_US)
        if hierarchy.version == 1:
            (path / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
            (path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        else:
            (path / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
    except OSError as e:
        with contextlib.suppress(OSError):
            path.rmdir()
        raise CpuShareError(f"creating {path} with a quota of {share} CPU: {e}") from e
    return CpuGroup(path, hierarchy, share)


@contextlib.contextmanager
def cpu_groups(prefix: str, count: int, share: float) -> Iterator[list[CpuGroup]]:
    """``count`` cgroups named ``<prefix>-<pid>-<n>`` at the hierarchy's root, each
    limited to ``share`` CPUs; on exit their processes move back and they are removed,
    also when the body raised."""
    if share <= 0:
        raise ValueError(f"share must be positive, not {share}")
    hierarchy = find_hierarchy()
    if hierarchy.version == 2:
        _enable_cpu_v2(hierarchy)
    groups: list[CpuGroup] = []
    try:
        for n in range(count):
            groups.append(_create(hierarchy, f"{prefix}-{os.getpid()}-{n}", share))
        yield groups
    finally:
        errors = []
        for group in groups:
            try:
                group.remove()
            except CpuShareError as e:
                errors.append(str(e))
        if hierarchy.enabled_cpu:
            # Leave the machine as found; fails harmlessly if someone else uses it now.
            with contextlib.suppress(OSError):
                (hierarchy.root / "cgroup.subtree_control").write_text("-cpu\n")
        if errors:
            raise CpuShareError("; ".join(errors))


def process_tree(root_pid: int) -> list[int]:
    """``root_pid`` and all its descendants, from /proc's parent pids."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields follow the last ")".
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found
