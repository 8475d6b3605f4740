"""Files a task produced or was given (a notebook job's input and executed notebook),
stored on the host under ``{artifact_dir}/{task_id % 1000:03d}/{task_id}/{name}``."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO

from kohakuriver_lab.errors import InvalidRequest, NotFound, TooLarge

ARTIFACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class ArtifactUpload:
    """An artifact being received into a temp file beside its final name; refused (413)
    once it passes ``max_bytes``; :meth:`commit` renames it into place."""

    def __init__(self, path: Path, max_bytes: int, limit_text: str) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.limit_text = limit_text
        self.size = 0
        self.owner = ""
        self.replaced = 0
        """Whose quota it counts against, and the bytes of the file it replaces."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        self._tmp = Path(tmp)
        self._file: IO[bytes] | None = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        """Append a chunk (413 and the partial file removed beyond the limit)."""
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.abort()
            raise TooLarge(f"upload refused at {self.size} bytes: {self.limit_text}")
        assert self._file is not None, "upload already finished"
        self._file.write(chunk)

    def data(self) -> bytes:
        """What was received so far (for checks before :meth:`commit`)."""
        assert self._file is not None
        self._file.flush()
        return self._tmp.read_bytes()

    def commit(self) -> int:
        """Put the file in place (replacing the old one); its size."""
        assert self._file is not None
        self._file.close()
        self._file = None
        os.replace(self._tmp, self.path)
        return self.size

    def abort(self) -> None:
        """Drop the partial file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)


class ArtifactStore:
    """Whole-file writes (temp file + rename), streamed uploads and reads of per-task files."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def folder(self, task_id: int) -> Path:
        """Where a task's artifacts are."""
        return self.root / f"{task_id % 1000:03d}" / str(task_id)

    def _path(self, task_id: int, name: str) -> Path:
        if not ARTIFACT_NAME.fullmatch(name):
            raise InvalidRequest(
                f"invalid artifact name {name!r}: letters, digits, '.', '_' and '-' only"
            )
        return self.folder(task_id) / name

    def write(self, task_id: int, name: str, data: bytes) -> Path:
        """Store ``data`` as the artifact ``name`` (replacing it atomically); callers check
        the size limits."""
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

    def link(self, source_task: int, task_id: int, name: str) -> None:
        """Give ``task_id`` the same artifact as ``source_task`` (a hard link: a sweep's
        input notebook is stored once however many tasks it has)."""
        source, path = self._path(source_task, name), self._path(task_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, path)
        except FileExistsError:
            path.unlink()
            os.link(source, path)
        except OSError:  # a file system without hard links
            shutil.copyfile(source, path)

    def begin(self, task_id: int, name: str, max_bytes: int, limit_text: str) -> ArtifactUpload:
        """Start receiving the artifact ``name`` (at most ``max_bytes``)."""
        return ArtifactUpload(self._path(task_id, name), max_bytes, limit_text)

    def size(self, task_id: int, name: str) -> int:
        """The stored size of one artifact (0 when absent)."""
        try:
            return self._path(task_id, name).stat().st_size
        except FileNotFoundError:
            return 0

    def job_bytes(self, task_id: int) -> int:
        """Bytes a task's artifacts take (partial uploads included)."""
        folder = self.folder(task_id)
        if not folder.is_dir():
            return 0
        return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())

    def read(self, task_id: int, name: str) -> bytes:
        """The artifact's bytes (404 when absent)."""
        try:
            return self._path(task_id, name).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"task {task_id} has no artifact {name!r}") from None

    def names(self, task_id: int) -> list[str]:
        """The artifacts a task has."""
        folder = self.folder(task_id)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))

    def delete(self, task_id: int) -> None:
        """Remove every artifact of a task."""
        shutil.rmtree(self.folder(task_id), ignore_errors=True)
