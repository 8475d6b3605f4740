"""One watcher thread per task container: live logs into the task dir, then the exit status.

The container's stdout and stderr are followed separately (two streams, so no demuxing is
needed) and appended to ``{task dir}/stdout`` and ``stderr`` as they arrive, where the agent's
offset-based log shipping picks them up. A resumed watcher (runner restart, broken stream)
replays the streams from the first byte and skips what the files already hold; the ``local``
log driver keeps raw bytes, so the replay matches exactly.

When both streams have ended the container has stopped: the watcher waits for it, reads
``State.ExitCode``/``State.OOMKilled``, writes ``exit.json`` and calls ``on_exit``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kohakuriver_lab.runner import taskdir
from kohakuriver_lab.runner.backends.docker.engine import Engine, LogStream
from kohakuriver_lab.runner.backends.docker.errors import ContainerNotFoundError, DockerError

RETRY_DELAY = 1.0


class ContainerWatch:
    """Follows one container until it exits (or :meth:`close` is called)."""

    def __init__(
        self,
        *,
        engine: Engine,
        task_id: int,
        name: str,
        path: Path,
        on_exit: Callable[[int], None],
        log: logging.Logger,
        snapshot: Callable[[int], str] | None = None,
    ) -> None:
        self.engine = engine
        self.snapshot = snapshot
        self.task_id = task_id
        self.name = name
        self.path = path
        self.on_exit = on_exit
        self.log = log
        self.paused = False
        self._closed = threading.Event()
        self._streams: list[LogStream] = []
        self._streams_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"docker-watch-{task_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop following (the container keeps running); no exit is reported afterwards."""
        self._closed.set()
        with self._streams_lock:
            streams, self._streams = self._streams, []
        for stream in streams:
            try:
                stream.close()
            except Exception:  # best effort on a dying connection
                pass

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # ===== The thread =====

    def _run(self) -> None:
        try:
            info = self._follow()
        except Exception as exc:  # never let the thread die silently
            self.log.exception("watcher of task %s failed", self.task_id)
            info = {"exit_code": None, "reason": f"runner lost track of the container: {exc}"}
        if info is None or self.closed:
            return
        if taskdir.read_json(self.path / taskdir.EXIT) is None:
            order = taskdir.read_json(self.path / taskdir.KILL)
            info["killed"] = order is not None
            if isinstance(order, dict) and order.get("stop"):
                info["stopped"] = True
                info["reason"] = self._stop_reason(bool(order.get("snapshot")))
            taskdir.write_json_atomic(self.path / taskdir.EXIT, info)
        if not self.closed:
            self.on_exit(self.task_id)

    def _stop_reason(self, snapshot: bool) -> str:
        """Take the snapshot a stop asked for (the container has stopped); the reason."""
        if not snapshot or self.snapshot is None:
            return "stopped on request (no snapshot)"
        try:
            image = self.snapshot(self.task_id)
        except DockerError as exc:
            self.log.error("snapshot of VPS %s failed: %s", self.task_id, exc.message)
            return f"stopped on request; the snapshot failed: {exc.message}"
        return f"stopped on request; snapshot {image}"

    def _follow(self) -> dict[str, Any] | None:
        """Pump logs until the container stops; its exit record (``None`` once closed)."""
        warned = False
        while not self.closed:
            try:
                self._pump_both()
                if self.closed:
                    return None
                state = self.engine.inspect(self.name)["State"]
                if state.get("Running") or state.get("Paused") or state.get("Restarting"):
                    self._closed.wait(RETRY_DELAY / 10)
                    continue  # the streams broke while it runs: follow again
                exit_code = self.engine.wait(self.name)
                state = self.engine.inspect(self.name)["State"]
            except ContainerNotFoundError:
                return {"exit_code": None, "reason": "container removed while the task ran"}
            except DockerError as exc:
                if not warned:
                    self.log.warning("task %s: %s; retrying", self.task_id, exc)
                    warned = True
                self._closed.wait(RETRY_DELAY)
                continue
            code = state.get("ExitCode", exit_code)
            return {
                "exit_code": int(code) if isinstance(code, int) else exit_code,
                "oom": bool(state.get("OOMKilled")),
                "error": state.get("Error") or None,
            }
        return None

    def _pump_both(self) -> None:
        """Follow stderr in a helper thread and stdout here until both end."""
        errors: list[BaseException] = []

        def pump_stderr() -> None:
            try:
                self._pump("stderr")
            except BaseException as exc:  # re-raised below
                errors.append(exc)

        helper = threading.Thread(target=pump_stderr, name=f"docker-stderr-{self.task_id}")
        helper.start()
        try:
            self._pump("stdout")
        finally:
            helper.join()
        if errors:
            raise errors[0]

    def _pump(self, stream_name: str) -> None:
        """Append the stream's bytes beyond what the file holds; returns when it ends."""
        path = self.path / stream_name
        stream = self.engine.logs(self.name, stream_name)
        with self._streams_lock:
            if self.closed:
                stream.close()
                return
            self._streams.append(stream)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                skip = os.fstat(fd).st_size
                for chunk in stream:
                    if self.closed:
                        return
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk, skip = chunk[skip:], 0
                    _write_all(fd, chunk)
            finally:
                os.close(fd)
        finally:
            with self._streams_lock:
                if stream in self._streams:
                    self._streams.remove(stream)
            stream.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
