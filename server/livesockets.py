"""Open user WebSockets (events, log follow) by identity, so that rights are re-checked on them.

The services that change an identity's rights call this registry synchronously: revoking an
API token closes its sockets (4001), deactivating an account closes its user's (4003), a role
change makes each of the user's sockets re-check its caller (the events socket then shows
what the new role may see; a log follow the caller may no longer read is closed with 4003).
A socket opened with an expiring token is closed (4001) when the token expires.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from traitlets.config import LoggingConfigurable

CLOSE_CREDENTIALS = 4001
"""Close code: the API token was revoked or expired (reconnecting needs a new one)."""
CLOSE_FORBIDDEN = 4003
"""Close code: the account was deactivated, or may no longer see what the socket shows."""


class LiveSocket(Protocol):
    """What the registry needs of a socket."""

    def end(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` and ``reason`` (or at once when it opens)."""

    def rights_changed(self) -> None:
        """Re-read the caller's role; close or narrow what the socket shows."""


class _Entry:
    __slots__ = ("loop", "timer", "token_id", "username")

    def __init__(self, username: str, token_id: int | None, loop: asyncio.AbstractEventLoop):
        self.username = username
        self.token_id = token_id
        self.loop = loop
        self.timer: asyncio.TimerHandle | None = None


class SocketRegistry(LoggingConfigurable):
    """Open user sockets per user name and per API token."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sockets: dict[LiveSocket, _Entry] = {}
        self._lock = threading.Lock()

    def add(
        self,
        socket: LiveSocket,
        username: str,
        token_id: int | None = None,
        expires_at: float | None = None,
    ) -> None:
        """Watch ``socket`` (call on the event loop that serves it)."""
        loop = asyncio.get_running_loop()
        entry = _Entry(username, token_id, loop)
        if expires_at is not None:
            entry.timer = loop.call_later(
                max(0.0, expires_at - time.time()),
                socket.end,
                CLOSE_CREDENTIALS,
                "API token expired",
            )
        with self._lock:
            self._sockets[socket] = entry

    def remove(self, socket: LiveSocket) -> None:
        """Stop watching ``socket`` (idempotent)."""
        with self._lock:
            entry = self._sockets.pop(socket, None)
        if entry is not None and entry.timer is not None:
            entry.timer.cancel()

    def count(self, username: str) -> int:
        """How many sockets ``username`` has open."""
        with self._lock:
            return sum(1 for e in self._sockets.values() if e.username == username)

    # ----- notifications (from the services that change rights) -----

    def token_revoked(self, token_id: int) -> None:
        """Close every socket opened with this API token."""
        self._each(
            lambda e: e.token_id == token_id,
            lambda s: s.end(CLOSE_CREDENTIALS, "API token revoked"),
        )

    def user_deactivated(self, username: str) -> None:
        """Close every socket of this user."""
        self._each(
            lambda e: e.username == username,
            lambda s: s.end(CLOSE_FORBIDDEN, f"the account {username} was deactivated"),
        )

    def role_changed(self, username: str) -> None:
        """Make every socket of this user re-check its rights."""
        self._each(lambda e: e.username == username, lambda s: s.rights_changed())

    def _each(self, match: Callable[[_Entry], bool], act: Callable[[LiveSocket], None]) -> None:
        with self._lock:
            chosen = [(s, e) for s, e in self._sockets.items() if match(e)]
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for socket, entry in chosen:
            if entry.loop is here:
                self._act(act, socket)
            else:  # called from another thread: the socket's loop acts
                entry.loop.call_soon_threadsafe(self._act, act, socket)

    def _act(self, act: Callable[[LiveSocket], None], socket: LiveSocket) -> None:
        try:
            act(socket)
        except Exception:  # one broken socket must not spare the others
            self.log.exception("re-checking an open socket failed; closing it")
            socket.end(CLOSE_FORBIDDEN, "rights could not be re-checked")
