"""Start one task's command confined: its own identity, PID/mount/IPC namespaces, no privileges.

Standard library only (the supervisor imports it and must start fast). Used by the
supervisor, which is one process per task, so it may call ``unshare(CLONE_NEWPID)`` on
itself: its next child, the *init* of the task's PID namespace, is PID 1 there.

With namespaces (the runner is root)::

    supervisor ── init (PID 1: own mount + IPC namespace, private /proc, hidden paths,
                   │     private /tmp and /dev/shm; reaps, reports the command's status)
                   └── command (setsid'd group of init; bounding set dropped, uid/gid of the
                                task's user, no_new_privs, stdio only, then execve)

Without namespaces (a runner that is not root runs tasks as itself) the command is the
supervisor's direct child. Either way the child is a process-group leader, so the supervisor
signals the whole task with ``killpg`` as before.

Failures before ``execve`` come back on a close-on-exec pipe, as ``subprocess`` does:
``exec:<errno>`` (the command could not be executed) or ``setup:<message>`` (the sandbox
could not be built). End of file without a word means the command is running.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
MAX_FD = 1 << 20
PRIVATE_TMP = ("/tmp", "/var/tmp")


class SandboxError(OSError):
    """The task's sandbox could not be built (a start error, never a silent fallback)."""

    def __str__(self) -> str:
        return str(self.strerror or super().__str__())


PLAN_FIELDS = (
    "uid", "gid", "groups", "namespaces", "hidden", "keep", "keep_ro", "private_tmp", "shm_size"
)  # fmt: skip


class SandboxPlan:
    """How one task is confined; stored in ``spec.json`` under ``sandbox`` by the backend.

    (A plain class: ``dataclasses`` costs the supervisor ~10 ms of import and class set-up.)"""

    def __init__(
        self,
        uid: int | None = None,  # None: the runner's own user (single-user node)
        gid: int | None = None,
        groups: Sequence[int] = (),
        namespaces: bool = False,
        hidden: Sequence[str] = (),  # covered by an empty read-only tmpfs
        keep: Sequence[str] = (),  # stay visible even inside a hidden path
        keep_ro: Sequence[str] = (),  # the same, read-only (e.g. the runner's Python)
        private_tmp: str | None = None,  # directory bind-mounted on /tmp and /var/tmp
        shm_size: str = "50%",  # tmpfs size= of the private /dev/shm
    ) -> None:
        self.uid, self.gid, self.groups = uid, gid, list(groups)
        self.namespaces = namespaces
        self.hidden, self.keep, self.keep_ro = list(hidden), list(keep), list(keep_ro)
        self.private_tmp, self.shm_size = private_tmp, shm_size

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in PLAN_FIELDS}

    @classmethod
    def from_json(cls, data: Any) -> SandboxPlan:
        if not isinstance(data, dict):
            return cls()
        return cls(**{k: v for k, v in data.items() if k in PLAN_FIELDS})


def _nothing() -> None:
    pass


class Command:
    """What to execute, with which fds and limits."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        stdout: int,
        stderr: int,
        join_cgroups: Callable[[], None] = _nothing,
        cores: Sequence[int] = (),
        rlimit_as: int | None = None,
    ) -> None:
        self.argv, self.env, self.cwd = argv, env, cwd
        self.stdout, self.stderr = stdout, stderr
        self.join_cgroups, self.cores, self.rlimit_as = join_cgroups, list(cores), rlimit_as


# ===== System calls (ctypes, loaded on first use) =====

_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        code = ctypes.get_errno()
        raise SandboxError(code, f"{what}: {os.strerror(code)}")


def unshare(flags: int) -> None:
    _check(_libc().unshare(flags), "unshare")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    enc = os.fsencode
    result = _libc().mount(
        enc(source) if source else None,
        enc(target),
        enc(fstype) if fstype else None,
        flags,
        enc(data) if data else None,
    )
    _check(result, f"mount {target}")


def _prctl(option: int, arg: int) -> int:
    return int(_libc().prctl(option, arg, 0, 0, 0))


# ===== Inside the task =====


def _within(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _build_mounts(plan: SandboxPlan) -> None:
    """Private /proc, hidden paths, private /tmp and /dev/shm (in the new mount namespace)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # directories used after the covering mounts are opened first and bound back from
    # their fds (/proc/self/fd/N names the directory itself, even when its path is covered)
    keep = []
    for path, read_only in [(p, False) for p in plan.keep] + [(p, True) for p in plan.keep_ro]:
        try:
            fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        keep.append((path, fd, read_only))
    tmp_fd = None
    if plan.private_tmp:
        tmp_fd = os.open(plan.private_tmp, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    covered = []
    for path in plan.hidden:
        if os.path.isdir(path) and not os.path.islink(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=16k")
            covered.append(path)
    if tmp_fd is not None:
        for path in PRIVATE_TMP:
            if os.path.isdir(path):
                _mount(f"/proc/self/fd/{tmp_fd}", path, None, MS_BIND | MS_REC)
                covered.append(path)
        os.close(tmp_fd)
    if os.path.isdir("/dev/shm"):
        _mount(
            "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={plan.shm_size}"
        )
    for path, fd, read_only in keep:  # inside a covered directory: back at its own path
        if _within(path, covered):
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            if read_only:
                _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)


def _drop_privileges(plan: SandboxPlan) -> None:
    if plan.uid is not None and os.geteuid() == 0:
        try:
            last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
        except (OSError, ValueError):
            last = 63
        for cap in range(last + 1):
            _prctl(PR_CAPBSET_DROP, cap)
        os.setgroups(plan.groups)
        gid = plan.gid if plan.gid is not None else plan.uid
        os.setresgid(gid, gid, gid)
        os.setresuid(plan.uid, plan.uid, plan.uid)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    if _prctl(PR_SET_NO_NEW_PRIVS, 1) != 0:
        raise SandboxError(errno.EPERM, "cannot set no_new_privs")


def _report(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode("utf-8", "replace")[:4000])
    except OSError:
        pass


def _exec_command(plan: SandboxPlan, cmd: Command, err_w: int) -> None:
    """In the command's process: stdio, cwd, identity, then execve. Never returns."""
    try:
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(cmd.stdout, 1)
        os.dup2(cmd.stderr, 2)
        os.closerange(3, err_w)
        os.closerange(err_w + 1, MAX_FD)
        if cmd.rlimit_as is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (cmd.rlimit_as, cmd.rlimit_as))
        if plan.namespaces or plan.uid is not None:  # else: the runner's own user, as is
            _drop_privileges(plan)
        try:
            os.chdir(cmd.cwd)
        except OSError as exc:
            raise SandboxError(
                exc.errno, f"cannot enter working directory {cmd.cwd}: {exc.strerror}"
            ) from None
    except BaseException as exc:
        _report(err_w, f"setup:{exc}")
        os._exit(126)
    try:
        os.execvpe(cmd.argv[0], cmd.argv, cmd.env)
    except OSError as exc:
        _report(err_w, f"exec:{exc.errno}")
    except BaseException as exc:
        _report(err_w, f"setup:{exc}")
    os._exit(127)


def _task_init(plan: SandboxPlan, cmd: Command, err_w: int, status_w: int) -> None:
    """PID 1 of the task's namespace: build the mounts, start the command, reap. Never returns."""
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)  # PID 1 ignores them; they reach the command
        os.setsid()
        cmd.join_cgroups()
        if cmd.cores:
            os.sched_setaffinity(0, cmd.cores)
        unshare(CLONE_NEWNS | CLONE_NEWIPC)
        _build_mounts(plan)
        child = os.fork()
    except BaseException as exc:
        _report(err_w, f"setup:{exc}")
        os._exit(126)
    if child == 0:
        os.close(status_w)
        _exec_command(plan, cmd, err_w)
    os.close(err_w)
    status = 0
    while True:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        if pid == child:
            status = os.waitstatus_to_exitcode(wait_status)
            break
    _report(status_w, f"{status}\n")
    os._exit(0)  # as PID 1 leaves, the kernel kills whatever the command left behind


def _direct_child(plan: SandboxPlan, cmd: Command, err_w: int) -> None:
    try:
        signal.set_wakeup_fd(-1)
        os.setsid()
        cmd.join_cgroups()
        if cmd.cores:
            os.sched_setaffinity(0, cmd.cores)
    except BaseException as exc:
        _report(err_w, f"setup:{exc}")
        os._exit(126)
    _exec_command(plan, cmd, err_w)


# ===== The supervisor's side =====


class Started:
    """A started task: the process-group leader to wait for and signal."""

    def __init__(self, pid: int, status_fd: int | None) -> None:
        self.pid = pid
        self.status_fd = status_fd  # init's report of the command's exit status (namespaces)

    def exit_code(self, wait_status: int) -> int:
        """The command's exit code (negative: killed by that signal)."""
        if self.status_fd is not None:
            text = _read_all(self.status_fd).strip()
            os.close(self.status_fd)
            self.status_fd = None
            try:
                return int(text)
            except ValueError:
                pass  # init itself was killed (SIGKILL after the grace period)
        return os.waitstatus_to_exitcode(wait_status)


def _read_all(fd: int) -> str:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks).decode("utf-8", "replace")
        chunks.append(chunk)


class ExecFailed(OSError):
    """The command itself could not be executed (not found, not executable)."""


def start(plan: SandboxPlan, cmd: Command) -> Started:
    """Start the task; raises ``ExecFailed`` or ``SandboxError`` if it never ran."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    status_r = status_w = None
    try:
        if plan.namespaces:
            status_r, status_w = os.pipe2(os.O_CLOEXEC)
            unshare(CLONE_NEWPID)  # the supervisor's next child is PID 1 of the task
        pid = os.fork()
    except BaseException:
        for fd in (err_r, err_w, status_r, status_w):
            if fd is not None:
                os.close(fd)
        raise
    if pid == 0:
        os.close(err_r)
        if status_r is not None and status_w is not None:
            os.close(status_r)
            _task_init(plan, cmd, err_w, status_w)
        _direct_child(plan, cmd, err_w)
    os.close(err_w)
    if status_w is not None:
        os.close(status_w)
    try:
        message = _read_all(err_r)
    finally:
        os.close(err_r)
    if message:
        os.waitpid(pid, 0)
        if status_r is not None:
            os.close(status_r)
        kind, _, detail = message.partition(":")
        if kind == "exec":
            code = int(detail) if detail.isdigit() else errno.ENOEXEC
            raise ExecFailed(code, os.strerror(code))
        raise SandboxError(errno.EPERM, detail or "sandbox setup failed")
    return Started(pid, status_r)
