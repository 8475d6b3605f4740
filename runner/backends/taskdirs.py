"""What backends that keep each task in a directory share: ``{state_dir}/tasks/{id}/`` holds
the task's ``stdout``/``stderr`` and, once it ended, ``exit.json`` (see ``taskdir``)."""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any

from kohakuriver_lab.models import LogStream
from kohakuriver_lab.protocol import RunnerTaskState, TaskReport
from kohakuriver_lab.runner import taskdir
from kohakuriver_lab.runner.backends.base import Backend, TaskEvent
from kohakuriver_lab.runner.errors import InvalidTaskState, TaskNotFound

ALIVE = ("running", "paused")
"""Task states that are not final."""


class TaskDirBackend(Backend):
    """A backend whose tasks live in per-task directories under ``state_dir/tasks``."""

    LOST_REASON = "exit status unknown"
    """The reason given when a task is gone without an exit record."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tasks_dir = self.state_dir / "tasks"
        self.tasks_dir.mkdir(parents=True, exist_ok=True)
        self._starting: set[int] = set()

    @abc.abstractmethod
    def _live_state(self, task_id: int) -> RunnerTaskState | None:
        """``running``/``paused`` for a task without an exit record, ``None`` if it is gone."""

    @abc.abstractmethod
    async def _send_kill(self, task_id: int, grace: float, paused: bool) -> None:
        """Deliver a kill (TERM, ``grace`` seconds, KILL) to a live task."""

    @abc.abstractmethod
    async def _apply_paused(self, task_id: int, paused: bool) -> None:
        """Freeze or thaw a live task."""

    # ===== Orders =====

    async def kill(
        self, task_id: int, grace: float, *, stop: bool = False, snapshot: bool = False
    ) -> None:
        report = self._require(task_id)
        if report.state not in ALIVE:
            return
        # recorded first: whoever sees the task end knows it was killed (or stopped)
        order = {"grace": grace, "stop": stop, "snapshot": snapshot}
        taskdir.write_json_atomic(self._dir(task_id) / taskdir.KILL, order)
        await self._send_kill(task_id, grace, report.state == "paused")

    async def pause(self, task_id: int) -> None:
        await self._set_paused(task_id, True)

    async def resume(self, task_id: int) -> None:
        await self._set_paused(task_id, False)

    async def _set_paused(self, task_id: int, paused: bool) -> None:
        report = self._require(task_id)
        if report.state == ("paused" if paused else "running"):
            return
        if report.state not in ALIVE:
            raise InvalidTaskState(f"task {task_id} has ended ({report.state})")
        await self._apply_paused(task_id, paused)
        self.events.put_nowait(TaskEvent(task_id, "paused" if paused else "running"))

    # ===== Inspection =====

    def knows(self, task_id: int) -> bool:
        return task_id in self._starting or self._dir(task_id).exists()

    async def list_tasks(self) -> list[TaskReport]:
        reports = (self._report(t) for t in self._task_ids())
        return [r for r in reports if r is not None]

    def log_sizes(self, task_id: int) -> dict[LogStream, int]:
        sizes: dict[LogStream, int] = {}
        for stream in LogStream:
            try:
                sizes[stream] = os.stat(self._dir(task_id) / stream.value).st_size
            except OSError:
                sizes[stream] = 0
        return sizes

    def read_log(self, task_id: int, stream: LogStream, offset: int, max_bytes: int) -> bytes:
        try:
            with open(self._dir(task_id) / LogStream(stream).value, "rb") as fh:
                fh.seek(offset)
                return fh.read(max_bytes)
        except FileNotFoundError:
            return b""

    # ===== Internals =====

    def _dir(self, task_id: int) -> Path:
        return self.tasks_dir / str(task_id)

    def _task_ids(self) -> list[int]:
        try:
            return sorted(int(p.name) for p in self.tasks_dir.iterdir() if p.name.isdigit())
        except OSError:
            return []

    def _report(self, task_id: int) -> TaskReport | None:
        """The task's state from its directory (``None``: unknown or still starting)."""
        path = self._dir(task_id)
        if task_id in self._starting or not path.is_dir():
            return None
        info = taskdir.read_json(path / taskdir.EXIT)
        if not isinstance(info, dict):
            live = self._live_state(task_id)
            if live is not None:
                return TaskReport(
                    task_id=task_id,
                    state=live,
                    log_sizes=self.log_sizes(task_id),
                    ssh_port=self._ssh_port(task_id),
                )
            info = taskdir.read_json(path / taskdir.EXIT)  # it may have just finished
            if not isinstance(info, dict):
                info = {"exit_code": None, "reason": self.LOST_REASON}
                taskdir.write_json_atomic(path / taskdir.EXIT, info)
        state, exit_code, reason = taskdir.final_state(info)
        return TaskReport(
            task_id=task_id,
            state=state,  # type: ignore[arg-type]
            exit_code=exit_code,
            reason=reason,
            log_sizes=self.log_sizes(task_id),
        )

    def _ssh_port(self, task_id: int) -> int | None:
        """A VPS's SSH port on this node (``vps.json``), if it has one."""
        info = taskdir.read_json(self._dir(task_id) / taskdir.VPS)
        port = info.get("ssh_port") if isinstance(info, dict) else None
        return port if isinstance(port, int) else None

    def _emit_final(self, task_id: int) -> None:
        """Queue the task's final event, if it has ended."""
        report = self._report(task_id)
        if report is not None and report.state not in ALIVE:
            self.events.put_nowait(
                TaskEvent(task_id, report.state, report.exit_code, report.reason)
            )

    def _require(self, task_id: int) -> TaskReport:
        report = self._report(task_id)
        if report is None:
            raise TaskNotFound(f"unknown task {task_id}")
        return report
