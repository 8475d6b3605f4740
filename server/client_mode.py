"""Client mode: this Jupyter server is not a cluster host but a proxy to a remote one.

kohakuriver-lab in a lab member's own JupyterLab (a laptop, a JupyterHub single-user server)
with ``c.ClusterHostApp.remote_url`` and a personal API token (``kra_...``) serves the same
panel and magics: every ``/kohakuriver/api/...`` request that passed *local* Jupyter
authentication is forwarded to the host with the member's token (never the local
credentials), and the two live WebSockets are relayed frame by frame. There is no database,
scheduler, runner or sweep here (architecture §10, way (a)).

:class:`RemoteHost` is the one place that talks to the host; its failures are
:class:`RemoteUnavailable` (502) or, for a refused WebSocket handshake, the host's own
status and message. The handlers are in ``handlers/proxy.py``.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode

import httpx
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketError, websocket_connect

from kohakuriver_lab import __version__
from kohakuriver_lab._client_config import API_TOKEN_PREFIX, TOKEN_ENV, URL_ENV, ClientConfig
from kohakuriver_lab._http import error_for_status
from kohakuriver_lab.errors import KohakuRiverError, NotFound

CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 900.0
"""Longer than any API call takes (``env_exec`` waits up to 11 minutes)."""
WS_PING_INTERVAL = 30.0

REQUEST_HEADERS = ("Accept", "Content-Type")
"""Request headers passed on; never ``Authorization`` or ``Cookie`` (the local credentials)."""
RESPONSE_HEADERS = (
    "Content-Type",
    "Content-Disposition",
    "Cache-Control",
    "ETag",
    "Last-Modified",
    "Retry-After",
    "X-Content-SHA256",
)
"""Response headers passed back (not ``Set-Cookie``: the host's cookies mean nothing here)."""


LOCAL_PARAMS = frozenset({"token", "_xsrf"})
"""Query parameters that are credentials of this server, never forwarded."""


class ClientModeError(KohakuRiverError):
    """Client mode is misconfigured (no token, a bad URL, the headless host as a client)."""


class RemoteUnavailable(KohakuRiverError):
    """The cluster host could not be reached, or broke off its answer (502)."""

    status_code = 502


@dataclass(frozen=True)
class RemoteSettings:
    """Where the cluster host is and how to authenticate to it (``url`` ends in ``/``)."""

    url: str
    token: str
    ca_certs: str = ""
    source: str = "configuration"

    @property
    def api_url(self) -> str:
        """``{url}kohakuriver/api/``."""
        return ClientConfig(self.url, self.token).api_url

    def __repr__(self) -> str:  # never the token
        return f"RemoteSettings(url={self.url!r}, source={self.source!r})"


def env_remote_url(environ: Mapping[str, str]) -> str:
    """The remote host from the environment: ``$KOHAKURIVER_URL``, but only together with a
    personal API token in ``$KOHAKURIVER_TOKEN`` (a host exports its own Jupyter token to
    its kernels and terminals, so a Jupyter server started there stays a host)."""
    if environ.get(TOKEN_ENV, "").startswith(API_TOKEN_PREFIX):
        return environ.get(URL_ENV, "")
    return ""


def remote_settings(url: str, token: str, ca_certs: str = "", source: str = "") -> RemoteSettings:
    """Check and normalise the client-mode configuration."""
    if not url.startswith(("http://", "https://")):
        raise ClientModeError(
            f"ClusterHostApp.remote_url must start with http:// or https://, got {url!r}"
        )
    if not token:
        raise ClientModeError(
            "client mode needs a token for the cluster host: set ClusterHostApp.remote_token "
            f"(or ${TOKEN_ENV}) to a personal API token (kra_...)"
        )
    if ca_certs and not os.path.isfile(ca_certs):
        raise ClientModeError(f"ClusterHostApp.remote_ca_certs: {ca_certs} is not a file")
    url = url if url.endswith("/") else url + "/"
    return RemoteSettings(url, token, ca_certs, source or "configuration")


def is_runner_only(path: str) -> bool:
    """Whether an API path (below ``kohakuriver/api/``) is a route for runners only: the
    runner socket and environment uploads."""
    path = path.split("?", 1)[0]
    if path.startswith("runners/"):
        return True
    return path.startswith("environments/") and path.rstrip("/").endswith("/upload")


def check_api_path(path: str) -> str:
    """The path and query to forward: 404 for runner-only routes and dot segments (which
    could climb out of the API); the local credentials (``token``, ``_xsrf`` query
    parameters, which JupyterLab adds to WebSocket URLs) are dropped."""
    route, _, query = path.partition("?")
    segments = unquote(route).split("/")
    if any(s in (".", "..") for s in segments) or is_runner_only(route):
        raise NotFound(f"no such route: /kohakuriver/api/{route}")
    if not query:
        return route
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in LOCAL_PARAMS]
    return f"{route}?{urlencode(kept)}" if kept else route


def _message(body: bytes, fallback: str) -> str:
    try:
        data = json.loads(body or b"")
    except ValueError:
        return fallback
    if isinstance(data, dict) and isinstance(data.get("message"), str) and data["message"]:
        return str(data["message"])
    return fallback


class RemoteHost:
    """The connection to the cluster host: forwards REST requests and opens WebSockets,
    always authenticated with the configured token."""

    def __init__(self, settings: RemoteSettings) -> None:
        self.settings = settings
        self._ssl: ssl.SSLContext | None = None
        if settings.url.startswith("https://"):
            self._ssl = ssl.create_default_context(cafile=settings.ca_certs or None)
        self._auth = ClientConfig(settings.url, settings.token).auth_headers()
        self._http: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        """The host's Jupyter base URL."""
        return self.settings.url

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT),
                verify=self._ssl if self._ssl is not None else True,
                follow_redirects=False,
                headers={"User-Agent": f"kohakuriver-lab-proxy/{__version__}"},
            )
        return self._http

    def _unavailable(self, exc: BaseException) -> RemoteUnavailable:
        what = "timed out" if isinstance(exc, TimeoutError | httpx.TimeoutException) else "failed"
        detail = str(exc) or type(exc).__name__
        return RemoteUnavailable(
            f"cluster host {self.url} is unreachable: request {what}: {detail}"
        )

    @asynccontextmanager
    async def forward(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> AsyncIterator[httpx.Response]:
        """Send a request to ``{api_url}{path}`` (``path`` may carry a query); yields the
        streaming response, whatever its status."""
        sent = {k: v for k in REQUEST_HEADERS if (v := headers.get(k))}
        sent.update(self._auth)
        request = self._client().build_request(
            method, self.settings.api_url + check_api_path(path), headers=sent, content=body
        )
        try:
            response = await self._client().send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._unavailable(exc) from None
        try:
            yield response
        finally:
            await response.aclose()

    async def chunks(self, response: httpx.Response) -> AsyncIterator[bytes]:
        """The body of a forwarded response (broken off: :class:`RemoteUnavailable`)."""
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise self._unavailable(exc) from None

    async def websocket(self, path: str) -> WebSocketClientConnection:
        """Open ``{api_url}{path}`` as a WebSocket; a refused handshake raises the host's
        status and message, an unreachable host :class:`RemoteUnavailable`."""
        url = self.settings.api_url.replace("http", "ws", 1) + check_api_path(path)
        request = HTTPRequest(
            url,
            headers=dict(self._auth),
            connect_timeout=CONNECT_TIMEOUT,
            request_timeout=CONNECT_TIMEOUT * 3,
            ssl_options=self._ssl,
            user_agent=f"kohakuriver-lab-proxy/{__version__}",
        )
        try:
            return await websocket_connect(request, ping_interval=WS_PING_INTERVAL)
        except HTTPClientError as exc:
            if exc.code == 599 or exc.response is None:
                raise self._unavailable(exc) from None
            reason = exc.response.reason or f"HTTP {exc.code}"
            raise error_for_status(exc.code, _message(exc.response.body, reason)) from None
        except (OSError, TimeoutError, WebSocketError) as exc:  # refused, DNS, TLS, not a WS
            raise self._unavailable(exc) from None

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def describe(settings: RemoteSettings) -> str:
    """A log line for start-up (no secrets)."""
    return f"kohakuriver client mode: cluster host {settings.url} (from {settings.source})"
