"""One live-events WebSocket per process, shared by every widget and waiter.

``GET /kohakuriver/api/events?topics=...`` sends ``{"type": "task", "task": TaskInfo}``,
``{"type": "progress", "task_id", ...}``, ``{"type": "node", ...}`` and
``{"type": "metrics", ...}`` frames. :class:`EventHub` keeps one connection (in a private
event loop thread, so it works inside a Jupyter kernel whose loop is busy running the cell),
dispatches frames to listeners by task ID, batch ID or node, and reconnects with backoff when
the host drops it (1013 "too slow", host restart). After every (re)connect each listener gets
``{"type": "resync"}`` so it can re-read the state it may have missed.

The socket is open only while somebody listens; topics follow the listeners (``nodes`` only
while a cluster widget is alive).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from kohakuriver_lab._client_config import ClientConfig

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]


class Subscription:
    """A registered listener; :meth:`close` removes it."""

    def __init__(self, hub: EventHub, kind: str, key: str | None, callback: Listener) -> None:
        self.hub = hub
        self.kind = kind
        self.key = key
        self.callback = callback
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """The shared events connection for one host."""

    def __init__(self, config: ClientConfig, *, max_delay: float = 5.0) -> None:
        self.config = config
        self.max_delay = max_delay
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: asyncio.Task[None] | None = None
        self._topics: frozenset[str] = frozenset()
        self.connected = threading.Event()
        self.connects = 0
        self.frames = 0

    # ----- listeners -----

    def watch_task(self, task_id: int | str, callback: Listener) -> Subscription:
        """Frames about one task (``task``, ``progress``) plus ``resync``."""
        return self._add(Subscription(self, "task", str(task_id), callback))

    def watch_batch(self, batch_id: int | str, callback: Listener) -> Subscription:
        """Frames about every task of a batch (a sweep) plus ``resync``."""
        return self._add(Subscription(self, "batch", str(batch_id), callback))

    def watch_nodes(self, callback: Listener) -> Subscription:
        """``node`` and ``metrics`` frames plus ``resync``."""
        return self._add(Subscription(self, "nodes", None, callback))

    def _add(self, sub: Subscription) -> Subscription:
        with self._lock:
            self._subs.append(sub)
        self._reconcile()
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
        self._reconcile()

    def _wanted(self) -> frozenset[str]:
        with self._lock:
            kinds = {s.kind for s in self._subs}
        topics = set()
        if kinds & {"task", "batch"}:
            topics.add("tasks")
        if "nodes" in kinds:
            topics.add("nodes")
        return frozenset(topics)

    # ----- connection -----

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="kohakuriver-events", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _reconcile(self) -> None:
        """(Re)start or stop the connection so its topics match the listeners."""
        loop = self._ensure_loop()
        loop.call_soon_threadsafe(self._reconcile_in_loop)

    def _reconcile_in_loop(self) -> None:
        wanted = self._wanted()
        if wanted == self._topics and self._runner is not None and not self._runner.done():
            return
        if self._runner is not None:
            self._runner.cancel()
            self._runner = None
            self.connected.clear()
        self._topics = wanted
        if wanted:
            self._runner = asyncio.ensure_future(self._run(wanted))

    def _url(self, topics: frozenset[str]) -> str:
        base = self.config.api_url.replace("http", "ws", 1)
        return f"{base}events?{urlencode({'topics': ','.join(sorted(topics))})}"

    async def _run(self, topics: frozenset[str]) -> None:
        headers = self.config.auth_headers()
        delay = 0.1
        while True:
            try:
                url = self._url(topics)
                async with connect(
                    url,
                    additional_headers=headers,
                    open_timeout=10,
                    max_size=None,
                    ssl=self.config.ws_ssl(url),
                ) as ws:
                    async for raw in ws:
                        frame = json.loads(raw)
                        if not isinstance(frame, dict):
                            continue
                        if frame.get("type") == "subscribed":
                            self.connects += 1
                            delay = 0.1
                            self.connected.set()
                            self._dispatch_all({"type": "resync"})
                            continue
                        self.frames += 1
                        self._dispatch(frame)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, ValueError) as exc:
                log.debug("events socket dropped: %s", exc)
            except Exception:
                log.warning("events socket failed", exc_info=True)
            self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)

    # ----- dispatch (on the hub thread) -----

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        task_id: str | None = None
        batch_id: str | None = None
        if kind == "task" and isinstance(frame.get("task"), dict):
            task_id = str(frame["task"].get("task_id"))
            batch_id = str(frame["task"].get("batch_id"))
        elif kind == "progress":
            task_id = str(frame.get("task_id"))
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            if (
                (sub.kind == "task" and sub.key == task_id)
                or (sub.kind == "batch" and (sub.key == batch_id or kind == "progress"))
                or (sub.kind == "nodes" and kind in ("node", "metrics"))
            ):
                self._call(sub, frame)

    def _dispatch_all(self, frame: dict[str, Any]) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            self._call(sub, frame)

    @staticmethod
    def _call(sub: Subscription, frame: dict[str, Any]) -> None:
        if sub.closed:
            return
        try:
            sub.callback(frame)
        except Exception:
            log.warning("event listener failed", exc_info=True)

    def close(self) -> None:
        """Drop every listener, close the socket and stop the thread."""
        with self._lock:
            subs, self._subs = self._subs, []
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        for sub in subs:
            sub.closed = True
        if loop is None or thread is None:
            return

        def stop() -> None:
            if self._runner is not None:
                self._runner.cancel()
            loop.call_soon(loop.stop)

        loop.call_soon_threadsafe(stop)
        thread.join(timeout=5)
        with contextlib.suppress(Exception):
            if not thread.is_alive():
                loop.close()


_HUBS: dict[tuple[str, str | None], EventHub] = {}
_HUBS_LOCK = threading.Lock()


def get_hub(config: ClientConfig) -> EventHub:
    """The process-wide hub for this host (created on first use)."""
    key = (config.url, config.token)
    with _HUBS_LOCK:
        hub = _HUBS.get(key)
        if hub is None:
            hub = _HUBS[key] = EventHub(config)
        return hub


def close_hubs() -> None:
    """Close every hub (extension unload, tests)."""
    with _HUBS_LOCK:
        hubs = list(_HUBS.values())
        _HUBS.clear()
    for hub in hubs:
        hub.close()
