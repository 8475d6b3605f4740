"""Per-task supervisor process (like conmon): ``python -m kohakuriver_lab.runner.supervisor DIR``.

Standard library only, so it starts in a few tens of milliseconds. It reads ``spec.json``,
creates the task's cgroups, spawns the command (argv, no shell) in its own process group,
reports ``started`` or a start error over the status pipe, waits for the command, writes
``exit.json`` atomically, kills leftovers, removes the cgroups and exits. SIGTERM asks it to
kill the task: TERM to the whole group, ``grace`` seconds, then KILL. It outlives the runner,
so tasks survive a runner restart.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

from kohakuriver_lab.runner import sandbox, taskdir
from kohakuriver_lab.runner.cgroups import TaskCgroups

log = logging.getLogger("kohakuriver.supervisor")

SECRET_ENV_PREFIX = "KOHAKURIVER_"
DEFAULT_PASS_ENV = (
    "PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ",
    # the node's network set-up: how tasks reach package registries through a proxy
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_INDEX_URL",
)  # fmt: skip
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

# ===== Set-up =====


def build_env(spec: dict[str, Any]) -> dict[str, str]:
    """The task's environment: only the variables in ``pass_env`` from the runner (never the
    host's or runner's own, e.g. ``JUPYTER_*`` or ``KOHAKURIVER_*``), the user's env, the
    identity's ``HOME``/``USER`` and the task variables."""
    env = {k: os.environ[k] for k in spec.get("pass_env", DEFAULT_PASS_ENV) if k in os.environ}
    if spec.get("path"):  # the runner's PATH less what a confined task cannot see
        env["PATH"] = str(spec["path"])
    env.setdefault("PATH", DEFAULT_PATH)
    for key in [k for k in env if k.startswith(SECRET_ENV_PREFIX)]:
        del env[key]
    user = spec.get("user") or {}
    if user.get("home"):
        env["HOME"] = str(user["home"])
    if user.get("name"):
        env["USER"] = env["LOGNAME"] = str(user["name"])
    env.update({str(k): str(v) for k, v in dict(spec.get("env") or {}).items()})
    env["KOHAKURIVER_TASK_ID"] = str(spec["task_id"])
    env["KOHAKURIVER_NODE"] = str(spec.get("node") or "")
    if spec.get("host_url"):  # where the job reaches the host (with its task token)
        env["KOHAKURIVER_URL"] = str(spec["host_url"])
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in spec.get("gpus") or [])
    return env


def _start_error(exc: BaseException, program: str) -> tuple[int, str]:
    if isinstance(exc, sandbox.ExecFailed):
        if exc.errno == errno.ENOENT:
            return 127, f"command not found: {program}"
        if exc.errno == errno.EACCES:
            return 126, f"permission denied: {program}"
        return 126, f"cannot start {program}: {exc.strerror or exc}"
    if isinstance(exc, sandbox.SandboxError):
        return 126, f"cannot confine the task: {exc}"
    if isinstance(exc, OSError):
        return 126, f"cannot start {program}: {exc.strerror or exc}"
    return 126, f"cannot start {program}: {exc}"


# ===== Supervision =====


class Supervisor:
    """Runs one task to its end."""

    def __init__(self, task_dir: Path, status_fd: int | None) -> None:
        self.dir = task_dir
        self.status_fd = status_fd
        self.kill_requested = False
        self.kill_deadline: float | None = None
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake_r = wake_r
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.kill_requested = True

    def _status(self, message: dict[str, Any]) -> None:
        if self.status_fd is None:
            return
        try:
            os.write(self.status_fd, (json.dumps(message) + "\n").encode())
            os.close(self.status_fd)
        except OSError:
            pass
        self.status_fd = None

    def run(self) -> int:
        (self.dir / taskdir.SUPERVISOR_PID).write_text(str(os.getpid()))
        spec = taskdir.read_json(self.dir / taskdir.SPEC)
        if not isinstance(spec, dict):
            return self._fail(None, "spec.json missing or unreadable", None)
        started = time.time()
        memory = spec.get("memory")
        cores = [int(c) for c in spec.get("cores") or []]
        if spec.get("use_cgroups", True):
            cgroups = TaskCgroups.create(f"task-{spec['task_id']}", memory, cores, spec.get("numa"))
        else:
            cgroups = TaskCgroups(0, {}, ["cgroups turned off (use_cgroups=False)"])
        notes = list(cgroups.notes) + list(spec.get("notes") or [])
        rlimit_as = None
        if memory is not None and not cgroups.memory_limited:
            rlimit_as = int(memory)
            notes.append("memory limit enforced with RLIMIT_AS (no writable memory cgroup)")
            log.warning("no writable memory cgroup; using RLIMIT_AS (%s)", "; ".join(notes))
        taskdir.write_json_atomic(self.dir / taskdir.CGROUPS, cgroups.to_json())
        argv = [str(a) for a in spec["command"]]
        workdir = Path(spec["workdir"]) if spec.get("workdir") else self.dir / taskdir.WORK
        if not workdir.is_dir():
            cgroups.remove()
            return self._fail(None, f"working directory not found: {workdir}", started)
        plan = sandbox.SandboxPlan.from_json(spec.get("sandbox"))
        try:
            with open(self.dir / "stdout", "ab") as out, open(self.dir / "stderr", "ab") as err:
                command = sandbox.Command(
                    argv,
                    build_env(spec),
                    str(workdir),
                    out.fileno(),
                    err.fileno(),
                    cgroups.join,
                    cores,
                    rlimit_as,
                )
                child = sandbox.start(plan, command)
        except OSError as exc:
            code, reason = _start_error(exc, argv[0])
            log.info("start failed: %s", reason)
            cgroups.remove()
            return self._fail(code, reason, started)
        (self.dir / taskdir.CHILD_PID).write_text(str(child.pid))
        self._status({"started": child.pid, "notes": notes})
        log.info("started pid %d: %s", child.pid, argv)
        returncode = self._wait(child, cgroups, float(spec.get("kill_grace", 10.0)))
        oom = cgroups.oom_killed()
        self._kill_leftovers(child.pid, cgroups)
        info = {
            "exit_code": returncode,
            "signal": taskdir.signal_name(returncode),
            "oom": oom,
            "killed": self.kill_requested,
            "started_at": started,
            "finished_at": time.time(),
            "notes": notes,
        }
        taskdir.write_json_atomic(self.dir / taskdir.EXIT, info)
        log.info("exited: %s", info)
        cgroups.remove()
        return 0

    def _fail(self, code: int | None, reason: str, started: float | None) -> int:
        now = time.time()
        info = {"exit_code": code, "start_error": reason, "started_at": started or now}
        info["finished_at"] = now
        taskdir.write_json_atomic(self.dir / taskdir.EXIT, info)
        self._status({"error": reason, "exit_code": code})
        return 0

    def _wait(self, child: sandbox.Started, cgroups: TaskCgroups, grace: float) -> int:
        pidfd = os.pidfd_open(child.pid)
        try:
            while True:
                if self.kill_requested and self.kill_deadline is None:
                    grace = self._grace(grace)
                    self._terminate(child.pid, cgroups)
                    self.kill_deadline = time.monotonic() + grace
                timeout = None
                if self.kill_deadline is not None:
                    timeout = max(0.0, self.kill_deadline - time.monotonic())
                    if timeout == 0.0:
                        self._signal_group(child.pid, signal.SIGKILL)
                        cgroups.kill_all()
                        self.kill_deadline = float("inf")
                        timeout = None
                ready, _, _ = select.select([pidfd, self.wake_r], [], [], timeout)
                if self.wake_r in ready:
                    try:
                        os.read(self.wake_r, 512)
                    except OSError:
                        pass
                if pidfd in ready:
                    _, status = os.waitpid(child.pid, 0)
                    return child.exit_code(status)
        finally:
            os.close(pidfd)

    def _grace(self, default: float) -> float:
        request = taskdir.read_json(self.dir / taskdir.KILL)
        if isinstance(request, dict) and isinstance(request.get("grace"), (int, float)):
            return max(0.0, float(request["grace"]))
        return default

    def _terminate(self, pgid: int, cgroups: TaskCgroups) -> None:
        log.info("kill requested: SIGTERM to group %d", pgid)
        try:
            if cgroups.is_frozen():
                cgroups.set_frozen(False)
        except OSError:
            pass
        self._signal_group(pgid, signal.SIGTERM)
        self._signal_group(pgid, signal.SIGCONT)

    @staticmethod
    def _signal_group(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except OSError:
            pass

    def _kill_leftovers(self, pgid: int, cgroups: TaskCgroups) -> None:
        self._signal_group(pgid, signal.SIGCONT)
        self._signal_group(pgid, signal.SIGKILL)
        cgroups.kill_all()


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``supervisor TASK_DIR [--status-fd N]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    status_fd = None
    if "--status-fd" in args:
        i = args.index("--status-fd")
        status_fd = int(args[i + 1])
        del args[i : i + 2]
    task_dir = Path(args[0]).resolve()
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        return Supervisor(task_dir, status_fd).run()
    except Exception:
        log.exception("supervisor crashed")
        return 1


if __name__ == "__main__":
    sys.exit(main())
