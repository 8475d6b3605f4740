"""Per-task cgroups for the local backend (v1 or v2, whichever is writable).

Standard library only (the supervisor imports it). Task cgroups are created under the
*caller's own* cgroup in each hierarchy (``<own>/kohakuriver/task-<id>``), so the runner
never needs write access to the root of a hierarchy.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("kohakuriver.runner.cgroups")

PROC_CGROUP = Path("/proc/self/cgroup")
PROC_MOUNTS = Path("/proc/self/mounts")
V1_CONTROLLERS = ("memory", "freezer", "cpuset")

# ===== Discovery =====


def _mounts() -> tuple[dict[str, Path], Path | None]:
    """v1 controller → mount point, and the cgroup2 mount point (if any)."""
    v1: dict[str, Path] = {}
    v2: Path | None = None
    try:
        lines = PROC_MOUNTS.read_text().splitlines()
    except OSError:
        return v1, v2
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        mount, fstype, options = parts[1], parts[2], parts[3].split(",")
        if fstype == "cgroup":
            for opt in options:
                if opt in V1_CONTROLLERS:
                    v1.setdefault(opt, Path(mount))
        elif fstype == "cgroup2" and v2 is None:
            v2 = Path(mount)
    return v1, v2


def _own_paths() -> dict[str, str]:
    """Controller → own cgroup path from ``/proc/self/cgroup`` (v2 under the key ``""``)."""
    own: dict[str, str] = {}
    try:
        lines = PROC_CGROUP.read_text().splitlines()
    except OSError:
        return own
    for line in lines:
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        for ctrl in parts[1].split(","):
            own[ctrl] = parts[2]
    return own


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _read(path: Path) -> str:
    with open(path) as fh:
        return fh.read()


def _expand(ranges: str) -> list[str]:
    """``"0-2,5"`` → ``["0", "1", "2", "5"]``."""
    out: list[str] = []
    for part in ranges.strip().split(","):
        if "-" in part:
            low, high = part.split("-", 1)
            out.extend(str(i) for i in range(int(low), int(high) + 1))
        elif part:
            out.append(part)
    return out


def _inherit_cpuset(path: Path) -> None:
    """A new v1 cpuset cgroup starts with no cpus and mems: copy its parent's."""
    for key in ("cpuset.cpus", "cpuset.mems"):
        if not _read(path / key).strip():
            _write(path / key, _read(path.parent / key).strip())


# ===== Task cgroups =====


class TaskCgroups:
    """The cgroup directories of one task; every method tolerates vanished directories."""

    def __init__(self, version: int, paths: dict[str, Path], notes: list[str] | None = None):
        self.version = version  # 0: none, 1: v1, 2: v2
        self.paths = paths  # v1: controller → dir; v2: {"unified": dir}
        self.notes = notes or []

    # ----- creation -----

    @classmethod
    def create(
        cls,
        name: str,
        memory: int | None,
        cores: list[int] | None = None,
        numa: int | None = None,
    ) -> TaskCgroups:
        """Create the task's cgroups; falls back to ``version 0`` (no cgroup) with a note.

        With ``cores``, a cpuset cgroup confines the task to them: unlike CPU affinity, the
        task cannot widen it (``sched_setaffinity`` is intersected with the cpuset)."""
        v1_mounts, v2_mount = _mounts()
        own = _own_paths()
        notes: list[str] = []
        if "memory" in v1_mounts:
            paths: dict[str, Path] = {}
            for ctrl in V1_CONTROLLERS:
                if ctrl not in v1_mounts or ctrl not in own or (ctrl == "cpuset" and not cores):
                    continue
                base = v1_mounts[ctrl] / own[ctrl].lstrip("/") / "kohakuriver"
                path = base / name
                try:
                    base.mkdir(parents=True, exist_ok=True)
                    if ctrl == "cpuset":
                        _inherit_cpuset(base)
                    path.mkdir(exist_ok=True)
                    paths[ctrl] = path
                except OSError as exc:
                    notes.append(f"cannot create {ctrl} cgroup {path}: {exc.strerror}")
            group = cls(1, paths, notes)
            if "memory" in paths:
                try:
                    group._limit_v1(memory)
                except OSError as exc:
                    notes.append(f"cannot set memory limit: {exc.strerror}")
                    group.remove()
                else:
                    if "cpuset" in paths and cores:
                        group._pin_v1(cores, numa)
                    return group
            elif paths:
                group.remove()
        if v2_mount is not None and "" in own:
            v2_group = cls._create_v2(v2_mount, own[""], name, memory, notes)
            if v2_group is not None:
                return v2_group
        return cls(0, {}, notes or ["no writable memory cgroup"])

    def _limit_v1(self, memory: int | None) -> None:
        if memory is None:
            return
        mem = self.paths["memory"]
        _write(mem / "memory.limit_in_bytes", str(memory))
        memsw = mem / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            try:
                _write(memsw, str(memory))
            except OSError as exc:
                self.notes.append(f"cannot limit swap: {exc.strerror}")

    def _pin_v1(self, cores: list[int], numa: int | None) -> None:
        """Confine to ``cores``; without a usable cpuset, affinity alone pins (with a note)."""
        path = self.paths["cpuset"]
        try:
            mems = _read(path.parent / "cpuset.mems").strip()
            if numa is not None and str(numa) in _expand(mems):
                mems = str(numa)
            _write(path / "cpuset.mems", mems)  # before cpus: an empty cpuset admits no task
            _write(path / "cpuset.cpus", ",".join(str(c) for c in sorted(set(cores))))
        except (OSError, ValueError) as exc:
            self.notes.append(f"cores pinned by affinity only (cpuset: {exc})")
            del self.paths["cpuset"]
            try:
                path.rmdir()
            except OSError:
                pass

    @classmethod
    def _create_v2(
        cls, mount: Path, own: str, name: str, memory: int | None, notes: list[str]
    ) -> TaskCgroups | None:
        base = mount / own.lstrip("/") / "kohakuriver"
        path = base / name
        try:
            if "memory" not in _read(mount / own.lstrip("/") / "cgroup.controllers").split():
                notes.append("cgroup v2 has no memory controller here")
                return None
            base.mkdir(exist_ok=True)
            if "memory" not in _read(base / "cgroup.subtree_control").split():
                _write(base / "cgroup.subtree_control", "+memory")
            path.mkdir(exist_ok=True)
            if memory is not None:
                _write(path / "memory.max", str(memory))
                swap = path / "memory.swap.max"
                if swap.exists():
                    _write(swap, "0")
        except OSError as exc:
            notes.append(f"cgroup v2 not usable: {exc.strerror or exc}")
            try:
                path.rmdir()
            except OSError:
                pass
            return None
        return cls(2, {"unified": path}, notes)

    # ----- persistence -----

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "paths": {k: str(v) for k, v in self.paths.items()},
            "notes": self.notes,
        }

    @classmethod
    def from_json(cls, data: Any) -> TaskCgroups:
        if not isinstance(data, dict):
            return cls(0, {})
        paths = {str(k): Path(v) for k, v in dict(data.get("paths") or {}).items()}
        return cls(int(data.get("version") or 0), paths, list(data.get("notes") or []))

    # ----- use -----

    @property
    def memory_limited(self) -> bool:
        return self.version == 2 or "memory" in self.paths

    @property
    def can_freeze(self) -> bool:
        return self.version == 2 or "freezer" in self.paths

    def join(self) -> None:
        """Move the calling process into every task cgroup (run in the child before exec)."""
        for path in self.paths.values():
            _write(path / "cgroup.procs", "0")

    def procs(self) -> list[int]:
        pids: set[int] = set()
        for path in self.paths.values():
            try:
                pids.update(int(p) for p in _read(path / "cgroup.procs").split())
            except (OSError, ValueError):
                pass
        return sorted(pids)

    def oom_killed(self) -> bool:
        """Whether the kernel OOM-killed anything in the task's memory cgroup."""
        if self.version == 1 and "memory" in self.paths:
            name, key = "memory.oom_control", "oom_kill"
            path = self.paths["memory"]
        elif self.version == 2:
            name, key, path = "memory.events", "oom_kill", self.paths["unified"]
        else:
            return False
        try:
            for line in _read(path / name).splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0] == key:
                    return int(parts[1]) > 0
        except (OSError, ValueError):
            pass
        return False

    def set_frozen(self, frozen: bool, timeout: float = 2.0) -> bool:
        """Freeze or thaw the task; ``False`` when no freezer is available."""
        if self.version == 1 and "freezer" in self.paths:
            state = self.paths["freezer"] / "freezer.state"
            want = "FROZEN" if frozen else "THAWED"
            _write(state, want)
            deadline = time.monotonic() + timeout
            while _read(state).strip() != want and time.monotonic() < deadline:
                time.sleep(0.005)
                _write(state, want)
            return True
        if self.version == 2:
            _write(self.paths["unified"] / "cgroup.freeze", "1" if frozen else "0")
            return True
        return False

    def is_frozen(self) -> bool:
        try:
            if self.version == 1 and "freezer" in self.paths:
                return _read(self.paths["freezer"] / "freezer.state").strip() != "THAWED"
            if self.version == 2:
                return _read(self.paths["unified"] / "cgroup.freeze").strip() == "1"
        except OSError:
            pass
        return False

    def kill_all(self) -> None:
        """SIGKILL every process left in the task's cgroups (thawing them first)."""
        try:
            if self.is_frozen():
                self.set_frozen(False)
        except OSError:
            pass
        for pid in self.procs():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def remove(self, timeout: float = 1.0) -> None:
        """Remove the task's cgroup directories (retrying while dying processes leave)."""
        deadline = time.monotonic() + timeout
        for path in self.paths.values():
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if time.monotonic() >= deadline:
                        log.warning("cannot remove cgroup %s: %s", path, exc.strerror)
                        break
                    self.kill_all()
                    time.sleep(0.01)
