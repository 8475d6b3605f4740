"""Per-task secrets: what a running job uses to talk back to the host (progress, results,
artifacts). Derived with HMAC from a host secret, so nothing per task is stored."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

TASK_TOKEN_PREFIX = "krt_"


class TaskTokens:
    """Mint and check task tokens with a secret kept in the host's data directory."""

    def __init__(self, secret_path: str | Path) -> None:
        path = Path(secret_path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
        self._key = bytes.fromhex(path.read_text().strip())

    def token_for(self, task_id: int) -> str:
        """The token of one task."""
        digest = hmac.new(self._key, str(task_id).encode(), hashlib.sha256).hexdigest()
        return TASK_TOKEN_PREFIX + digest

    def verify(self, task_id: int, token: str) -> bool:
        """Whether ``token`` is the token of ``task_id`` (constant time)."""
        return hmac.compare_digest(self.token_for(task_id), token)
