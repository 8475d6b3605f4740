"""The local backend: plain processes, each under its own supervisor (see ``supervisor.py``).

All state lives in ``{state_dir}/tasks/{task_id}/``; a new backend on the same state dir
finds running tasks again and reports finished ones with their real exit status.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kohakuriver_lab.protocol import RunnerTaskState, TaskSpec
from kohakuriver_lab.runner import taskdir
from kohakuriver_lab.runner.backends.base import TaskEvent
from kohakuriver_lab.runner.backends.taskdirs import ALIVE, TaskDirBackend
from kohakuriver_lab.runner.cgroups import TaskCgroups
from kohakuriver_lab.runner.confinement import Confinement
from kohakuriver_lab.runner.errors import (
    InvalidTaskState,
    TaskNotFound,
    TaskStartError,
    translate_os_error,
)

SUPERVISOR_MODULE = "kohakuriver_lab.runner.supervisor"
SECRET_ENV_PREFIX = "KOHAKURIVER_"


@dataclass
class _Watch:
    pidfd: int
    popen: subprocess.Popen[bytes] | None


class LocalBackend(TaskDirBackend):
    """Runs tasks as local processes with cgroups, CPU affinity and ``CUDA_VISIBLE_DEVICES``."""

    name = "local"
    supported_features = frozenset({"pause", "memory_limit", "cpu_pinning", "gpu"})
    start_timeout = 30.0
    LOST_REASON = "supervisor died; exit status unknown"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._watches: dict[int, _Watch] = {}
        self.confinement = Confinement(self.state_dir, self.options)
        self.log.info("local tasks run %s", self.confinement.describe())

    # ===== Lifecycle =====

    async def recover(self) -> None:
        for task_id in self._task_ids():
            if task_id in self._watches or (self._dir(task_id) / taskdir.EXIT).exists():
                continue
            pid = self._supervisor_pid(task_id)
            if pid is not None:
                self._watch(task_id, pid, None)
            else:
                self._report(task_id)  # records the loss
        self.log.info("recovered %d task(s) in %s", len(self._task_ids()), self.tasks_dir)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for watch in self._watches.values():
            loop.remove_reader(watch.pidfd)
            os.close(watch.pidfd)
        self._watches.clear()

    # ===== Orders =====

    async def start(self, spec: TaskSpec) -> None:
        task_id = spec.task_id
        path = self._dir(task_id)
        if task_id in self._starting or path.exists():
            return
        self._starting.add(task_id)
        try:
            popen, message = await self._spawn(spec, path)
        finally:
            self._starting.discard(task_id)
        if "started" in message:
            self._watch(task_id, popen.pid, popen)
            notes = [str(n) for n in message.get("notes") or []]
            reason = "; ".join(notes) if notes else None
            self.events.put_nowait(TaskEvent(task_id, "running", reason=reason))
            return
        await asyncio.get_running_loop().run_in_executor(None, popen.wait)
        info = taskdir.read_json(path / taskdir.EXIT)
        if not isinstance(info, dict):
            info = {"exit_code": None, "start_error": "supervisor failed (see supervisor.log)"}
            taskdir.write_json_atomic(path / taskdir.EXIT, info)
        _, exit_code, reason = taskdir.final_state(info)
        raise TaskStartError(reason or "start failed", exit_code)

    async def _spawn(
        self, spec: TaskSpec, path: Path
    ) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        loop = asyncio.get_running_loop()
        try:
            popen, read_fd = await loop.run_in_executor(None, self._spawn_sync, spec, path)
        except OSError as exc:
            raise translate_os_error(exc, f"cannot start task {spec.task_id}") from exc
        return popen, await self._read_status(read_fd)

    def _spawn_sync(self, spec: TaskSpec, path: Path) -> tuple[subprocess.Popen[bytes], int]:
        """Create the task dir and launch its supervisor; returns it and the status pipe."""
        user = self.confinement.user_for(spec.owner)
        self.confinement.check_workdir(spec.workdir, user)
        path.mkdir(mode=0o700, parents=True)
        data = spec.model_dump(mode="json")
        data["node"] = self.node
        data["host_url"] = self.options.get("host_url")
        data["use_cgroups"] = bool(self.options.get("use_cgroups", True))
        if spec.task_type == "notebook" and data["command"][0] == "python":
            data["command"][0] = sys.executable  # notebook jobs run in the runner's Python
        data.update(self.confinement.prepare(path, spec, user))
        taskdir.write_json_atomic(path / taskdir.SPEC, data)
        for stream in taskdir.STREAMS:
            (path / stream).touch(mode=0o600)
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_ENV_PREFIX)}
        argv = [sys.executable, "-m", SUPERVISOR_MODULE, str(path), "--status-fd", str(write_fd)]
        try:
            with open(path / taskdir.SUPERVISOR_LOG, "ab") as log_file:
                popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    pass_fds=(write_fd,),
                    start_new_session=True,
                    env=env,
                )
        except OSError:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return popen, read_fd

    async def _read_status(self, fd: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        buf = bytearray()

        def on_readable() -> None:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                return
            buf.extend(chunk)
            if (not chunk or b"\n" in buf) and not done.done():
                done.set_result(None)

        os.set_blocking(fd, False)
        loop.add_reader(fd, on_readable)
        try:
            await asyncio.wait_for(done, self.start_timeout)
        except asyncio.TimeoutError:
            return {}
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        line = bytes(buf).split(b"\n", 1)[0]
        try:
            message = json.loads(line) if line else {}
        except ValueError:
            return {}
        return message if isinstance(message, dict) else {}

    async def _send_kill(self, task_id: int, grace: float, paused: bool) -> None:
        self._signal_supervisor(task_id, signal.SIGTERM)  # it TERMs, waits, KILLs the group

    async def _apply_paused(self, task_id: int, paused: bool) -> None:
        path = self._dir(task_id)
        cgroups = TaskCgroups.from_json(taskdir.read_json(path / taskdir.CGROUPS))
        try:
            if cgroups.can_freeze:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, cgroups.set_frozen, paused)
            else:
                pgid = taskdir.read_pid(path / taskdir.CHILD_PID)
                if pgid is None:
                    raise TaskNotFound(f"task {task_id} has no process")
                os.killpg(pgid, signal.SIGSTOP if paused else signal.SIGCONT)
        except OSError as exc:
            what = f"cannot {'pause' if paused else 'resume'} task {task_id}"
            raise translate_os_error(exc, what) from exc
        if paused:
            (path / taskdir.PAUSED).touch()
        else:
            (path / taskdir.PAUSED).unlink(missing_ok=True)

    async def forget(self, task_id: int) -> None:
        path = self._dir(task_id)
        if not path.exists():
            return
        report = self._report(task_id)
        if report is not None and report.state in ALIVE:
            raise InvalidTaskState(f"task {task_id} is still {report.state}; kill it first")
        watch = self._watches.pop(task_id, None)
        if watch is not None:
            asyncio.get_running_loop().remove_reader(watch.pidfd)
            os.close(watch.pidfd)
        await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, path, True)

    # ===== Internals =====

    def _live_state(self, task_id: int) -> RunnerTaskState | None:
        if task_id not in self._watches and self._supervisor_pid(task_id) is None:
            return None  # the supervisor died without an exit record
        return "paused" if (self._dir(task_id) / taskdir.PAUSED).exists() else "running"

    def _supervisor_pid(self, task_id: int) -> int | None:
        """The live supervisor's pid, checked against ``/proc`` to rule out pid reuse."""
        path = self._dir(task_id)
        pid = taskdir.read_pid(path / taskdir.SUPERVISOR_PID)
        if pid is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        return pid if os.fsencode(str(path)) in cmdline else None

    def _signal_supervisor(self, task_id: int, sig: int) -> None:
        watch = self._watches.get(task_id)
        try:
            if watch is not None:
                signal.pidfd_send_signal(watch.pidfd, sig)
                return
            pid = self._supervisor_pid(task_id)
            if pid is None:
                raise TaskNotFound(f"task {task_id} has no live supervisor")
            os.kill(pid, sig)
        except ProcessLookupError:
            pass  # it is exiting; the exit watch reports it
        except OSError as exc:
            raise translate_os_error(exc, f"cannot signal task {task_id}") from exc

    def _watch(self, task_id: int, pid: int, popen: subprocess.Popen[bytes] | None) -> None:
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            self._on_exit(task_id)
            return
        if popen is None and self._supervisor_pid(task_id) != pid:
            os.close(pidfd)  # pid reused by another process: ours is gone
            self._on_exit(task_id)
            return
        self._watches[task_id] = _Watch(pidfd, popen)
        loop.add_reader(pidfd, self._on_exit, task_id)

    def _on_exit(self, task_id: int) -> None:
        watch = self._watches.pop(task_id, None)
        if watch is not None:
            asyncio.get_running_loop().remove_reader(watch.pidfd)
            os.close(watch.pidfd)
            if watch.popen is not None:
                watch.popen.wait()
        self._emit_final(task_id)
