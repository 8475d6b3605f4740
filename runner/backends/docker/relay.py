"""The job relay: notebook jobs in bridge-networked containers reach a loopback host.

When the runner's ``host_url`` is a loopback address (host and runner on one machine), a
container on Docker's bridge cannot reach it, and ``network_mode: host`` would hand the job
every loopback service of the node (the host's whole Jupyter API, databases, ...). Instead the
runner listens on the container network's gateway address and forwards exactly the routes a
job calls with its task token (``Authorization: Task ...``)::

    GET        {base}kohakuriver/api/tasks/{id}/job
    POST       {base}kohakuriver/api/tasks/{id}/progress
    GET, POST  {base}kohakuriver/api/tasks/{id}/results
    GET, PUT   {base}kohakuriver/api/tasks/{id}/artifacts/{name}

Everything else gets 403 from the relay and never reaches the host. One request per
connection; request bodies must carry ``Content-Length``; cookies and forwarding headers are
dropped and ``Host`` is the host's own. The port is kept in ``{state_dir}/relay.json`` so jobs
started before a runner restart find it again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import ssl
from pathlib import Path
from urllib.parse import urlsplit

HEAD_LIMIT = 32 * 1024
IDLE_TIMEOUT = 120.0
MAX_CONNECTIONS = 64
DROPPED_HEADERS = frozenset(
    {"host", "connection", "keep-alive", "proxy-authorization", "proxy-connection", "cookie"}
    | {"upgrade", "te", "trailer", "forwarded", "x-forwarded-for", "x-forwarded-host"}
    | {"x-forwarded-proto", "x-real-ip"}
)
ROUTES = {
    "job": ("GET",),
    "progress": ("POST",),
    "results": ("GET", "POST"),
    "artifacts": ("GET", "PUT"),
}


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` names this machine's loopback (unreachable from a bridge network)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class JobRelay:
    """Forwards the job routes from ``address:port`` to ``host_url``."""

    def __init__(
        self,
        host_url: str,
        state_file: Path,
        ssl_context: ssl.SSLContext | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        parts = urlsplit(host_url)
        self._https = parts.scheme in ("https", "wss")
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or (443 if self._https else 80))
        self._netloc = parts.netloc
        self._base = parts.path if parts.path.endswith("/") else parts.path + "/"
        self._ssl = ssl_context or (ssl.create_default_context() if self._https else None)
        self._state_file = state_file
        self._log = log or logging.getLogger("kohakuriver.runner.relay")
        self._route = re.compile(
            rf"^{re.escape(self._base)}kohakuriver/api/tasks/\d{{1,20}}/"
            r"(job|progress|results|artifacts/[A-Za-z0-9][A-Za-z0-9._-]{0,99})(\?[^\s#]*)?$"
        )
        self._server: asyncio.Server | None = None
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self.url: str | None = None

    async def start(self, address: str) -> str:
        """Listen on ``address`` (the stored port when free); the URL containers use."""
        if self._server is not None and self.url is not None:
            return self.url
        port = self._stored_port(address)
        try:
            self._server = await asyncio.start_server(self._serve, address, port, limit=HEAD_LIMIT)
        except OSError:
            self._server = await asyncio.start_server(self._serve, address, 0, limit=HEAD_LIMIT)
        port = self._server.sockets[0].getsockname()[1]
        self._state_file.write_text(json.dumps({"address": address, "port": port}))
        host = f"[{address}]" if ":" in address else address
        self.url = f"http://{host}:{port}{self._base}"
        self._log.info("job relay on %s -> %s (job routes only)", self.url, self._netloc)
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _stored_port(self, address: str) -> int:
        try:
            data = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return 0
        port = data.get("port") if isinstance(data, dict) else None
        same = isinstance(data, dict) and data.get("address") == address
        return port if same and isinstance(port, int) and 0 < port < 65536 else 0

    # ----- one connection -----

    def allowed(self, method: str, target: str, headers: dict[str, str]) -> str | None:
        """``None`` if the request may pass, else why not."""
        found = self._route.match(target)
        if found is None:
            return "only a job's own routes are relayed"
        if method not in ROUTES[found.group(1).split("/")[0]]:
            return f"{method} is not relayed here"
        if not headers.get("authorization", "").startswith("Task "):
            return "a task token is required"
        if "transfer-encoding" in headers:
            return "send a Content-Length"
        if not headers.get("content-length", "0").isdigit():
            return "bad Content-Length"
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self._slots:
            try:
                await self._relay(reader, writer)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
                pass
            except asyncio.LimitOverrunError:
                await _answer(writer, 431, "request head too large")
            finally:
                writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.append((name.strip(), value.strip()))
        lookup = {name.lower(): value for name, value in headers}
        refusal = self.allowed(method, target, lookup)
        if refusal is not None:
            await _answer(writer, 403, f"kohakuriver job relay: {refusal}")
            return
        host, port = self._upstream
        server_hostname = host if self._https else None
        up_reader, up_writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=self._ssl, server_hostname=server_hostname),
            IDLE_TIMEOUT,
        )
        try:
            kept = [(n, v) for n, v in headers if n.lower() not in DROPPED_HEADERS]
            out = [f"{method} {target} HTTP/1.1", f"Host: {self._netloc}", "Connection: close"]
            out += [f"{n}: {v}" for n, v in kept]
            up_writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
            await _copy(reader, up_writer, int(lookup.get("content-length", "0")))
            await _copy(up_reader, writer, None)
        finally:
            up_writer.close()


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter, size: int | None) -> None:
    """``size`` bytes (``None``: until EOF) from ``src`` to ``dst``."""
    left = size
    while left is None or left > 0:
        chunk = await asyncio.wait_for(
            src.read(65536 if left is None else min(left, 65536)), IDLE_TIMEOUT
        )
        if not chunk:
            if left:
                raise asyncio.IncompleteReadError(b"", left)
            break
        dst.write(chunk)
        await dst.drain()
        if left is not None:
            left -= len(chunk)


async def _answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    body = message.encode()
    reason = {403: "Forbidden", 431: "Request Header Fields Too Large"}.get(status, "Error")
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
