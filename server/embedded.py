"""The embedded runner: a runner process for the host's own machine, started by the host."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from traitlets import Bool, Float, List, Unicode
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.models import ACTIVE_STATUSES

from .backend_probe import embedded_backends
from .db.orm import Task

EMBEDDED_TOKEN_NAME = "embedded-runner"


def active_tasks_on(session: Session, node: str) -> int:
    """The number of assigning, running or paused tasks on ``node``."""
    active = [s.value for s in ACTIVE_STATUSES]
    query = select(func.count()).select_from(Task).where(Task.node == node)
    return int(session.scalar(query.where(Task.status.in_(active))) or 0)


class EmbeddedRunner(LoggingConfigurable):
    """Starts ``python -m kohakuriver_lab.runner`` next to the host and restarts it if it dies."""

    node_name = Unicode(
        "",
        config=True,
        help="Node name of the embedded runner (default: this machine's host name).",
    )
    backend = Unicode(
        "",
        config=True,
        help="Backends of the embedded runner (e.g. 'local', 'docker,local'). Default: "
        "'docker,local' when a Docker daemon answers a ping at start, else 'local'.",
    )
    task_user = Unicode(
        "auto", config=True, help="Unix identity of its local tasks (RunnerApp.task_user)."
    )
    allowed_workdirs = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        config=True,
        help="Node directories its local tasks may name as workdir (RunnerApp.allowed_workdirs).",
    )
    restart_delay = Float(2.0, config=True, help="Seconds before restarting a runner that died.")
    stop_tasks_on_exit = Bool(
        False,
        config=True,
        help="Kill the embedded node's running and paused tasks when the server stops (for a "
        "laptop). Default: they keep running and the next start adopts them (for a host).",
    )
    exit_kill_grace = Float(
        5.0, config=True, help="With stop_tasks_on_exit: seconds between SIGTERM and SIGKILL."
    )

    def __init__(self, host_url: str, token: str, state_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._host_url = host_url
        self._token = token
        self._state_dir = state_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False
        self._backend = "local"

    @property
    def name(self) -> str:
        """The node name the runner registers as."""
        return self.node_name or socket.gethostname().split(".")[0]

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KOHAKURIVER_")}
        env["KOHAKURIVER_RUNNER_TOKEN"] = self._token  # never on the command line
        argv = [
            sys.executable,
            "-m",
            "kohakuriver_lab.runner",
            "--host-url",
            self._host_url,
            "--name",
            self.name,
            "--backend",
            self._backend,
            "--state-dir",
            self._state_dir,
            # the host's data dir (database, keys, logs; the state dir lives in it) is never
            # visible to a task
            f"--RunnerApp.hidden_paths={os.path.dirname(os.path.abspath(self._state_dir))}",
            f"--RunnerApp.task_user={self.task_user}",
        ]
        argv += [f"--RunnerApp.allowed_workdirs={p}" for p in self.allowed_workdirs or []]
        if self.stop_tasks_on_exit:
            argv += [
                "--RunnerApp.kill_tasks_on_exit=True",
                f"--RunnerApp.exit_kill_grace={self.exit_kill_grace}",
            ]
        self.log.info("starting embedded runner %s (backends %s)", self.name, self._backend)
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True)

    def start(self) -> None:
        """Start the runner and a watcher that restarts it."""
        if self.backend:
            self._backend = self.backend
            self.log.info("embedded runner backends %s (EmbeddedRunner.backend)", self.backend)
        else:
            self._backend, why = embedded_backends()
            self.log.info(
                "embedded runner backends %s: %s (EmbeddedRunner.backend sets them)",
                self._backend,
                why,
            )
        self.log.info(
            "its tasks %s when the server stops (EmbeddedRunner.stop_tasks_on_exit = %s)",
            "are killed" if self.stop_tasks_on_exit else "keep running",
            self.stop_tasks_on_exit,
        )
        self._process = self._spawn()
        self._watch = asyncio.ensure_future(self._supervise())

    async def _supervise(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.5)
            process = self._process
            if process is None or process.poll() is None:
                continue
            if self._stopping:
                return
            self.log.warning("embedded runner exited with %s; restarting", process.returncode)
            await asyncio.sleep(self.restart_delay)
            if not self._stopping:
                self._process = self._spawn()

    async def stop(self, active_tasks: int = 0) -> None:
        """Stop the runner; its ``active_tasks`` keep running under their supervisors (and
        are adopted at the next start), unless :attr:`stop_tasks_on_exit` kills them."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
        if self.stop_tasks_on_exit:
            if active_tasks:
                self.log.info(
                    "stopping the %d task(s) of node %s with the server "
                    "(EmbeddedRunner.stop_tasks_on_exit)",
                    active_tasks,
                    self.name,
                )
        elif active_tasks:
            self.log.warning(
                "%d task(s) of node %s keep running after the server stops and are adopted "
                "at the next start (c.EmbeddedRunner.stop_tasks_on_exit = True stops them "
                "with the server; %%kohaku kill ID stops one)",
                active_tasks,
                self.name,
            )
        process = self._process
        if process is None or process.poll() is not None:
            return
        timeout = 10.0 + (self.exit_kill_grace + 5 if self.stop_tasks_on_exit else 0)
        process.send_signal(signal.SIGTERM)
        for _ in range(int(timeout * 10)):
            if process.poll() is not None:
                return
            await asyncio.sleep(0.1)
        process.kill()
        process.wait()
