"""Files a task produced or was given (a notebook job's input and executed notebook),
stored on the host under ``{artifact_dir}/{task_id % 1000:03d}/{task_id}/{name}``."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from kohakuriver_lab.errors import InvalidRequest, NotFound

ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_ARTIFACT_BYTES = 64 * 1024 * 1024


class ArtifactStore:
    """Whole-file writes (temp file + rename) and reads of per-task files."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, task_id: int, name: str) -> Path:
        if not ARTIFACT_NAME.match(name):
            raise InvalidRequest(
                f"invalid artifact name {name!r}: letters, digits, '.', '_' and '-' only"
            )
        return self.root / f"{task_id % 1000:03d}" / str(task_id) / name

    def write(self, task_id: int, name: str, data: bytes) -> Path:
        """Store ``data`` as the artifact ``name`` (replacing it atomically)."""
        if len(data) > MAX_ARTIFACT_BYTES:
            raise InvalidRequest(f"artifact is larger than {MAX_ARTIFACT_BYTES} bytes")
        path = self._path(task_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def read(self, task_id: int, name: str) -> bytes:
        """The artifact's bytes (404 when absent)."""
        try:
            return self._path(task_id, name).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"task {task_id} has no artifact {name!r}") from None

    def names(self, task_id: int) -> list[str]:
        """The artifacts a task has."""
        folder = self.root / f"{task_id % 1000:03d}" / str(task_id)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))

    def delete(self, task_id: int) -> None:
        """Remove every artifact of a task."""
        shutil.rmtree(self.root / f"{task_id % 1000:03d}" / str(task_id), ignore_errors=True)
