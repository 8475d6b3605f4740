"""64-bit snowflake IDs: time-ordered, unique per process, serialized as strings in JSON."""

from __future__ import annotations

import os
import threading
import time

# 41 bits of milliseconds since the epoch below, 10 bits of worker id, 12 bits of sequence.
EPOCH_MS = 1_700_000_000_000
_WORKER_BITS = 10
_SEQUENCE_BITS = 12
_MAX_SEQUENCE = (1 << _SEQUENCE_BITS) - 1


class SnowflakeGenerator:
    """Thread-safe generator of strictly increasing 63-bit IDs."""

    def __init__(self, worker_id: int | None = None) -> None:
        if worker_id is None:
            worker_id = os.getpid()
        self._worker = worker_id & ((1 << _WORKER_BITS) - 1)
        self._lock = threading.Lock()
        self._last_ms = -1
        self._sequence = 0

    def next_id(self) -> int:
        """Return a new ID, greater than every ID this generator returned before."""
        with self._lock:
            now = int(time.time() * 1000) - EPOCH_MS
            if now <= self._last_ms:
                now = self._last_ms
                self._sequence = (self._sequence + 1) & _MAX_SEQUENCE
                if self._sequence == 0:
                    now += 1  # borrow the next millisecond rather than sleep
            else:
                self._sequence = 0
            self._last_ms = now
            return (
                (now << (_WORKER_BITS + _SEQUENCE_BITS))
                | (self._worker << _SEQUENCE_BITS)
                | self._sequence
            )


_default = SnowflakeGenerator()


def new_id() -> int:
    """Return a new snowflake ID from the process-wide generator."""
    return _default.next_id()


def id_timestamp(snowflake: int) -> float:
    """Return the UNIX time (seconds) a snowflake ID was made at."""
    return ((snowflake >> (_WORKER_BITS + _SEQUENCE_BITS)) + EPOCH_MS) / 1000.0
