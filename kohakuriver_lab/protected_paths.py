"""Node paths no task container may bind-mount (the host checks them, the runner again).

A bind mount of the Docker socket (or the daemon's data root) is root on the node; the
runner's state dir and the host's data dir hold tokens, keys and other users' files. A mount
source is refused when it *is*, lies *inside*, or *contains* one of these, compared both as
written (normalized) and with symbolic links resolved.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable

DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
DAEMON_DIRS = (
    "/var/lib/docker",
    "/var/lib/containerd",
    "/run/containerd",
    "/var/run/containerd",
    "/run/docker",
    "/var/run/docker",
)
"""Docker's default data root and the container runtime's state and sockets."""
ALWAYS_PROTECTED = DOCKER_SOCKETS + DAEMON_DIRS


def _forms(path: str) -> set[str]:
    normal = posixpath.normpath(path)
    return {normal, os.path.realpath(normal)}


def _overlaps(a: str, b: str) -> bool:
    """``a`` and ``b`` are equal or one lies inside the other."""
    if a == b or a == "/" or b == "/":
        return True
    return a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def exposed(source: str, protected: Iterable[str]) -> str | None:
    """The protected path a mount of ``source`` would expose, else ``None``."""
    sources = _forms(source)
    for path in protected:
        if any(_overlaps(s, p) for s in sources for p in _forms(path)):
            return path
    return None
