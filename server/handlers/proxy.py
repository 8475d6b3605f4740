"""Client-mode handlers: the cluster API of a remote host, behind local Jupyter authentication.

Every request is first authenticated and authorized by *this* Jupyter server (its token,
login and authorizer); only then is it forwarded, with the configured API token of the
remote host instead of the local credentials (``server/client_mode.py``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import web, websocket

from kohakuriver_lab.errors import KohakuRiverError

from ..client_mode import RESPONSE_HEADERS, RemoteHost
from .base import AUTH_RESOURCE, MAX_SUBMIT_BYTES

API_PATH = "kohakuriver/api/"
NO_BODY = frozenset({204, 304})
WS_LOST = 1014
"""Close code sent to the local side when the host's socket drops without a close frame
("bad gateway")."""


class _RemoteMixin:
    """The remote host and the part of a request's URI below ``kohakuriver/api/``."""

    settings: dict[str, Any]
    request: Any
    base_url: str

    @property
    def remote(self) -> RemoteHost:
        """The cluster host this server proxies to."""
        return self.settings["kohakuriver_remote"]  # type: ignore[no-any-return]

    def api_path(self) -> str:
        """The raw (still percent-encoded) path and query below ``kohakuriver/api/``."""
        prefix = url_path_join(self.base_url, API_PATH)
        uri = str(self.request.uri)
        return uri[len(prefix) :] if uri.startswith(prefix) else uri.lstrip("/")


class ProxyHandler(_RemoteMixin, ExtensionHandlerMixin, APIHandler):
    """Any REST route of the cluster API, forwarded to the host once local auth passed."""

    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized
    async def get(self, _path: str) -> None:
        await self._forward()

    @web.authenticated
    @authorized
    async def post(self, _path: str) -> None:
        await self._forward()

    @web.authenticated
    @authorized
    async def put(self, _path: str) -> None:
        await self._forward()

    @web.authenticated
    @authorized
    async def patch(self, _path: str) -> None:
        await self._forward()

    @web.authenticated
    @authorized
    async def delete(self, _path: str) -> None:
        await self._forward()

    async def _forward(self) -> None:
        request = self.request
        if len(request.body) > MAX_SUBMIT_BYTES:
            raise web.HTTPError(413, f"request body is larger than {MAX_SUBMIT_BYTES} bytes")
        body = request.body if request.method in ("POST", "PUT", "PATCH") else None
        remote = self.remote
        async with remote.forward(request.method, self.api_path(), request.headers, body) as resp:
            self.set_status(resp.status_code, resp.reason_phrase or None)
            for name in RESPONSE_HEADERS:
                if name in resp.headers:
                    self.set_header(name, resp.headers[name])
            content_type = resp.headers.get("Content-Type", "application/json")
            if resp.status_code not in NO_BODY:
                async for chunk in remote.chunks(resp):
                    self.write(chunk)
                    await self.flush()
        self.finish(set_content_type=content_type)  # APIHandler would make it JSON

    def _handle_request_exception(self, e: BaseException) -> None:
        """The one place proxy errors become HTTP: ``{"message": ...}`` with their status;
        a response broken off half-way is cut (not finished as if it were complete)."""
        if isinstance(e, KohakuRiverError) and not self._finished:
            self.log.warning(
                "%s %s -> %d: %s", self.request.method, self.request.path, e.status_code, e.message
            )
            if self._headers_written:
                self.request.connection.close()
                return
            self.clear()
            self.set_status(e.status_code)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"message": e.message}))
            return
        super()._handle_request_exception(e)  # type: ignore[misc]


class WebSocketProxyHandler(
    _RemoteMixin, ExtensionHandlerMixin, JupyterHandler, websocket.WebSocketHandler
):
    """The events and log-follow WebSockets, relayed frame by frame to and from the host;
    closing either side closes the other."""

    auth_resource = AUTH_RESOURCE
    _upstream: websocket.WebSocketClientConnection | None = None
    _relay: asyncio.Future[None] | None = None

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Authorize locally, open the host's socket (its refusal is ours), then upgrade."""
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE)
        )
        if not allowed:
            raise web.HTTPError(403)
        if self.request.headers.get("Upgrade", "").lower() == "websocket":
            try:
                self._upstream = await self.remote.websocket(self.api_path())
            except KohakuRiverError as exc:
                raise web.HTTPError(exc.status_code, exc.message) from None
        await super().get(*args, **kwargs)  # type: ignore[misc]
        if self.ws_connection is None and self._upstream is not None:  # upgrade refused
            self._upstream.close()

    def open(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Start relaying the host's frames."""
        self._relay = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        upstream = self._upstream
        assert upstream is not None
        try:
            while (message := await upstream.read_message()) is not None:
                await self.write_message(message, binary=isinstance(message, bytes))
        except websocket.WebSocketClosedError:
            pass
        finally:
            upstream.close()
            code = upstream.close_code
            if code is None or code in (1005, 1006, 1015):  # not sendable: lost, not closed
                self.close(WS_LOST, "connection to the cluster host lost")
            else:
                self.close(code, upstream.close_reason)

    def on_message(self, message: str | bytes) -> None:
        """Pass a frame to the host."""
        if self._upstream is not None:
            try:
                self._upstream.write_message(message, binary=isinstance(message, bytes))
            except websocket.WebSocketClosedError:
                pass

    def on_close(self) -> None:
        """Close the host's socket too."""
        if self._upstream is not None:
            self._upstream.close()


_ID = r"\d{1,20}"


def proxy_routes() -> list[tuple[str, type[Any]]]:
    """The client-mode URL table: the two WebSockets, then everything else (base URL is
    prefixed by jupyter_server)."""
    return [
        ("/kohakuriver/api/events", WebSocketProxyHandler),
        (rf"/kohakuriver/api/tasks/{_ID}/logs/follow", WebSocketProxyHandler),
        ("/kohakuriver/api/(.*)", ProxyHandler),
    ]
