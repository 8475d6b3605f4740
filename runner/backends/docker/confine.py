"""What every container the runner creates is confined to (docs/docker.md, "Confinement").

- ``no-new-privileges``: no setuid binary or file capability raises a process's privileges;
- capabilities: all dropped, then a small set added back per kind (below);
- ``pids_limit`` (fork bombs), never ``privileged``, private IPC and PID namespaces;
- bind mounts: never the Docker socket, the daemon's data, the runner's state dir or a
  configured protected path (``kohakuriver_lab.protected_paths``), checked right before create.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from kohakuriver_lab.protected_paths import ALWAYS_PROTECTED, exposed
from kohakuriver_lab.runner.backends.docker.errors import ContainerCreationError

Kind = Literal["command", "vps", "environment"]

FILE_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETGID", "SETUID", "KILL")
"""Root in an image may own and chmod its files, switch users (apt's ``_apt``, pip, su to
a non-root user) and signal its own processes. Docker's default set minus these is dropped:
NET_RAW (raw sockets: ARP/DNS spoofing on the bridge), MKNOD, NET_BIND_SERVICE, SYS_CHROOT,
AUDIT_WRITE, SETFCAP, SETPCAP."""
CAPABILITIES: dict[Kind, tuple[str, ...]] = {
    "command": FILE_CAPS,
    "environment": FILE_CAPS,  # `apt-get install` in env_exec needs no more
    # sshd: privilege separation chroots (SYS_CHROOT), binds port 22, writes login audit
    "vps": (*FILE_CAPS, "SYS_CHROOT", "NET_BIND_SERVICE", "AUDIT_WRITE"),
}
SECURITY_OPT = ["no-new-privileges"]


def host_config_args(kind: Kind, pids_limit: int) -> dict[str, Any]:
    """Keyword arguments for ``APIClient.create_host_config``."""
    return {
        "security_opt": list(SECURITY_OPT),
        "cap_drop": ["ALL"],
        "cap_add": list(CAPABILITIES[kind]),
        "pids_limit": pids_limit or None,
        "privileged": False,
        "ipc_mode": "private",
    }


def check_mounts(sources: Iterable[str], protected: Iterable[str]) -> None:
    """Refuse (``ContainerCreationError``) a bind source exposing a protected path."""
    paths = [*ALWAYS_PROTECTED, *protected]
    for source in sources:
        hit = exposed(source, paths)
        if hit is not None:
            raise ContainerCreationError(
                f"bind mount of {source} refused: it would expose {hit} (the Docker socket, "
                "the daemon's data and the runner's state are never mounted into containers)"
            )
