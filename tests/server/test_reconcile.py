"""Runner failures seen by the host: missed heartbeats, reconnects, hostile messages."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from kohakuriver_lab.models import LogStream
from kohakuriver_lab.protocol import LogData, TaskReport, TaskState
from kohakuriver_lab.testing.api import wait_status
from kohakuriver_lab.testing.fake_runner import FakeRunner

pytestmark = pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)


async def start_running(api: Any, runner: FakeRunner, body: dict[str, Any] | None = None) -> str:
    task_id = (await api.post("tasks", body or {"command": ["sleep", "100"]}, expect=201))[
        "task_ids"
    ][0]
    await wait_status(api, task_id, {"running"})
    return str(task_id)


async def test_silent_runner_goes_offline_and_tasks_are_lost(
    api: Any, host_url: str, runner_token: str
) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    task_id = await start_running(api, runner)
    await runner.close()  # like SIGKILL: no more heartbeats
    loop = asyncio.get_running_loop()
    gone = loop.time()
    task = await wait_status(api, task_id, {"lost"}, timeout=3)
    elapsed = loop.time() - gone
    assert elapsed < 3 * 0.2 + 0.5  # 3 heartbeat intervals (0.2 s in tests) + sweep slack
    assert "went offline" in task["reason"]
    node = await api.get("nodes/node-a")
    assert node["status"] == "offline" and node["usage"]["cores_used"] == []


async def test_reconnect_revives_lost_task_and_reports_real_exit(
    api: Any, host_url: str, runner_token: str
) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    alive = await start_running(api, runner)
    finished = await start_running(api, runner)
    await runner.close()
    await wait_status(api, alive, {"lost"}, timeout=3)
    await wait_status(api, finished, {"lost"}, timeout=3)
    reports = [
        TaskReport(task_id=int(alive), state="running"),
        TaskReport(
            task_id=int(finished),
            state="failed",
            exit_code=7,
            reason="exit code 7",
            log_sizes={LogStream.STDOUT: 4},
        ),
    ]
    back = await FakeRunner(
        host_url, runner_token, "node-a", auto_finish=False, reports=reports
    ).connect()
    try:
        assert back.welcome is not None
        assert back.welcome.log_offsets[finished] == {LogStream.STDOUT: 0, LogStream.STDERR: 0}
        revived = await wait_status(api, alive, {"running"})
        assert revived["finished_at"] is None
        done = await wait_status(api, finished, {"failed"})
        assert done["exit_code"] == 7
        events = (await api.get(f"tasks/{finished}/events"))["events"]
        assert [e["to_status"] for e in events][-2:] == ["lost", "failed"]
        # the log resend completes, then the host lets the runner forget the task
        assert int(finished) not in back.forgotten
        await back.send(
            LogData(
                task_id=int(finished),
                stream=LogStream.STDOUT,
                offset=0,
                data=base64.b64encode(b"bye\n").decode(),
            )
        )
        await asyncio.sleep(0.1)
        assert int(finished) in back.forgotten
        assert (await api.get(f"tasks/{finished}/logs"))["data"] == "bye\n"
    finally:
        await back.close()


async def test_runner_that_lost_a_task_marks_it_lost_and_resends_assigning(
    api: Any, host_url: str, runner_token: str
) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    running = await start_running(api, runner)
    await runner.close()
    # reconnect before the node is declared offline, knowing nothing
    fresh = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    try:
        task = await wait_status(api, running, {"lost"})
        assert task["reason"] == "runner node-a no longer has this task"
    finally:
        await fresh.close()


async def test_kill_while_disconnected_is_delivered_on_reconnect(
    api: Any, host_url: str, runner_token: str
) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    task_id = await start_running(api, runner)
    await runner.close()
    info = await api.post(f"tasks/{task_id}/kill", expect=202)
    assert info["kill_requested"] is True
    reports = [TaskReport(task_id=int(task_id), state="running")]
    back = FakeRunner(host_url, runner_token, "node-a", auto_finish=False, reports=reports)
    back.started[int(task_id)] = None  # type: ignore[assignment]  # it knows the task
    await back.connect()
    try:
        task = await wait_status(api, task_id, {"killed"})
        assert task["exit_code"] == -15
    finally:
        await back.close()


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        '{"type": "heartbeat"}',
        '{"type": "launch_missiles", "v": 1}',
        '{"type": "task_state", "v": 1, "task_id": "1", "state": "completed", "extra": 1}',
        '{"type": "log", "v": 1, "task_id": "1", "stream": "stdout", "offset": -5, "data": ""}',
    ],
)
async def test_malformed_messages_are_refused_and_host_survives(
    api: Any, host_url: str, runner_token: str, raw: str
) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", output=b"ok").connect()
    try:
        await runner.send(raw)
        await asyncio.sleep(0.1)
        errors = [m for m in runner.received if type(m).__name__ == "ErrorMessage"]
        assert errors and "invalid message" in errors[0].message
        # still connected and working
        task_id = (await api.post("tasks", {"command": ["true"]}, expect=201))["task_ids"][0]
        assert (await wait_status(api, task_id, {"completed"}))["exit_code"] == 0
    finally:
        await runner.close()


async def test_runner_cannot_report_on_another_nodes_task(
    api: Any, host_url: str, runner_token: str, make_runner_token: Any
) -> None:
    owner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    intruder = await FakeRunner(
        host_url, make_runner_token(), "node-b", auto_finish=False
    ).connect()
    try:
        body = {"command": ["sleep", "9"], "targets": ["node-a"]}
        task_id = (await api.post("tasks", body, expect=201))["task_ids"][0]
        await wait_status(api, task_id, {"running"})
        await intruder.send(TaskState(task_id=int(task_id), state="completed", exit_code=0))
        await intruder.send(
            LogData(
                task_id=int(task_id),
                stream=LogStream.STDOUT,
                offset=0,
                data=base64.b64encode(b"forged").decode(),
            )
        )
        await asyncio.sleep(0.2)
        task = await api.get(f"tasks/{task_id}")
        assert task["status"] == "running"
        assert (await api.get(f"tasks/{task_id}/logs"))["data"] == ""
        errors = [m.message for m in intruder.received if type(m).__name__ == "ErrorMessage"]
        assert any("not assigned to node node-b" in e for e in errors)
    finally:
        await owner.close()
        await intruder.close()


async def test_first_message_must_be_hello(host_url: str, runner_token: str) -> None:
    import websockets

    from kohakuriver_lab.protocol import runner_socket_url

    async with websockets.connect(
        runner_socket_url(host_url), additional_headers={"Authorization": f"Bearer {runner_token}"}
    ) as ws:
        await ws.send('{"type": "task_state", "v": 1, "task_id": "1", "state": "completed"}')
        reply = await ws.recv()
        assert "first message must be 'hello'" in str(reply)
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_oversized_message_closes_the_socket(host_url: str, runner_token: str) -> None:
    import websockets

    from kohakuriver_lab.protocol import MAX_MESSAGE_BYTES, runner_socket_url

    async with websockets.connect(
        runner_socket_url(host_url),
        additional_headers={"Authorization": f"Bearer {runner_token}"},
        max_size=None,
    ) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.send("x" * (MAX_MESSAGE_BYTES + 1))
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def test_second_runner_with_the_same_name_and_another_token_is_refused(
    api: Any, host_url: str, runner_token: str, make_runner_token: Any
) -> None:
    first = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    try:
        with pytest.raises(AssertionError, match="belongs to another runner token"):
            await FakeRunner(host_url, make_runner_token(), "node-a").connect()
        task_id = await start_running(api, first)  # the first one is undisturbed
        assert int(task_id) in first.started
    finally:
        await first.close()


async def test_kill_of_a_task_whose_start_never_arrived(
    api: Any, host_url: str, runner_token: str
) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    # the runner "loses" start orders: the task stays assigning
    runner._start = _ignore  # type: ignore[method-assign]
    task_id = (await api.post("tasks", {"command": ["x"]}, expect=201))["task_ids"][0]
    await wait_status(api, task_id, {"assigning"})
    await runner.close()
    await api.post(f"tasks/{task_id}/kill", expect=202)
    back = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    try:
        task = await wait_status(api, task_id, {"killed"})
        assert task["reason"] == "killed before it started"
        assert int(task_id) not in back.started
    finally:
        await back.close()


async def _ignore(order: object) -> None:
    return None


async def test_reports_about_unknown_tasks_are_answered_not_refused(
    api: Any, host_url: str, runner_token: str
) -> None:
    from kohakuriver_lab.protocol import ForgetTask, KillTask

    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    try:
        await runner.send(TaskState(task_id=123456789, state="completed", exit_code=0))
        await runner.send(TaskState(task_id=987654321, state="running"))
        await asyncio.sleep(0.2)
        forgets = [m.task_id for m in runner.received if isinstance(m, ForgetTask)]
        kills = [(m.task_id, m.grace) for m in runner.received if isinstance(m, KillTask)]
        assert forgets == [123456789] and kills == [(987654321, 0)]
        assert not [m for m in runner.received if type(m).__name__ == "ErrorMessage"]
    finally:
        await runner.close()
