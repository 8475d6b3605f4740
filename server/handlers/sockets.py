"""WebSocket handlers: live task logs for users, and the runner control socket."""

from __future__ import annotations

import asyncio
import codecs
import json
from typing import TYPE_CHECKING, Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import allow_unauthenticated, ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web, websocket

from kohakuriver_lab.errors import KohakuRiverError
from kohakuriver_lab.models import LogStream, Role, Scope, TaskStatus
from kohakuriver_lab.protocol import MAX_MESSAGE_BYTES

from ..livesockets import CLOSE_FORBIDDEN
from ..policy import Caller, event_view
from ..queryparams import EVENTS, LOG_FOLLOW
from .base import AUTH_RESOURCE, CallerMixin
from .errors import JsonErrorsMixin, send_json_error

if TYPE_CHECKING:
    from ..services import ClusterServices

FOLLOW_CHUNK = 64 * 1024


class WatchedSocket(
    JsonErrorsMixin, CallerMixin, ExtensionHandlerMixin, JupyterHandler, websocket.WebSocketHandler
):
    """A user socket whose rights are re-checked while it is open: it is registered by
    identity (:mod:`..livesockets`) from the handshake on, and revocation, deactivation,
    a role change or the token's expiry close or narrow it at once."""

    auth_resource = AUTH_RESOURCE
    _opened = False
    _ended: tuple[int, str] | None = None

    async def prepare(self, *args: Any, **kwargs: Any) -> Any:
        """A refused API token (revoked, expired) is a JSON 401, not an error page."""
        try:
            return await super().prepare(*args, **kwargs)
        except KohakuRiverError as exc:
            send_json_error(self, exc.status_code, exc.message)

    async def watched(self, *args: Any, **kwargs: Any) -> None:
        """Upgrade (``super().get``) with the socket registered until it ends; a plain
        request (no ``Upgrade: websocket``) gets a JSON 426 Upgrade Required."""
        headers = self.request.headers
        upgrade = headers.get("Upgrade", "").lower() == "websocket"
        if not upgrade or "upgrade" not in headers.get("Connection", "").lower():
            raise web.HTTPError(426, "this route is a WebSocket: send Upgrade: websocket")
        caller = self.caller
        registry = self.services.sockets
        registry.add(self, caller.username, caller.token_id, self._token_expires_at)
        try:
            await super().get(*args, **kwargs)  # type: ignore[misc]
        finally:
            registry.remove(self)

    def open(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Start, unless the rights went away during the handshake."""
        self._opened = True
        if self._ended is not None:
            self.close(*self._ended)
            return
        self.started()

    def started(self) -> None:
        """Begin sending (subclasses)."""

    def end(self, code: int, reason: str) -> None:
        """Close with ``code`` and ``reason`` (once open; before that, as soon as it opens)."""
        if self._ended is None:
            self._ended = (code, reason)
        if self._opened:
            self.close(code, reason)

    def rights_changed(self) -> None:
        """Re-read the caller (a role change): close (4003) if it may no longer use this
        socket, else go on with the new rights."""
        self._caller = None
        try:
            self.check_rights(self.caller)
        except KohakuRiverError as exc:
            self.end(CLOSE_FORBIDDEN, exc.message)

    def check_rights(self, caller: Caller) -> None:
        """Raise (403) unless ``caller`` may use this socket (subclasses)."""

    def on_message(self, message: str | bytes) -> None:
        """Clients have nothing to say on these sockets."""

    def on_close(self) -> None:
        """Stop watching."""
        self.services.sockets.remove(self)


class LogFollowHandler(WatchedSocket):
    """Follow a task's output live: ``{"type":"log",...}`` frames, then ``{"type":"end",...}``."""

    @ws_authenticated
    async def get(self, task_id: str, *args: Any, **kwargs: Any) -> None:
        """Authorize, check the task exists, then upgrade."""
        user = self.current_user
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, user, "read", AUTH_RESOURCE)
        )
        if not allowed:
            raise web.HTTPError(403)
        try:
            info = self.task_with_details(task_id)
        except KohakuRiverError as exc:
            raise web.HTTPError(exc.status_code, exc.message) from None
        self._task_id, self._owner = info.task_id, info.owner
        stream = LOG_FOLLOW["stream"].choice(self)
        self._streams = list(LogStream) if stream == "both" else [LogStream(stream)]
        self._start_offset = LOG_FOLLOW["offset"].integer(self)
        await self.watched(task_id, *args, **kwargs)

    def check_rights(self, caller: Caller) -> None:
        """Only those who see the task's details follow its logs."""
        caller.require_details(self._owner, f"task {self._task_id}")

    def started(self) -> None:
        """Start pumping."""
        self._pump = asyncio.ensure_future(self._follow())

    def on_close(self) -> None:
        """Stop pumping."""
        super().on_close()
        pump = getattr(self, "_pump", None)
        if pump is not None:
            pump.cancel()

    async def _follow(self) -> None:
        services = self.services
        logs = services.logs
        task_id = self._task_id
        offsets = dict.fromkeys(self._streams, self._start_offset)
        decoders = {
            s: codecs.getincrementaldecoder("utf-8")(errors="replace") for s in self._streams
        }
        event = logs.subscribe(task_id)
        try:
            while True:
                event.clear()
                sent = False
                for stream in self._streams:
                    data = logs.read(task_id, stream, offsets[stream], FOLLOW_CHUNK)
                    if not data:
                        continue
                    start = offsets[stream]
                    offsets[stream] += len(data)
                    frame = {
                        "type": "log",
                        "stream": stream.value,
                        "offset": start,
                        "next_offset": offsets[stream],
                        "data": decoders[stream].decode(data),
                    }
                    await self.write_message(json.dumps(frame))
                    sent = True
                if sent:
                    continue
                info = services.tasks.get(task_id)
                if TaskStatus(info.status).is_final and not services.gateway.waiting_for_logs(
                    task_id
                ):
                    end = {"type": "end", "status": info.status.value, "exit_code": info.exit_code}
                    await self.write_message(json.dumps(end))
                    self.close(1000)
                    return
                try:
                    await asyncio.wait_for(event.wait(), timeout=5.0)
                except asyncio.TimeoutError:
                    pass
        except websocket.WebSocketClosedError:
            return
        finally:
            logs.unsubscribe(task_id, event)


class EventsHandler(WatchedSocket):
    """Live task and node changes: ``{"type": "task", "task": TaskInfo}``,
    ``{"type": "node", "name", "status"}``, ``{"type": "metrics", "name", "metrics"}``.

    Query: ``topics`` (default ``tasks,nodes``; ``tasks`` when filtering by task or batch),
    ``tasks`` (comma-separated IDs), ``batch``.
    The first frame is ``{"type": "subscribed", "topics": [...]}``. Each frame is shown
    with the caller's rights when it is sent (a role change applies to the next frame).
    """

    TOPICS = frozenset({"tasks", "nodes"})

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Authorize and read the filters, then upgrade."""
        user = self.current_user
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, user, "read", AUTH_RESOURCE)
        )
        if not allowed:
            raise web.HTTPError(403)
        try:
            self.check_rights(self.caller)
        except KohakuRiverError as exc:
            raise web.HTTPError(exc.status_code, exc.message) from None
        ids, batch = EVENTS["tasks"].idents(self), EVENTS["batch"].ident(self)
        default = "tasks" if ids or batch is not None else "tasks,nodes"  # a task filter
        asked = EVENTS["topics"].text(self) or default
        topics = frozenset(t for t in asked.split(",") if t)
        if not topics or not topics <= self.TOPICS:
            raise web.HTTPError(400, "topics must be a comma-separated subset of tasks,nodes")
        self._filters = (topics, ids, batch)
        await self.watched(*args, **kwargs)

    def check_rights(self, caller: Caller) -> None:
        """Viewers and up follow events."""
        caller.require(Role.VIEWER, Scope.READ, "following cluster events")

    def started(self) -> None:
        """Subscribe and start sending."""
        topics, ids, batch = self._filters
        self._sub = self.services.events.subscribe(topics, ids, batch)
        self._sender = asyncio.ensure_future(self._send(sorted(topics)))

    def on_close(self) -> None:
        """Unsubscribe."""
        super().on_close()
        sub = getattr(self, "_sub", None)
        if sub is not None:
            self.services.events.unsubscribe(sub)
            self._sender.cancel()

    async def _send(self, topics: list[str]) -> None:
        try:
            await self.write_message(json.dumps({"type": "subscribed", "topics": topics}))
            while True:
                delivery = await self._sub.queue.get()
                if self._ended is not None:  # closed for its rights: nothing more
                    return
                if delivery is None:  # fell behind and was dropped
                    self.close(1013, "too slow: reconnect and re-read the state")
                    return
                shown = event_view(self.caller, *delivery)  # the rights of now
                if shown is not None:
                    await self.write_message(json.dumps(shown))
        except websocket.WebSocketClosedError:
            return


class RunnerSocketHandler(websocket.WebSocketHandler):
    """The runner control socket. Runners authenticate with a runner token, never with
    Jupyter credentials, and a runner token opens nothing but this socket."""

    node: str | None = None
    token_id: int = 0
    token_node: str | None = None
    address: str | None = None

    @property
    def services(self) -> ClusterServices:
        """The host's services."""
        return self.settings["kohakuriver_services"]  # type: ignore[no-any-return]

    @property
    def max_message_size(self) -> int:
        """Refuse frames larger than the protocol allows."""
        return MAX_MESSAGE_BYTES

    @allow_unauthenticated  # not a Jupyter user: authenticated by runner token below
    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Check the runner token, then upgrade."""
        header = self.request.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise web.HTTPError(401, "runner token required")
        row = self.services.tokens.verify(secret.strip())
        if row is None:
            raise web.HTTPError(403, "invalid or revoked runner token")
        self.token_id = row.token_id
        self.token_node = row.node
        self.address = self.request.remote_ip
        await super().get(*args, **kwargs)

    async def on_message(self, message: str | bytes) -> None:
        """Hand the frame to the gateway (which may wait: the runner's next frame is read
        after this returns, so a runner over its message rate is slowed down)."""
        await self.services.gateway.receive(self, message)

    def on_close(self) -> None:
        """Tell the gateway."""
        self.services.gateway.on_close(self)
