"""A minimal in-test host: accepts runner WebSockets, records messages, sends orders."""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from kohakuriver_lab.protocol import (
    MAX_MESSAGE_BYTES,
    Heartbeat,
    Hello,
    RunnerMessage,
    Welcome,
    encode,
    parse_runner_message,
)


class FakeHost:
    """Records ``(connection number, message)``; heartbeats go to a separate list."""

    def __init__(
        self,
        *,
        heartbeat_interval: float = 0.05,
        log_offsets: dict[str, dict[str, int]] | None = None,
        reject_status: int | None = None,
        drop_after_welcome: int = 0,
    ) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.log_offsets = log_offsets or {}
        self.reject_status = reject_status
        self.drop_after_welcome = drop_after_welcome
        self.messages: asyncio.Queue[tuple[int, RunnerMessage]] = asyncio.Queue()
        self.heartbeats: list[Heartbeat] = []
        self.hellos: list[Hello] = []
        self.requests: list[tuple[str, Headers]] = []
        self.connection: ServerConnection | None = None
        self.server: Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/base/"

    async def __aenter__(self) -> FakeHost:
        self.server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            max_size=MAX_MESSAGE_BYTES,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self.requests.append((request.path, request.headers))
        if self.reject_status is not None:
            return conn.respond(HTTPStatus(self.reject_status), "refused\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        hello = parse_runner_message(await ws.recv())
        assert isinstance(hello, Hello)
        self.hellos.append(hello)
        number = len(self.hellos)
        await self.messages.put((number, hello))
        welcome = Welcome(
            node=hello.node,
            heartbeat_interval=self.heartbeat_interval,
            log_offsets=self.log_offsets,  # type: ignore[arg-type]
        )
        await ws.send(encode(welcome))
        if number <= self.drop_after_welcome:
            await ws.close()
            return
        self.connection = ws
        async for raw in ws:
            message = parse_runner_message(raw)
            if isinstance(message, Heartbeat):
                self.heartbeats.append(message)
            else:
                await self.messages.put((number, message))

    async def send(self, message: Any) -> None:
        assert self.connection is not None
        await self.connection.send(message if isinstance(message, str) else encode(message))

    async def next(self, timeout: float = 15.0) -> RunnerMessage:
        return (await asyncio.wait_for(self.messages.get(), timeout))[1]

    async def until(self, predicate: Any, timeout: float = 15.0) -> list[RunnerMessage]:
        """Collect messages up to and including the first one matching ``predicate``."""
        seen: list[RunnerMessage] = []
        while True:
            message = await self.next(timeout)
            seen.append(message)
            if predicate(message):
                return seen
