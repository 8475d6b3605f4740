"""An in-process runner that speaks the real protocol over a real WebSocket, without
running anything: for tests of the host and for scheduling benchmarks with many nodes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Callable
from typing import Any

import websockets

from kohakuriver_lab.models import GpuInfo, LogStream, NodeMetrics, NumaNode
from kohakuriver_lab.protocol import (
    Ack,
    ForgetTask,
    Heartbeat,
    Hello,
    KillTask,
    LogData,
    PauseTask,
    ResumeTask,
    StartTask,
    TaskReport,
    TaskState,
    Welcome,
    encode,
    parse_host_message,
    runner_socket_url,
)


class FakeRunner:
    """A node with ``cores`` cores and ``gpus`` GPUs whose tasks finish when told to.

    With ``auto_finish`` every started task prints ``output`` and exits with
    ``exit_code`` at once; otherwise tasks stay running until :meth:`finish`.
    """

    def __init__(
        self,
        host_url: str,
        token: str,
        name: str,
        *,
        cores: int = 4,
        gpus: int = 0,
        numa_nodes: int = 1,
        memory: int = 16 << 30,
        auto_finish: bool = True,
        exit_code: int = 0,
        output: bytes = b"",
        heartbeat: bool = True,
        reports: list[TaskReport] | None = None,
        backends: tuple[str, ...] = ("local",),
        images: tuple[str, ...] = (),
    ) -> None:
        self.url = runner_socket_url(host_url)
        self.token = token
        self.name = name
        per_numa = max(1, cores // numa_nodes)
        self.hello = Hello(
            node=name,
            hostname=name,
            version="fake",
            cores=list(range(cores)),
            numa=[
                NumaNode(id=n, cores=list(range(n * per_numa, min(cores, (n + 1) * per_numa))))
                for n in range(numa_nodes)
            ],
            memory_total=memory,
            gpus=[
                GpuInfo(index=i, name="Fake GPU", numa_node=(i * numa_nodes) // max(gpus, 1))
                for i in range(gpus)
            ],
            backends=list(backends),
            images=list(images),
            tasks=reports or [],
        )
        self.auto_finish = auto_finish
        self.exit_code = exit_code
        self.output = output
        self.heartbeat = heartbeat
        self.started: dict[int, StartTask] = {}
        self.finished: set[int] = set()
        self.forgotten: set[int] = set()
        self.received: list[Any] = []
        self.welcome: Welcome | None = None
        self.on_message: Callable[[Any], None] | None = None
        self._ws: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.connected = asyncio.Event()

    # -------------------------------------------------------------------------
    # Connection
    # -------------------------------------------------------------------------

    async def connect(self) -> FakeRunner:
        """Dial the host, say hello, wait for welcome, start serving orders."""
        self._ws = await websockets.connect(
            self.url, additional_headers={"Authorization": f"Bearer {self.token}"}, max_size=None
        )
        await self._ws.send(encode(self.hello))
        welcome = parse_host_message(await self._ws.recv())
        assert isinstance(welcome, Welcome), welcome
        self.welcome = welcome
        self.connected.set()
        self._tasks.append(asyncio.ensure_future(self._serve()))
        if self.heartbeat:
            self._tasks.append(asyncio.ensure_future(self._beat(welcome.heartbeat_interval)))
        return self

    async def close(self) -> None:
        """Hang up (tasks are not touched)."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self.connected.clear()

    async def send(self, message: Any) -> None:
        """Send a protocol message (or raw text) to the host."""
        await self._ws.send(message if isinstance(message, str | bytes) else encode(message))

    async def _beat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            metrics = NodeMetrics(
                at=time.time(),
                cpu_percent=12.5,
                memory_used=1 << 30,
                memory_total=self.hello.memory_total,
                load_1m=0.5,
            )
            await self.send(Heartbeat(metrics=metrics))

    async def _serve(self) -> None:
        async for raw in self._ws:
            message = parse_host_message(raw)
            self.received.append(message)
            if isinstance(message, StartTask):
                await self._start(message)
            elif isinstance(message, KillTask):
                await self.send(Ack(order_id=message.order_id))
                if message.task_id in self.started and message.task_id not in self.finished:
                    self.finished.add(message.task_id)
                    await self.send(
                        TaskState(task_id=message.task_id, state="killed", exit_code=-15)
                    )
            elif isinstance(message, PauseTask | ResumeTask):
                await self.send(Ack(order_id=message.order_id))
                state = "paused" if isinstance(message, PauseTask) else "running"
                await self.send(TaskState(task_id=message.task_id, state=state))
            elif isinstance(message, ForgetTask):
                self.forgotten.add(message.task_id)
            if self.on_message is not None:
                self.on_message(message)

    async def _start(self, order: StartTask) -> None:
        task_id = order.task.task_id
        await self.send(Ack(order_id=order.order_id))
        if task_id in self.started:
            return
        self.started[task_id] = order
        await self.send(TaskState(task_id=task_id, state="running"))
        if self.auto_finish:
            await self.finish(task_id, self.exit_code, self.output)

    async def finish(self, task_id: int, exit_code: int = 0, output: bytes = b"") -> None:
        """Report a task's output and end."""
        if output:
            data = base64.b64encode(output).decode()
            await self.send(LogData(task_id=task_id, stream=LogStream.STDOUT, offset=0, data=data))
        state = "completed" if exit_code == 0 else "failed"
        self.finished.add(task_id)
        reason = None if exit_code == 0 else f"exit code {exit_code}"
        await self.send(TaskState(task_id=task_id, state=state, exit_code=exit_code, reason=reason))
