"""Which Unix identity a cluster user's tasks run as on this node.

Modes (local backend option ``task_user``):

- ``dynamic``: each cluster user gets a uid of their own from ``uid_range`` (as systemd's
  DynamicUser), kept in ``{state_dir}/users.json`` so it is stable across tasks and restarts,
  with a home under ``{state_dir}/home/{uid}``. Never a uid ``/etc/passwd`` already uses.
- ``mapped``: the Unix account named by ``user_map[cluster user]`` (or the same name when
  ``map_same_name``), with its own groups and home, as Slurm runs jobs as the submitter.
  A user without an account, or an account with uid 0, is refused.
- ``runner``: the runner's own user. Only for a single-user node (a laptop); every task can
  then read whatever the runner can.
- ``auto`` (default): ``dynamic`` when the runner is root, else ``runner``.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kohakuriver_lab.runner.errors import TaskStartError

MODES = ("auto", "dynamic", "mapped", "runner")
DEFAULT_UID_RANGE = (61184, 65519)  # systemd's DynamicUser range


@dataclass(frozen=True)
class TaskUser:
    """A resolved identity; ``uid is None`` means the runner's own user."""

    name: str  # the Unix account (``$USER``); the cluster user's name for dynamic uids
    uid: int | None
    gid: int | None
    groups: tuple[int, ...]
    home: str


def parse_uid_range(value: Any) -> tuple[int, int]:
    """``"61184-65519"`` or ``[61184, 65519]`` → (first, last)."""
    if isinstance(value, str):
        first, _, last = value.partition("-")
        low, high = int(first), int(last or first)
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = int(value[0]), int(value[1])
    else:
        raise ValueError(f"uid_range must be 'FIRST-LAST', got {value!r}")
    if not 1000 <= low <= high < 2**31 - 1:
        raise ValueError(f"uid_range {value!r} must lie within 1000..2147483646")
    return low, high


class TaskUsers:
    """Resolves cluster users to Unix identities for one runner."""

    def __init__(
        self,
        state_dir: Path,
        mode: str = "auto",
        user_map: dict[str, str] | None = None,
        map_same_name: bool = False,
        uid_range: Any = DEFAULT_UID_RANGE,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"task_user must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "auto":
            mode = "dynamic" if os.geteuid() == 0 else "runner"
        if mode in ("dynamic", "mapped") and os.geteuid() != 0:
            raise ValueError(f"task_user={mode!r} needs a runner running as root")
        self.mode = mode
        self.user_map = dict(user_map or {})
        self.map_same_name = map_same_name
        self.uid_range = parse_uid_range(uid_range)
        self.state_dir = state_dir
        self._table_path = state_dir / "users.json"
        self._homes = state_dir / "home"
        self._cache: dict[str, TaskUser] = {}

    @property
    def isolated(self) -> bool:
        """Whether tasks run as an identity other than the runner's."""
        return self.mode != "runner"

    def resolve(self, owner: str | None) -> TaskUser:
        """The identity for tasks of ``owner`` (created on first use in ``dynamic`` mode)."""
        name = owner or ""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        if self.mode == "runner":
            try:
                account = pwd.getpwuid(os.getuid()).pw_name
            except KeyError:
                account = name
            user = TaskUser(account, None, None, (), os.path.expanduser("~"))
        elif self.mode == "mapped":
            user = self._mapped(name)
        else:
            user = self._dynamic(name)
        self._cache[name] = user
        return user

    def _mapped(self, name: str) -> TaskUser:
        account = self.user_map.get(name) or (name if self.map_same_name else "")
        if not account:
            raise TaskStartError(f"no Unix account for cluster user {name!r} on this node")
        try:
            entry = pwd.getpwnam(account)
        except KeyError:
            raise TaskStartError(f"Unix account {account!r} does not exist on this node") from None
        if entry.pw_uid == 0:
            raise TaskStartError(f"refusing to run tasks as root (account {account!r})")
        groups = tuple(os.getgrouplist(account, entry.pw_gid))
        return TaskUser(account, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)

    def _dynamic(self, name: str) -> TaskUser:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "users.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            table = self._load()
            uid = table.get(name)
            if uid is None:
                uid = self._free_uid(set(table.values()))
                table[name] = uid
                tmp = self._table_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
                os.replace(tmp, self._table_path)
        home = self._homes / str(uid)
        self._homes.mkdir(mode=0o711, exist_ok=True)
        if not home.is_dir():
            home.mkdir(mode=0o700)
        if home.stat().st_uid != uid:
            os.chown(home, uid, uid)
        return TaskUser(name, uid, uid, (), str(home))

    def _load(self) -> dict[str, int]:
        try:
            data = json.loads(self._table_path.read_text())
        except (OSError, ValueError):
            return {}
        low, high = self.uid_range
        return {
            str(k): int(v)
            for k, v in (data.items() if isinstance(data, dict) else [])
            if isinstance(v, int) and low <= v <= high
        }

    def _free_uid(self, taken: set[int]) -> int:
        low, high = self.uid_range
        for uid in range(low, high + 1):
            if uid in taken:
                continue
            try:
                pwd.getpwuid(uid)
            except KeyError:
                return uid
        raise TaskStartError(f"no free uid left in {low}-{high} for another cluster user")
