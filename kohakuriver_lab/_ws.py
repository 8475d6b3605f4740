"""The live log stream (a WebSocket) and the bridge that lets sync code iterate it."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar
from urllib.parse import urlencode

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from kohakuriver_lab._client_config import ClientConfig
from kohakuriver_lab._http import (
    BadResponse,
    HostUnreachable,
    TaskRef,
    error_for_status,
    path_id,
)
from kohakuriver_lab.errors import KohakuRiverError

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 8 * 1024 * 1024


def follow_url(config: ClientConfig, task_id: TaskRef, stream: str, offset: int) -> str:
    """``ws(s)://.../tasks/{id}/logs/follow?stream=...&offset=...``."""
    base = config.api_url.replace("http", "ws", 1)  # http -> ws, https -> wss
    query = urlencode({"stream": stream, "offset": offset})
    return f"{base}tasks/{path_id(task_id)}/logs/follow?{query}"


def _handshake_error(exc: InvalidStatus) -> KohakuRiverError:
    response = exc.response
    message = response.reason_phrase or "WebSocket handshake refused"
    try:
        body = json.loads(response.body or b"")
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            message = body["message"]
    except ValueError:
        pass
    return error_for_status(response.status_code, message)


RIGHTS_CLOSE_CODES = {4001: 401, 4003: 403}
"""Close codes the host sends when the caller's rights go away (token revoked or expired:
4001; account deactivated, or no longer allowed to read the task: 4003) → HTTP status."""


async def follow(
    config: ClientConfig, task_id: TaskRef, stream: str, offset: int, timeout: float
) -> AsyncIterator[tuple[str, str]]:
    """Yield ``(stream, text)`` until the host sends ``end``."""
    url = follow_url(config, task_id, stream, offset)
    headers = config.auth_headers()
    try:
        async with connect(
            url,
            additional_headers=headers,
            open_timeout=timeout,
            max_size=MAX_FRAME_BYTES,
            ssl=config.ws_ssl(url),
        ) as ws:
            async for raw in ws:
                frame = _frame(raw)
                kind = frame.get("type")
                if kind == "log":
                    yield str(frame.get("stream", "stdout")), str(frame.get("data", ""))
                elif kind == "end":
                    return
                elif kind == "error":
                    raise KohakuRiverError(str(frame.get("message", "log stream error")))
    except InvalidStatus as exc:
        raise _handshake_error(exc) from exc
    except ConnectionClosed as exc:
        status = RIGHTS_CLOSE_CODES.get(exc.rcvd.code) if exc.rcvd else None
        if status is not None and exc.rcvd is not None:  # the host took the caller's rights
            raise error_for_status(status, exc.rcvd.reason or "access withdrawn") from exc
        raise HostUnreachable(f"log stream {url} failed: {exc or type(exc).__name__}") from exc
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise HostUnreachable(f"log stream {url} failed: {exc or type(exc).__name__}") from exc
    raise HostUnreachable(f"log stream {url} closed before the task ended")


def _frame(raw: str | bytes) -> dict[str, Any]:
    try:
        frame = json.loads(raw)
    except ValueError as exc:
        raise BadResponse(f"log stream sent a non-JSON frame: {raw[:100]!r}") from exc
    if not isinstance(frame, dict):
        raise BadResponse("log stream sent a frame that is not a JSON object")
    return frame


# =============================================================================
# Sync bridge
# =============================================================================


class LoopThread:
    """A private event loop in a daemon thread; works even where a loop already runs (Jupyter)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="kohakuriver-client-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the private loop and wait for it."""
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in a notebook: stop the coroutine too
            raise

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        """Iterate an async iterator from sync code, closing it when the caller stops."""

        async def step() -> T:
            return await agen.__anext__()

        try:
            while True:
                try:
                    item = self.run(step())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                try:
                    self.run(asyncio.wait_for(aclose(), 5))
                except Exception:  # already finished, or still unwinding after a cancel
                    log.debug("closing the log stream failed", exc_info=True)

    def close(self) -> None:
        """Stop the loop and its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()
