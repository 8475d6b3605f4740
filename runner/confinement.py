"""How the local backend confines a task: identity, working directory policy, sandbox plan.

Options (``c.RunnerApp.backend_options`` for the local backend):

- ``task_user``: ``auto`` (default), ``dynamic``, ``mapped`` or ``runner`` (see ``identity``);
  ``user_map`` (cluster user → Unix account), ``map_same_name``, ``uid_range``.
- ``allowed_workdirs``: node directories a task may name as ``workdir``. Default: anywhere
  for ``runner``, the account's home for ``mapped``, nothing for ``dynamic`` (the task's own
  directory is always allowed and is the default).
- ``hidden_paths``: directories tasks never see (the runner's state dir always is; the
  embedded runner adds the host's data dir).
- ``pass_env``: runner variables a task inherits (default ``PATH``, locale, ``TZ``, proxy
  and CA-bundle variables).
- ``shm_size``: size of the task's private ``/dev/shm`` (tmpfs syntax, default ``50%`` of
  the node's memory as the kernel's own default; its pages count against the task's memory
  limit, so PyTorch data loaders and NCCL get room without a way around the limit).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import kohakuriver_lab
from kohakuriver_lab.protocol import TaskSpec
from kohakuriver_lab.runner import taskdir
from kohakuriver_lab.runner.errors import TaskStartError
from kohakuriver_lab.runner.identity import DEFAULT_UID_RANGE, TaskUser, TaskUsers
from kohakuriver_lab.runner.sandbox import SandboxPlan
from kohakuriver_lab.runner.supervisor import DEFAULT_PASS_ENV

PRIVATE_TMP = "tmp"
SINGLE_USER_NOTE = "runs as the runner's own user (single-user node: not isolated)"


def _within(path: str, root: str) -> bool:
    return path == root or root == "/" or path.startswith(root.rstrip("/") + "/")


def _visible_path(hidden: list[str], kept: list[str]) -> str:
    """The runner's PATH without directories a confined task cannot see (pyenv shims under
    /root), the runner's Python first: ``python`` in a task is the runner's interpreter."""

    def visible(directory: str) -> bool:
        real = os.path.realpath(directory)
        return any(_within(real, k) for k in kept) or not any(_within(real, h) for h in hidden)

    dirs = [os.path.dirname(sys.executable), *os.environ.get("PATH", "").split(":")]
    return ":".join(dict.fromkeys(d for d in dirs if d and visible(d)))


class Confinement:
    """The local backend's confinement settings, applied to each task it starts."""

    def __init__(self, state_dir: Path, options: dict[str, Any]) -> None:
        try:
            self.users = TaskUsers(
                state_dir,
                str(options.get("task_user", "auto")),
                dict(options.get("user_map") or {}),
                bool(options.get("map_same_name", False)),
                options.get("uid_range", DEFAULT_UID_RANGE),
            )
        except ValueError as exc:
            raise ValueError(f"local backend: {exc}") from None
        self.isolated = self.users.isolated
        home = os.path.realpath(os.path.expanduser("~"))
        self.hidden = [os.path.realpath(state_dir)] + [
            os.path.realpath(p) for p in options.get("hidden_paths") or []
        ]
        if home != "/" and os.geteuid() == 0:
            self.hidden.append(home)  # root's home: SSH keys, Jupyter runtime and data
        # the runner's Python stays usable (notebook jobs run in it), read-only, even when it
        # lives in a hidden directory (e.g. pyenv under /root)
        package = Path(kohakuriver_lab.__file__).parent  # an editable install's source tree
        runtime = [
            sys.prefix,
            sys.base_prefix,
            *(str(package / p) for p in ("", "runner", "server")),
        ]
        self.runtime = sorted({os.path.realpath(p) for p in runtime})
        self.task_path = _visible_path(self.hidden, self.runtime)
        workdirs = options.get("allowed_workdirs")
        self.allowed_workdirs = (
            None if workdirs is None else [os.path.realpath(p) for p in workdirs]
        )
        self.pass_env = [str(k) for k in options.get("pass_env", DEFAULT_PASS_ENV)]
        self.shm_size = str(options.get("shm_size", "50%"))
        if not re.fullmatch(r"[0-9]+[kmgKMG%]?", self.shm_size):
            raise ValueError(f"local backend: shm_size {self.shm_size!r} is not like '8G' or '50%'")
        if self.isolated:
            for path in (state_dir, state_dir / "tasks"):
                path.mkdir(parents=True, exist_ok=True)
                os.chmod(path, 0o700)

    def describe(self) -> str:
        if not self.isolated:
            return (
                "as the runner's own user (single-user node: tasks can read what the runner "
                "can; run the runner as root for per-user identities)"
            )
        low, high = self.users.uid_range
        how = f"uids {low}-{high}" if self.users.mode == "dynamic" else "mapped Unix accounts"
        return (
            f"as per-user identities ({how}) in their own PID, mount and IPC namespaces, "
            f"hidden: {', '.join(self.hidden)}"
        )

    def user_for(self, owner: str | None) -> TaskUser:
        return self.users.resolve(owner)

    def check_workdir(self, workdir: str | None, user: TaskUser) -> None:
        """Refuse a ``workdir`` outside the node's policy (the task's own dir is the default)."""
        if workdir is None:
            return
        real = os.path.realpath(workdir)
        if any(_within(real, h) for h in self.hidden):
            raise TaskStartError(f"workdir {workdir} is inside a directory tasks may not see")
        allowed = self.allowed_workdirs
        if allowed is None:
            allowed = ["/"] if not self.isolated else []
            if self.users.mode == "mapped":
                allowed = [os.path.realpath(user.home)]
        if not any(_within(real, a) for a in allowed):
            where = ", ".join(allowed) if allowed else "none on this node"
            raise TaskStartError(
                f"workdir {workdir} is not allowed (omit it to run in the task's own directory; "
                f"allowed_workdirs: {where})"
            )

    def prepare(self, path: Path, spec: TaskSpec, user: TaskUser) -> dict[str, Any]:
        """Create the task's own directories; the ``spec.json`` fields the supervisor applies."""
        work = path / taskdir.WORK
        work.mkdir(mode=0o700)
        extra: dict[str, Any] = {
            "pass_env": self.pass_env,
            "user": {"name": user.name, "home": user.home},
        }
        if not self.isolated:
            extra["sandbox"] = SandboxPlan().to_json()
            extra["notes"] = [SINGLE_USER_NOTE]
            return extra
        extra["path"] = self.task_path
        tmp = path / PRIVATE_TMP
        tmp.mkdir()
        os.chmod(tmp, 0o1777)
        if user.uid is not None:
            os.chown(work, user.uid, user.gid if user.gid is not None else user.uid)
        keep = [str(work), user.home] + ([spec.workdir] if spec.workdir else [])
        plan = SandboxPlan(
            uid=user.uid,
            gid=user.gid,
            groups=list(user.groups),
            namespaces=True,
            hidden=self.hidden,
            keep=keep,
            keep_ro=self.runtime,
            private_tmp=str(tmp),
            shm_size=self.shm_size,
        )
        extra["sandbox"] = plan.to_json()
        return extra
