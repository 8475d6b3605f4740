"""The runner's WebSocket session with the host: hello/welcome, orders, state, logs, heartbeats.

One :class:`RunnerAgent` dials the host, reconciles with ``hello`` on every (re)connect and
reconnects with exponential backoff and jitter. Tasks and their logs live on disk, so
nothing is lost while disconnected. All of a task's log bytes are sent before its final
``task_state``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

import kohakuriver_lab
from kohakuriver_lab.models import LogStream
from kohakuriver_lab.protocol import (
    MAX_LOG_CHUNK,
    MAX_MESSAGE_BYTES,
    Ack,
    ErrorMessage,
    ForgetTask,
    Heartbeat,
    Hello,
    KillTask,
    LogData,
    PauseTask,
    Request,
    ResumeTask,
    StartTask,
    TaskState,
    Welcome,
    encode,
    parse_host_message,
    runner_socket_url,
)
from kohakuriver_lab.runner.backends.base import Backend, TaskEvent
from kohakuriver_lab.runner.errors import BackendError, TaskStartError
from kohakuriver_lab.runner.metrics import MetricsSampler
from kohakuriver_lab.runner.nvml import Nvml
from kohakuriver_lab.runner.resources import discover

EXIT_AUTH_FAILED = 2
INITIAL_RECONNECT_DELAY = 0.5


class AuthenticationFailed(Exception):
    """The host refused the runner token (401/403): retrying will not help."""


# ===== Agent =====


class RunnerAgent:
    """Keeps one connection to the host alive and serves it."""

    def __init__(
        self,
        *,
        host_url: str,
        token: str,
        node: str,
        backend: Backend,
        nvml: Nvml | None = None,
        ssl_context: ssl.SSLContext | None = None,
        reconnect_max_delay: float = 30.0,
        log_poll_interval: float = 0.05,
        welcome_timeout: float = 30.0,
        log: logging.Logger | None = None,
    ) -> None:
        self.url = runner_socket_url(host_url)
        self._token = token
        self.node = node
        self.backend = backend
        self.nvml = nvml or Nvml()
        self.sampler = MetricsSampler(self.nvml)
        self.ssl_context = ssl_context
        self.reconnect_max_delay = reconnect_max_delay
        self.log_poll_interval = log_poll_interval
        self.welcome_timeout = welcome_timeout
        self.log = log or logging.getLogger("kohakuriver.runner.agent")
        self._stop = asyncio.Event()
        self.connections = 0

    def stop(self) -> None:
        """Ask :meth:`run` to close the connection and return (tasks keep running)."""
        self._stop.set()

    async def run(self) -> int:
        """Connect, serve, reconnect until stopped; returns the process exit status."""
        delay = INITIAL_RECONNECT_DELAY
        while not self._stop.is_set():
            session = _Session(self)
            try:
                await session.serve()
            except AuthenticationFailed as exc:
                self.log.error("the host refused this runner's token: %s", exc)
                return EXIT_AUTH_FAILED
            except (OSError, ConnectionClosed, InvalidHandshake, asyncio.TimeoutError) as exc:
                self.log.warning("connection to %s lost or failed: %s", self.url, exc)
            if session.welcomed:
                delay = INITIAL_RECONNECT_DELAY
            if self._stop.is_set():
                break
            wait = delay * random.uniform(0.5, 1.0)
            self.log.info("reconnecting in %.1f s", wait)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)
            delay = min(delay * 2, self.reconnect_max_delay)
        return 0

    async def hello(self) -> Hello:
        """The ``hello`` for this node: resources and every task the backend knows."""
        resources = discover(self.nvml)
        return Hello(
            node=self.node,
            hostname=socket.gethostname(),
            version=kohakuriver_lab.__version__,
            cores=resources.cores,
            numa=resources.numa,
            memory_total=resources.memory_total,
            gpus=resources.gpus,
            backends=self.backend.backend_names(),
            images=await self.backend.images(),
            tasks=await self.backend.list_tasks(),
        )

    def _connect(self) -> Any:
        return connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self._token}"},
            max_size=MAX_MESSAGE_BYTES,
            ssl=self.ssl_context if self.url.startswith("wss:") else None,
            open_timeout=10,
            user_agent_header=f"kohakuriver-runner/{kohakuriver_lab.__version__}",
        )


# ===== One connection =====


class _Session:
    """State of one connection: log offsets, the send lock, the worker tasks."""

    def __init__(self, agent: RunnerAgent) -> None:
        self.agent = agent
        self.backend = agent.backend
        self.log = agent.log
        self.welcomed = False
        self.offsets: dict[int, dict[LogStream, int]] = {}
        self.lock = asyncio.Lock()
        self.ws: ClientConnection | None = None
        self.preparing: dict[int, asyncio.Task[None]] = {}
        self.background: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        try:
            async with self.agent._connect() as ws:
                self.ws = ws
                await self._handshake(ws)
                await self._run_workers(ws)
        except InvalidStatus as exc:
            if exc.response.status_code in (401, 403):
                raise AuthenticationFailed(f"HTTP {exc.response.status_code}") from exc
            raise

    async def _handshake(self, ws: ClientConnection) -> None:
        while not self.backend.events.empty():  # hello carries the current state
            self.backend.events.get_nowait()
        hello = await self.agent.hello()
        await ws.send(encode(hello))
        while True:
            raw = await asyncio.wait_for(ws.recv(), self.agent.welcome_timeout)
            try:
                message = parse_host_message(raw)
            except pydantic.ValidationError as exc:
                self.log.warning("ignoring invalid message before welcome: %s", exc)
                continue
            if isinstance(message, ErrorMessage):
                raise InvalidHandshake(f"host refused hello: {message.message}")
            if isinstance(message, Welcome):
                break
            self.log.warning("ignoring %s before welcome", message.type)
        self.welcomed = True
        self.agent.connections += 1
        self.heartbeat_interval = max(0.05, message.heartbeat_interval)
        for report in hello.tasks:
            known = message.log_offsets.get(str(report.task_id), {})
            self.offsets[report.task_id] = {s: int(known.get(s, 0)) for s in LogStream}
        self.log.info(
            "connected to %s as %s (%d task(s))", self.agent.url, self.agent.node, len(hello.tasks)
        )

    async def _run_workers(self, ws: ClientConnection) -> None:
        workers: list[Callable[[], Awaitable[None]]] = [
            self._receive,
            self._heartbeats,
            self._pump_logs,
            self._forward_events,
        ]
        tasks = [asyncio.ensure_future(w()) for w in workers]
        stop = asyncio.ensure_future(self.agent._stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            spawned = list(self.background)
            for task in [*tasks, stop, *spawned]:
                task.cancel()
            await asyncio.gather(*tasks, stop, *spawned, return_exceptions=True)
        for task in done:
            if task is not stop and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    # ----- sending -----

    async def _send(self, message: pydantic.BaseModel) -> None:
        assert self.ws is not None
        await self.ws.send(encode(message))

    async def _flush_logs(self, task_id: int) -> None:
        """Send every byte of the task's output the host does not have yet (lock held)."""
        offsets = self.offsets.setdefault(task_id, {s: 0 for s in LogStream})
        sizes = self.backend.log_sizes(task_id)
        for stream in LogStream:
            while offsets[stream] < sizes.get(stream, 0):
                data = self.backend.read_log(task_id, stream, offsets[stream], MAX_LOG_CHUNK)
                if not data:
                    break
                await self._send(
                    LogData(
                        task_id=task_id,
                        stream=stream,
                        offset=offsets[stream],
                        data=base64.b64encode(data).decode(),
                    )
                )
                offsets[stream] += len(data)

    async def _send_state(self, event: TaskEvent) -> None:
        await self._send(
            TaskState(
                task_id=event.task_id,
                state=event.state,
                exit_code=event.exit_code,
                reason=event.reason,
                ssh_port=event.ssh_port,
            )
        )

    # ----- workers -----

    async def _heartbeats(self) -> None:
        while True:
            await self._send(Heartbeat(metrics=self.agent.sampler.sample()))
            await asyncio.sleep(self.heartbeat_interval)

    async def _pump_logs(self) -> None:
        while True:
            async with self.lock:
                for task_id in list(self.offsets):
                    await self._flush_logs(task_id)
            await asyncio.sleep(self.agent.log_poll_interval)

    async def _forward_events(self) -> None:
        while True:
            event = await self.backend.events.get()
            async with self.lock:
                await self._flush_logs(event.task_id)
                await self._send_state(event)

    async def _receive(self) -> None:
        assert self.ws is not None
        async for raw in self.ws:
            try:
                message = parse_host_message(raw)
            except pydantic.ValidationError as exc:
                self.log.warning("ignoring invalid message from host: %s", exc)
                continue
            await self._handle(message)

    # ----- orders -----

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        """Run an order that may take long (image download, commit) beside the others."""
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def _handle(self, message: Any) -> None:
        if isinstance(message, StartTask):
            task_id = message.task.task_id
            if task_id in self.preparing:  # a repeated order while its image downloads
                await self._send(Ack(order_id=message.order_id))
                return
            self.preparing[task_id] = self._spawn(self._start(message))
        elif isinstance(message, Request):
            self._spawn(self._request(message))
        elif isinstance(message, KillTask) and message.task_id in self.preparing:
            await self._cancel_start(message)
        elif isinstance(message, (KillTask, PauseTask, ResumeTask)):
            await self._order(message)
        elif isinstance(message, ForgetTask):
            try:
                await self.backend.forget(message.task_id)
                self.offsets.pop(message.task_id, None)
            except BackendError as exc:
                self.log.warning("cannot forget task %s: %s", message.task_id, exc)
        elif isinstance(message, ErrorMessage):
            self.log.warning("host reported an error: %s", message.message)
        else:
            self.log.warning("ignoring unexpected %s message", message.type)

    async def _request(self, request: Request) -> None:
        try:
            result = await self.backend.handle_request(request)
        except BackendError as exc:
            self.log.info("%s refused: %s", request.type, exc.message)
            await self._send(Ack(order_id=request.order_id, ok=False, error=exc.message))
            return
        except Exception as exc:  # a bug must not leave the host waiting
            self.log.exception("%s failed", request.type)
            await self._send(Ack(order_id=request.order_id, ok=False, error=f"runner error: {exc}"))
            return
        await self._send(Ack(order_id=request.order_id, result=result))

    async def _cancel_start(self, order: KillTask) -> None:
        """Kill a task whose start still waits for its image: it never runs."""
        task_id = order.task_id
        self.preparing.pop(task_id).cancel()
        async with self.lock:
            await self._send(Ack(order_id=order.order_id))
            await self._send_state(TaskEvent(task_id, "killed", None, "killed before it started"))
            self.offsets.pop(task_id, None)

    async def _start(self, order: StartTask) -> None:
        spec = order.task
        try:
            if not self.backend.knows(spec.task_id):
                await self.backend.prepare(spec)
        except TaskStartError as exc:
            async with self.lock:
                self.preparing.pop(spec.task_id, None)
                self.log.info("task %s failed to start: %s", spec.task_id, exc.message)
                await self._send(Ack(order_id=order.order_id, ok=False, error=exc.message))
                await self._send_state(TaskEvent(spec.task_id, "failed", None, exc.message))
            return
        finally:
            if asyncio.current_task() is self.preparing.get(spec.task_id):
                self.preparing.pop(spec.task_id, None)
        async with self.lock:
            if self.backend.knows(spec.task_id):
                await self._send(Ack(order_id=order.order_id))
                return
            self.offsets[spec.task_id] = {s: 0 for s in LogStream}
            try:
                await self.backend.start(spec)
            except TaskStartError as exc:
                self.log.info("task %s failed to start: %s", spec.task_id, exc.message)
                await self._send(Ack(order_id=order.order_id, ok=False, error=exc.message))
                await self._flush_logs(spec.task_id)
                await self._send_state(
                    TaskEvent(spec.task_id, "failed", exc.exit_code, exc.message)
                )
                return
            except BackendError as exc:
                self.offsets.pop(spec.task_id, None)
                await self._send(Ack(order_id=order.order_id, ok=False, error=exc.message))
                return
            await self._send(Ack(order_id=order.order_id))

    async def _order(self, order: KillTask | PauseTask | ResumeTask) -> None:
        async with self.lock:
            try:
                if isinstance(order, KillTask):
                    await self.backend.kill(
                        order.task_id, order.grace, stop=order.stop, snapshot=order.snapshot
                    )
                elif isinstance(order, PauseTask):
                    await self.backend.pause(order.task_id)
                else:
                    await self.backend.resume(order.task_id)
            except BackendError as exc:
                await self._send(Ack(order_id=order.order_id, ok=False, error=exc.message))
                return
            await self._send(Ack(order_id=order.order_id))
