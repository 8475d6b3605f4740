"""Task logs stored on the host, fed by runners, read by the API and followed live.

Each task has one file per stream under ``{log_dir}/{task_id % 1000:03d}/{task_id}/``. Runners
send chunks with their byte offset, so a resend after a reconnect overlaps harmlessly.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.models import LogStream


class LogStore(LoggingConfigurable):
    """Append-only per-task log files with offset-idempotent writes and live followers."""

    log_dir = Unicode("", help="Directory for task logs (set by the host app).").tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sizes: dict[tuple[int, LogStream], int] = {}
        self._waiters: dict[int, set[asyncio.Event]] = {}

    def _path(self, task_id: int, stream: LogStream) -> Path:
        return Path(self.log_dir) / f"{task_id % 1000:03d}" / str(task_id) / stream.value

    def size(self, task_id: int, stream: LogStream) -> int:
        """Bytes stored for one stream."""
        key = (task_id, stream)
        if key not in self._sizes:
            try:
                self._sizes[key] = self._path(task_id, stream).stat().st_size
            except FileNotFoundError:
                return 0
        return self._sizes[key]

    def write(self, task_id: int, stream: LogStream, offset: int, data: bytes) -> int:
        """Store ``data`` found at ``offset`` of the stream; returns the new size.

        Bytes already stored are skipped; a chunk that would leave a hole is refused
        (``ValueError``) so the runner resends from the host's offset on its next connect.
        """
        size = self.size(task_id, stream)
        if offset > size:
            raise ValueError(f"log chunk at {offset} leaves a gap after {size} stored bytes")
        data = data[size - offset :]
        if not data:
            return size
        path = self._path(task_id, stream)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as handle:
            handle.write(data)
        size += len(data)
        self._sizes[(task_id, stream)] = size
        self.notify(task_id)
        return size

    def read(self, task_id: int, stream: LogStream, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes from ``offset``."""
        try:
            with open(self._path(task_id, stream), "rb") as handle:
                handle.seek(offset)
                return handle.read(limit)
        except FileNotFoundError:
            return b""

    def delete(self, task_id: int) -> None:
        """Remove a task's logs."""
        shutil.rmtree(self._path(task_id, LogStream.STDOUT).parent, ignore_errors=True)
        for stream in LogStream:
            self._sizes.pop((task_id, stream), None)

    # -------------------------------------------------------------------------
    # Live following
    # -------------------------------------------------------------------------

    def subscribe(self, task_id: int) -> asyncio.Event:
        """An event set whenever the task's logs grow or the task ends."""
        event = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(event)
        return event

    def unsubscribe(self, task_id: int, event: asyncio.Event) -> None:
        """Stop following."""
        waiters = self._waiters.get(task_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[task_id]

    def notify(self, task_id: int) -> None:
        """Wake the followers of a task."""
        for event in self._waiters.get(task_id, ()):
            event.set()
