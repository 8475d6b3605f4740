"""A runner flooding the host is slowed down, not other users' sockets (issue 10, attack 8):
heartbeats coalesce into at most one metrics event per node per interval, and each runner
connection has a token bucket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import websockets

from kohakuriver_lab.models import NodeMetrics
from kohakuriver_lab.protocol import Heartbeat, encode, runner_socket_url
from kohakuriver_lab.testing.fake_runner import FakeRunner

WsFetch = Callable[..., Awaitable[Any]]


@pytest.fixture
def host_config() -> dict[str, Any]:
    return {
        "RunnerGateway": {"max_messages_per_second": 1000.0, "message_burst": 1000},
        "NodeRegistry": {"heartbeat_interval": 1.0},
    }


def beat() -> str:
    metrics = NodeMetrics(at=time.time(), cpu_percent=1.0, memory_used=1, memory_total=2)
    return encode(Heartbeat(metrics=metrics))


async def next_of(ws: Any, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    while True:
        raw = await asyncio.wait_for(ws.read_message(), timeout)
        assert raw is not None, f"the events socket closed ({ws.close_code} {ws.close_reason})"
        frame = json.loads(raw)
        if frame["type"] == kind:
            return frame  # type: ignore[no-any-return]


def flood(host_url: str, token: str, count: int, done: threading.Event) -> threading.Thread:
    """A runner in its own thread and event loop (as a separate process would be): hello,
    then ``count`` heartbeats as fast as it can; it hangs up when ``done`` is set."""
    hello = FakeRunner(host_url, token, "node-a").hello

    async def run() -> None:
        async with websockets.connect(
            runner_socket_url(host_url), additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            await ws.send(encode(hello))
            await ws.recv()  # welcome
            frame = beat()
            for _ in range(count):
                await ws.send(frame)
            while not done.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    return thread


async def test_heartbeat_flood_leaves_a_users_events_socket_alone(
    api: Any, host_url: str, runner_token: str, services: Any, jp_ws_fetch: WsFetch
) -> None:
    ws = await jp_ws_fetch("kohakuriver", "api", "events")
    assert json.loads(await ws.read_message())["type"] == "subscribed"
    done = threading.Event()
    flooder = flood(host_url, runner_token, 6000, done)
    try:
        while "node-a" not in services.gateway._sessions:
            await asyncio.sleep(0.01)
        await asyncio.sleep(2.0)  # the flood arrives (6000 heartbeats within 2 s)
        task_id = (await api.post("tasks", {"command": ["true"]}, expect=201))["task_ids"][0]
        event = await next_of(ws, "task")
        assert event["task"]["task_id"] == task_id
        assert ws.close_code is None
        bucket = services.gateway._buckets[id(services.gateway._sessions["node-a"])]
        assert bucket.delayed > 0  # the runner was slowed down, not the user
    finally:
        done.set()
        ws.close()
        await asyncio.to_thread(flooder.join, 10)


async def test_metrics_events_are_coalesced(
    api: Any, host_url: str, runner_token: str, services: Any
) -> None:
    sub = services.events.subscribe(frozenset({"nodes"}))
    runner = await FakeRunner(host_url, runner_token, "node-a", heartbeat=False).connect()
    try:
        for _ in range(500):
            await runner.send(beat())
        await asyncio.sleep(0.3)
        events = []
        while not sub.queue.empty():
            item = sub.queue.get_nowait()
            events.append(item[0] if isinstance(item, tuple) else item)  # (payload, task)
        metrics = [e for e in events if e and e["type"] == "metrics"]
        assert 1 <= len(metrics) <= 3, len(metrics)  # 1 s interval; 500 beats
        assert len(services.registry.get("node-a").history) == 120  # all kept in the history
    finally:
        services.events.unsubscribe(sub)
        await runner.close()


@pytest.mark.parametrize(
    "host_config",
    [
        {
            "RunnerGateway": {
                "max_messages_per_second": 50.0,
                "message_burst": 10,
                "throttle_close_after": 0.5,
            }
        }
    ],
)
async def test_sustained_flood_closes_the_runner(
    api: Any, host_url: str, runner_token: str, host_config: Any
) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", heartbeat=False).connect()
    frame = beat()
    try:
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in range(2000):
                await runner.send(frame)
        await asyncio.wait_for(runner._ws.wait_closed(), 10)
        assert runner._ws.close_code == 1008
        assert runner._ws.close_reason == "message rate limit exceeded"
    finally:
        await runner.close()
