"""Docker VPS pieces: the SSH daemon command, authorized keys, snapshots.

A VPS container runs the image's own ``/usr/sbin/sshd`` (nothing is installed at start):
host keys are made on first start if the image has none, and key-only root login is forced
on the command line whatever the image's ``sshd_config`` says. Snapshots are images
``kohakuriver-snapshot/vps-{id}:{UTC timestamp}`` on the VPS's node; the newest ``keep`` are
kept.
"""

from __future__ import annotations

import time
from typing import Any

from kohakuriver_lab.runner.backends.docker.engine import Engine
from kohakuriver_lab.runner.backends.docker.errors import ImageNotFoundError

SNAPSHOT_REPOSITORY = "kohakuriver-snapshot"
AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
SSH_PORT = 22
SSHD_SCRIPT = (
    "if [ ! -x /usr/sbin/sshd ]; then"
    " echo 'kohakuriver: this image has no /usr/sbin/sshd (install openssh-server in the"
    " environment; see docs/docker.md)' >&2; exit 127; fi;"
    " mkdir -p /run/sshd && chmod 0755 /run/sshd;"
    " ssh-keygen -A >/dev/null;"
    " exec /usr/sbin/sshd -D -e"
    " -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no"
    " -o PermitEmptyPasswords=no -o PermitRootLogin=prohibit-password"
    " -o AuthorizedKeysFile=.ssh/authorized_keys"
)
"""A constant (no user input reaches a shell): start sshd with key-only logins."""
VPS_COMMAND = ["/bin/sh", "-c", SSHD_SCRIPT]


def snapshot_repository(task_id: int) -> str:
    return f"{SNAPSHOT_REPOSITORY}/vps-{task_id}"


def authorized_keys(keys: list[str]) -> bytes:
    """The ``authorized_keys`` file for these (already validated) public keys."""
    return "".join(key.strip() + "\n" for key in keys).encode()


class Snapshots:
    """Create, list, delete and prune one node's VPS snapshots."""

    def __init__(self, engine: Engine, keep: int) -> None:
        self.engine = engine
        self.keep = keep

    def list(self, task_id: int) -> list[dict[str, Any]]:
        """Snapshots of a VPS, oldest first."""
        repository = snapshot_repository(task_id)
        found = []
        for row in self.engine.images_of(repository):
            for ref in row.get("RepoTags") or []:
                repo, _, tag = ref.rpartition(":")
                if repo == repository:
                    found.append(
                        {
                            "tag": tag,
                            "image": ref,
                            "created": float(row.get("Created") or 0),
                            "size": int(row.get("Size") or 0),
                        }
                    )
        return sorted(found, key=lambda s: s["tag"])

    def latest(self, task_id: int) -> str | None:
        """The newest snapshot image of a VPS, if any."""
        snapshots = self.list(task_id)
        return snapshots[-1]["image"] if snapshots else None

    def create(self, task_id: int, container: str) -> str:
        """Commit the container as a new snapshot (then prune); the snapshot image."""
        now = time.time()
        tag = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1000):03d}Z"
        self.engine.commit(container, snapshot_repository(task_id), tag)
        self.prune(task_id)
        return f"{snapshot_repository(task_id)}:{tag}"

    def delete(self, task_id: int, tag: str) -> None:
        image = f"{snapshot_repository(task_id)}:{tag}"
        if not any(s["tag"] == tag for s in self.list(task_id)):
            raise ImageNotFoundError(f"VPS {task_id} has no snapshot {tag!r} on this node")
        self.engine.remove_image(image)

    def prune(self, task_id: int) -> None:
        """Keep the newest ``keep`` snapshots (0: keep all)."""
        if self.keep <= 0:
            return
        for snapshot in self.list(task_id)[: -self.keep]:
            self.engine.remove_image(snapshot["image"])
