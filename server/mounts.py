"""Per-task bind mounts: only node directories an admin allowed, never more access than allowed,
and never the Docker socket, the daemon's data or the host's data dir (``kohakuriver_lab/protected_paths.py``)."""

from __future__ import annotations

import posixpath

from traitlets import List, Unicode
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.errors import InvalidRequest
from kohakuriver_lab.models import parse_mount_spec
from kohakuriver_lab.protected_paths import ALWAYS_PROTECTED, exposed

FORBIDDEN_TARGETS = ("/", "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/lib")
"""Container paths a mount may not cover (they would break or subvert the container)."""


def _within(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root.rstrip("/") + "/")


class MountPolicy(LoggingConfigurable):
    """Checks ``/node/path:/container/path[:ro|rw]`` against ``allowed_mounts``."""

    allowed_mounts = List(
        Unicode(),
        default_value=[],
        config=True,
        help="Node directories tasks may bind-mount (docker backend), e.g. "
        "['/data/datasets:ro', '/scratch']. A ':ro' entry allows read-only mounts only. "
        "Empty: tasks may not add mounts (the runner's own 'mounts' option still applies).",
    )

    protected_paths = List(
        Unicode(),
        default_value=[],
        config=True,
        help="More node paths no task may mount, whatever allowed_mounts says (always refused: "
        "the Docker socket, /var/lib/docker, containerd's dirs and the host's data_dir). Add a "
        "Docker data root moved elsewhere or runners' state dirs here.",
    )

    def protected(self) -> list[str]:
        """Every refused source: the built-in list, ``protected_paths``, the host's data dir."""
        paths = [*ALWAYS_PROTECTED, *self.protected_paths]
        parent = self.parent
        while parent is not None:  # ClusterHostApp, through the services that made this
            data_dir = getattr(parent, "data_dir", None)
            if isinstance(data_dir, str) and data_dir:
                paths.append(data_dir)
                break
            parent = getattr(parent, "parent", None)
        return paths

    def _rules(self) -> list[tuple[str, bool]]:
        rules = []
        for entry in self.allowed_mounts:
            path, _, mode = entry.partition(":")
            rules.append((posixpath.normpath(path), mode == "ro"))
        return rules

    def check(self, text: str) -> str:
        """The normalized mount (``source:target:mode``), or 400 saying why it is refused."""
        try:
            source, target, read_only = parse_mount_spec(text)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        if any(target == t or (t != "/" and _within(target, t)) for t in FORBIDDEN_TARGETS):
            raise InvalidRequest(f"mount {text!r}: cannot mount over {target} in the container")
        rules = self._rules()
        matching = [ro for root, ro in rules if _within(source, root)]
        if not matching:
            allowed = ", ".join(self.allowed_mounts) or "none (ask an admin)"
            raise InvalidRequest(f"mount {text!r}: {source} is not allowed (allowed: {allowed})")
        if not read_only and all(matching):
            raise InvalidRequest(f"mount {text!r}: {source} may only be mounted read-only (:ro)")
        hit = exposed(source, self.protected())
        if hit is not None:
            raise InvalidRequest(
                f"mount {text!r}: {source} would expose {hit} (the Docker socket, the daemon's "
                "data or the host's data are never mounted into tasks)"
            )
        return f"{source}:{target}:{'ro' if read_only else 'rw'}"
