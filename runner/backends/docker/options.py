"""The docker backend's settings, read from ``RunnerApp.backend_options``."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

MOUNT_MODES = ("ro", "rw")


@dataclass(frozen=True)
class DockerOptions:
    """Validated settings; unknown keys are ignored (they may belong to another backend).

    - ``base_url``: the daemon (default: ``$DOCKER_HOST`` or the local socket)
    - ``mounts``: ``{host_path: "container_path[:ro|rw]"}`` bind-mounted into every task
    - ``network_mode``: e.g. ``"none"``, ``"host"``, a network name (default: Docker's bridge)
    - ``pull``: pull a missing image instead of failing the task (default ``False``)
    - ``default_image``: the image for tasks that name none
    - ``init``: run Docker's init as PID 1 so ``kill`` grace works (default ``True``)
    - ``log_driver`` / ``log_options``: the container log driver; ``local`` keeps raw bytes,
      which a restarted runner replays to resume the task's log files
    - ``ssh_address``: the node address VPS SSH ports are published on (default ``0.0.0.0``)
    - ``snapshot_keep``: VPS snapshots kept per VPS, newest first (default 3; 0 keeps all)
    - ``pids_limit``: processes and threads per container (default 4096; 0: no limit)
    - ``protected_paths``: more node paths no container may mount (the Docker socket, the
      daemon's data root and the runner's state dir always are refused)
    - ``job_relay``: notebook jobs on a loopback ``host_url`` reach the host through a relay
      of the job routes only (default ``True``; see ``relay.py``)
    """

    base_url: str | None = None
    mounts: dict[str, tuple[str, str]] = field(default_factory=dict)
    network_mode: str | None = None
    pull: bool = False
    default_image: str | None = None
    init: bool = True
    log_driver: str = "local"
    log_options: dict[str, str] = field(default_factory=dict)
    ssh_address: str = "0.0.0.0"
    snapshot_keep: int = 3
    pids_limit: int = 4096
    protected_paths: tuple[str, ...] = ()
    job_relay: bool = True

    @classmethod
    def parse(cls, options: dict[str, Any]) -> DockerOptions:
        """Check types and mount specs; raises ``ValueError`` with the offending key."""
        mounts = {}
        raw_mounts = options.get("mounts") or {}
        if not isinstance(raw_mounts, dict):
            raise ValueError("docker option 'mounts' must be a dict {host_path: 'path[:mode]'}")
        for host, target in raw_mounts.items():
            mounts[str(host)] = _parse_mount(str(host), target)
        protected = options.get("protected_paths") or []
        if not isinstance(protected, list) or not all(
            isinstance(p, str) and posixpath.isabs(p) for p in protected
        ):
            raise ValueError("docker option 'protected_paths' must be a list of absolute paths")
        log_options = options.get("log_options") or {}
        if not isinstance(log_options, dict):
            raise ValueError("docker option 'log_options' must be a dict")
        return cls(
            base_url=_opt_str(options, "base_url"),
            mounts=mounts,
            network_mode=_opt_str(options, "network_mode"),
            pull=_bool(options, "pull", False),
            default_image=_opt_str(options, "default_image"),
            init=_bool(options, "init", True),
            log_driver=_opt_str(options, "log_driver") or "local",
            log_options={str(k): str(v) for k, v in log_options.items()},
            ssh_address=_opt_str(options, "ssh_address") or "0.0.0.0",
            snapshot_keep=_int(options, "snapshot_keep", 3),
            pids_limit=_int(options, "pids_limit", 4096),
            protected_paths=tuple(protected),
            job_relay=_bool(options, "job_relay", True),
        )

    def binds(self) -> dict[str, dict[str, str]]:
        """The mounts in the docker SDK's ``binds`` form."""
        return {host: {"bind": path, "mode": mode} for host, (path, mode) in self.mounts.items()}


def _parse_mount(host: str, target: object) -> tuple[str, str]:
    if not isinstance(target, str) or not target:
        raise ValueError(f"docker mount {host!r}: target must be 'path[:ro|rw]'")
    path, _, mode = target.partition(":")
    mode = mode or "rw"
    if not posixpath.isabs(host) or not posixpath.isabs(path):
        raise ValueError(f"docker mount {host!r} -> {target!r}: paths must be absolute")
    if mode not in MOUNT_MODES:
        raise ValueError(f"docker mount {host!r}: mode must be ro or rw, not {mode!r}")
    return path, mode


def _opt_str(options: dict[str, Any], key: str) -> str | None:
    value = options.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"docker option {key!r} must be a string")
    return value


def _bool(options: dict[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"docker option {key!r} must be true or false")
    return value


def _int(options: dict[str, Any], key: str, default: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"docker option {key!r} must be a whole number >= 0")
    return value
