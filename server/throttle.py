"""A small in-memory rate limit for the routes anyone may call (login, registration).

Fixed one-minute windows: at most ``per_key`` attempts per key (the client's address) and
``total`` attempts in all. Memory is bounded: at most ``max_keys`` addresses are remembered
(the oldest windows are dropped first). One host process, so memory is the right place.
"""

from __future__ import annotations

import threading
import time

from kohakuriver_lab.errors import TooManyRequests

WINDOW = 60.0


class Throttle:
    """Count attempts per key and in all; refuse (429) past the limits."""

    def __init__(
        self, per_key: int, total: int, *, what: str = "attempts", max_keys: int = 10_000
    ) -> None:
        self.per_key = per_key
        self.total = total
        self.what = what
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}
        self._all: tuple[float, int] = (0.0, 0)

    def attempt(self, key: str, now: float | None = None) -> None:
        """Count one attempt for ``key``; :class:`TooManyRequests` when over a limit."""
        now = time.monotonic() if now is None else now
        with self._lock:
            start, count = self._all
            if now - start >= WINDOW:
                start, count = now, 0
            if count >= self.total:
                raise TooManyRequests(f"too many {self.what} right now; try again in a minute")
            start_key, count_key = self._windows.get(key, (now, 0))
            if now - start_key >= WINDOW:
                start_key, count_key = now, 0
            if count_key >= self.per_key:
                raise TooManyRequests(
                    f"too many {self.what} from your address; try again in a minute"
                )
            self._all = (start, count + 1)
            self._windows[key] = (start_key, count_key + 1)
            if len(self._windows) > self.max_keys:
                self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget finished windows; if still too many, the oldest ones."""
        live = {k: w for k, w in self._windows.items() if now - w[0] < WINDOW}
        if len(live) > self.max_keys:
            newest = sorted(live.items(), key=lambda item: item[1][0])[-self.max_keys :]
            live = dict(newest)
        self._windows = live
