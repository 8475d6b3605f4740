"""The on-disk layout of one task directory, shared by the local backend and its supervisor.

Standard library only: the supervisor imports this and must start fast.

A task directory holds ``spec.json`` (written by the backend), ``supervisor.pid``,
``child.pid``, ``cgroups.json``, ``stdout``, ``stderr``, ``supervisor.log``, ``kill.json``
(a kill request's grace; ``stop``/``snapshot`` for a VPS), ``vps.json`` (a VPS's SSH port), ``paused`` (present while paused) and, once the task has ended,
``exit.json``. The directory *is* the task's state: a restarted runner rebuilds everything
from it.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

SPEC = "spec.json"
SUPERVISOR_PID = "supervisor.pid"
CHILD_PID = "child.pid"
CGROUPS = "cgroups.json"
EXIT = "exit.json"
KILL = "kill.json"
VPS = "vps.json"
PAUSED = "paused"
SUPERVISOR_LOG = "supervisor.log"
WORK = "work"
STREAMS = ("stdout", "stderr")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename: readers never see half a file.

    No fsync: this guards against a killed writer, not against power loss (speed matters here).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """Read a JSON file; ``None`` if it does not exist or is unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def read_pid(path: Path) -> int | None:
    """Read a pid file; ``None`` if absent or garbled."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def signal_name(returncode: int) -> str | None:
    """``SIGSEGV`` for a return code of ``-11``; ``None`` for a normal exit."""
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def final_state(info: dict[str, Any]) -> tuple[str, int | None, str | None]:
    """Map an ``exit.json`` record onto ``(state, exit_code, reason)``.

    oom → ``killed_oom``; stop requested (a VPS) → ``stopped``; kill requested → ``killed``;
    exit 0 → ``completed``; else ``failed``.
    """
    code = info.get("exit_code")
    exit_code = code if isinstance(code, int) else None
    if info.get("start_error"):
        return "failed", exit_code, str(info["start_error"])
    if info.get("oom"):
        return "killed_oom", exit_code, "out of memory (killed by the kernel)"
    if info.get("stopped"):
        return "stopped", exit_code, str(info.get("reason") or "stopped on request")
    if info.get("killed"):
        return "killed", exit_code, "killed on request"
    if exit_code == 0:
        return "completed", 0, None
    if exit_code is None:
        return "failed", None, str(info.get("reason") or "unknown exit status")
    if exit_code < 0:
        return "failed", exit_code, f"killed by signal {signal_name(exit_code)}"
    return "failed", exit_code, f"exit code {exit_code}"
