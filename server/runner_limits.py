"""A token bucket per runner connection: a runner that sends faster than its rate is slowed
down (its next frame is read later, so TCP pushes back on it, and nothing it sent is lost),
and one that stays over its rate for too long is closed."""

from __future__ import annotations

import time


class TokenBucket:
    """``rate`` messages a second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, close_after: float) -> None:
        self.rate = max(rate, 1e-9)
        self.burst = max(float(burst), 1.0)
        self.close_after = close_after
        self._tokens = self.burst
        self._at = time.monotonic()
        self._over_since: float | None = None
        self.delayed = 0
        """Messages that had to wait."""

    def take(self, now: float | None = None) -> float:
        """Take a token for one message; how many seconds the message must wait (0: none)."""
        now = time.monotonic() if now is None else now
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            self._over_since = None
            return 0.0
        if self._over_since is None:
            self._over_since = now
        self.delayed += 1
        return -self._tokens / self.rate

    def abusive(self, now: float | None = None) -> bool:
        """Whether the sender has been over its rate for longer than ``close_after`` s."""
        if self.close_after <= 0 or self._over_since is None:
            return False
        now = time.monotonic() if now is None else now
        return now - self._over_since > self.close_after
