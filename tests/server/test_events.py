"""The live events socket: task transitions and node changes, pushed after commit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from kohakuriver_lab.testing.fake_runner import FakeRunner

WsFetch = Callable[..., Awaitable[Any]]


async def open_events(ws_fetch: WsFetch, **params: str) -> Any:
    ws = await ws_fetch("kohakuriver", "api", "events", params=params)
    hello = json.loads(await ws.read_message())
    assert hello["type"] == "subscribed"
    return ws


async def next_of(ws: Any, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.read_message(), timeout))
        if frame["type"] == kind:
            return frame  # type: ignore[no-any-return]


async def test_task_changes_are_pushed_in_order(
    api: Any, host_url: str, runner_token: str, jp_ws_fetch: WsFetch
) -> None:
    ws = await open_events(jp_ws_fetch, topics="tasks")
    runner = await FakeRunner(host_url, runner_token, "node-a").connect()
    try:
        task_id = (await api.post("tasks", {"command": ["true"]}, expect=201))["task_ids"][0]
        seen = []
        while not seen or seen[-1] != "completed":
            frame = await next_of(ws, "task")
            assert frame["task"]["task_id"] == task_id
            seen.append(frame["task"]["status"])
        # one event per commit with the state after it (running+completed may share one)
        order = ["pending", "assigning", "running", "completed"]
        assert seen[0] == "pending" and seen == sorted(seen, key=order.index)
        assert len(set(seen)) == len(seen) >= 3
        ws.close()
    finally:
        await runner.close()


async def test_filter_by_task_and_node_events(
    api: Any, host_url: str, runner_token: str, jp_ws_fetch: WsFetch
) -> None:
    first = (await api.post("tasks", {"command": ["a"]}, expect=201))["task_ids"][0]
    ws = await open_events(jp_ws_fetch, tasks=first)
    nodes = await open_events(jp_ws_fetch, topics="nodes")
    other = (await api.post("tasks", {"command": ["b"]}, expect=201))["task_ids"][0]
    await api.post(f"tasks/{first}/kill", expect=202)
    frame = await next_of(ws, "task")
    assert (frame["task"]["task_id"], frame["task"]["status"]) == (first, "killed")
    assert other != first
    runner = await FakeRunner(host_url, runner_token, "node-a").connect()
    try:
        online = await next_of(nodes, "node")
        assert online == {"type": "node", "name": "node-a", "status": "online"}
        metrics = await next_of(nodes, "metrics")
        assert metrics["name"] == "node-a" and metrics["metrics"]["cpu_percent"] == 12.5
    finally:
        await runner.close()
    ws.close()
    nodes.close()


async def test_bad_filters_are_400(api: Any, jp_ws_fetch: WsFetch) -> None:
    for params in ({"topics": "secrets"}, {"tasks": "x"}):
        with pytest.raises(HTTPClientError) as info:
            await jp_ws_fetch("kohakuriver", "api", "events", params=params)
        assert info.value.code == 400


async def test_slow_subscriber_is_dropped(services: Any, api: Any) -> None:
    bus = services.events
    sub = bus.subscribe(frozenset({"tasks"}))
    bus.max_queue = 3
    slow = bus.subscribe(frozenset({"tasks"}))
    for _ in range(5):
        await api.post("tasks", {"command": ["x"]}, expect=201)
    assert slow.dropped and await slow.queue.get() is None
    assert not sub.dropped and sub.queue.qsize() == 5
    assert bus.subscribers == 1


async def test_a_task_filter_means_task_events_only(
    api: Any, host_url: str, runner_token: str, jp_ws_fetch: WsFetch
) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    try:
        await asyncio.sleep(0.5)  # heartbeats flowing (0.2 s in tests)
        task_id = (await api.post("tasks", {"command": ["x"]}, expect=201))["task_ids"][0]
        ws = await jp_ws_fetch("kohakuriver", "api", "events", params={"tasks": task_id})
        assert json.loads(await ws.read_message())["topics"] == ["tasks"]
        await asyncio.sleep(0.5)
        await api.post(f"tasks/{task_id}/kill", expect=202)
        frame = json.loads(await asyncio.wait_for(ws.read_message(), 5))
        assert frame["type"] == "task"  # no node metrics in between
        ws.close()
    finally:
        await runner.close()
