"""Every runner field is validated before it touches the database or the scheduler, and one
bad report is refused alone (issue 10, attack 7)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
import websockets
from sqlalchemy import select

from kohakuriver_lab.protocol import (
    MAX_REASON_CHARS,
    TaskState,
    encode,
    parse_runner_message,
    runner_socket_url,
)
from kohakuriver_lab.server.db.orm import Node, RunnerToken
from kohakuriver_lab.testing.api import wait_status
from kohakuriver_lab.testing.fake_runner import FakeRunner


def hello(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "v": 1,
        "type": "hello",
        "node": "node-x",
        "cores": [0, 1],
        "memory_total": 1 << 30,
    }
    return {**base, **fields}


BAD_HELLOS = {
    "300000 cores": hello(cores=list(range(300_000))),
    "memory 2**70": hello(memory_total=2**70),
    "negative memory": hello(memory_total=-1),
    "empty name": hello(node=""),
    "path name": hello(node="../../etc/passwd"),
    "markup name": hello(node="<script>"),
    "5000-char name": hello(node="n" * 5000),
    "name with newline": hello(node="node-x\n"),
    "duplicate GPUs": hello(gpus=[{"index": 0}, {"index": 0}]),
    "GPU index 2**40": hello(gpus=[{"index": 2**40}]),
    "duplicate cores": hello(cores=[0, 0]),
    "core 70000": hello(cores=[70_000]),
    "NUMA core not on the node": hello(numa=[{"id": 0, "cores": [5]}]),
    "NUMA id repeated": hello(numa=[{"id": 0, "cores": [0]}, {"id": 0, "cores": [1]}]),
    "huge hostname": hello(hostname="h" * 10_000),
    "exit code 2**70": hello(tasks=[{"task_id": "1", "state": "failed", "exit_code": 2**70}]),
    "negative log size": hello(
        tasks=[{"task_id": "1", "state": "failed", "log_sizes": {"stdout": -1}}]
    ),
}


@pytest.mark.parametrize("name", list(BAD_HELLOS))
async def test_bad_hello_is_refused_and_nothing_is_stored(
    host_url: str, runner_token: str, services: Any, name: str
) -> None:
    async with websockets.connect(
        runner_socket_url(host_url),
        additional_headers={"Authorization": f"Bearer {runner_token}"},
        max_size=None,
    ) as ws:
        await ws.send(json.dumps(BAD_HELLOS[name]))
        frames = []
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
    assert ws.close_code == 1008, frames
    assert [f["type"] for f in frames] == ["error"]
    assert "invalid message" in frames[0]["message"]
    assert services.registry.names() == []
    with services.db() as session:
        assert session.scalars(select(Node)).all() == []
        assert {t.node for t in session.scalars(select(RunnerToken))} == {None}


def test_long_reasons_are_cut_not_refused() -> None:
    raw = json.dumps({"v": 1, "type": "task_state", "task_id": "1", "state": "failed"})
    message = parse_runner_message(raw[:-1] + ', "reason": "' + "r" * 100_000 + '"}')
    assert isinstance(message, TaskState) and len(message.reason or "") == MAX_REASON_CHARS


async def test_valid_hello_at_the_limits_is_welcomed(
    host_url: str, runner_token: str, services: Any
) -> None:
    runner = FakeRunner(host_url, runner_token, "Node_1.lab-x", cores=4096, memory=2**56)
    await runner.connect()
    try:
        assert len(services.registry.get("Node_1.lab-x").shape.cores) == 4096
    finally:
        await runner.close()


async def running_tasks(api: Any, count: int) -> list[str]:
    """Submit ``count`` tasks and wait until each runs (on the test's fake node)."""
    ids = [
        (await api.post("tasks", {"command": ["x"]}, expect=201))["task_ids"][0]
        for _ in range(count)
    ]
    for task_id in ids:
        await wait_status(api, task_id, {"running"})
    return ids


async def test_one_bad_report_in_a_burst_is_refused_alone(
    api: Any, host_url: str, runner_token: str
) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    try:
        ids = await running_tasks(api, 3)
        bad = {"v": 1, "type": "task_state", "task_id": ids[0], "state": "failed"}
        bad["exit_code"] = 2**70
        burst = [
            json.dumps(bad),
            encode(TaskState(task_id=int(ids[1]), state="completed", exit_code=0)),
            encode(TaskState(task_id=int(ids[2]), state="completed", exit_code=0)),
        ]
        await asyncio.gather(*(runner.send(frame) for frame in burst))
        for task_id in ids[1:]:
            assert (await wait_status(api, task_id, {"completed"}))["exit_code"] == 0
        assert (await api.get(f"tasks/{ids[0]}"))["status"] == "running"
        errors = [m for m in runner.received if type(m).__name__ == "ErrorMessage"]
        assert len(errors) == 1 and "invalid message" in errors[0].message
    finally:
        await runner.close()


async def test_a_report_the_database_refuses_does_not_drop_the_others(
    api: Any, host_url: str, runner_token: str, services: Any
) -> None:
    """Past validation (``model_construct``): the gateway applies each report on its own."""
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    try:
        ids = await running_tasks(api, 3)
        gateway = services.gateway
        conn = gateway._sessions["node-a"]
        reports = [
            TaskState.model_construct(task_id=int(ids[0]), state="failed", exit_code=2**70),
            TaskState(task_id=int(ids[1]), state="completed", exit_code=0),
            TaskState(task_id=int(ids[2]), state="completed", exit_code=0),
        ]
        for report in reports:
            gateway.on_task_state(conn, report)
        for task_id in ids[1:]:
            await wait_status(api, task_id, {"completed"})
        assert (await api.get(f"tasks/{ids[0]}"))["status"] == "running"
    finally:
        await runner.close()
