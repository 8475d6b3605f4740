"""The agent against a fake host WebSocket server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fake_host import FakeHost
from runner_helpers import PY, final_event, spec

import kohakuriver_lab
from kohakuriver_lab.protocol import (
    MAX_LOG_CHUNK,
    Ack,
    ForgetTask,
    Hello,
    KillTask,
    LogData,
    PauseTask,
    ResumeTask,
    StartTask,
    TaskState,
    runner_socket_url,
)
from kohakuriver_lab.runner.agent import EXIT_AUTH_FAILED, RunnerAgent
from kohakuriver_lab.runner.backends.local import LocalBackend


def test_runner_socket_url() -> None:
    assert runner_socket_url("http://h:8888/") == "ws://h:8888/kohakuriver/api/runners/connect"
    assert runner_socket_url("https://h/jup") == "wss://h/jup/kohakuriver/api/runners/connect"


@contextlib.asynccontextmanager
async def running_agent(host: FakeHost, state_dir: Path) -> AsyncIterator[RunnerAgent]:
    backend = LocalBackend(state_dir=state_dir, node="node-a")
    await backend.recover()
    agent = RunnerAgent(
        host_url=host.url,
        token="tok-123",
        node="node-a",
        backend=backend,
        reconnect_max_delay=1.0,
    )
    runner = asyncio.ensure_future(agent.run())
    try:
        yield agent
    finally:
        agent.stop()
        assert await asyncio.wait_for(runner, 5) == 0
        await backend.close()


def _logs(messages: list[object], task_id: int, stream: str) -> bytes:
    data = b""
    for m in messages:
        if isinstance(m, LogData) and m.task_id == task_id and m.stream.value == stream:
            assert m.offset == len(data)  # contiguous
            data += base64.b64decode(m.data)
    return data


def test_hello_headers_and_heartbeats(state_dir: Path) -> None:
    async def main() -> None:
        async with FakeHost(heartbeat_interval=0.05) as host, running_agent(host, state_dir):
            hello = await host.next()
            assert isinstance(hello, Hello)
            assert hello.node == "node-a" and hello.version == kohakuriver_lab.__version__
            assert hello.cores == sorted(os.sched_getaffinity(0)) and hello.memory_total > 0
            assert hello.gpus == [] and hello.backends == ["local"] and hello.tasks == []
            assert hello.numa and hello.hostname
            path, headers = host.requests[0]
            assert path == "/base/kohakuriver/api/runners/connect"
            assert headers["Authorization"] == "Bearer tok-123"
            await asyncio.sleep(0.4)
            assert len(host.heartbeats) >= 3
            assert host.heartbeats[-1].metrics.memory_total == hello.memory_total

    asyncio.run(main())


def test_start_task_order_ack_running_logs_then_final(state_dir: Path) -> None:
    big = 600_000  # several chunks
    script = f"import sys; sys.stdout.write('x' * {big}); sys.stderr.write('warn'); sys.exit(3)"

    async def main() -> None:
        async with FakeHost() as host, running_agent(host, state_dir):
            await host.next()
            task = spec([PY, "-c", script])
            await host.send(StartTask(order_id=1, task=task))
            seen = await host.until(lambda m: isinstance(m, TaskState) and m.state == "failed")
            kinds = [m.type for m in seen]
            assert kinds[:3] == ["ack", "task_state", "log"] or kinds[:2] == ["ack", "task_state"]
            assert isinstance(seen[0], Ack) and seen[0].ok and seen[0].order_id == 1
            assert isinstance(seen[1], TaskState) and seen[1].state == "running"
            final = seen[-1]
            assert isinstance(final, TaskState) and final.exit_code == 3
            assert final.reason == "exit code 3"
            assert _logs(seen, task.task_id, "stdout") == b"x" * big  # all before final
            assert _logs(seen, task.task_id, "stderr") == b"warn"
            assert all(
                len(base64.b64decode(m.data)) <= MAX_LOG_CHUNK
                for m in seen
                if isinstance(m, LogData)
            )
            # a repeated start is acknowledged and does not run it twice
            await host.send(StartTask(order_id=2, task=task))
            again = await host.next()
            assert isinstance(again, Ack) and again.ok and again.order_id == 2
            await asyncio.sleep(0.2)
            assert host.messages.empty()

    asyncio.run(main())


def test_start_error_and_bad_messages(state_dir: Path) -> None:
    async def main() -> None:
        async with FakeHost() as host, running_agent(host, state_dir):
            await host.next()
            await host.send("not json")
            await host.send('{"v": 1, "type": "bogus"}')
            task = spec(["definitely-not-a-program"])
            await host.send(StartTask(order_id=5, task=task))
            ack, state = await host.next(), await host.next()
            assert isinstance(ack, Ack) and not ack.ok
            assert ack.error == "command not found: definitely-not-a-program"
            assert isinstance(state, TaskState)
            assert (state.state, state.exit_code) == ("failed", 127)

    asyncio.run(main())


def test_pause_resume_kill_forget_orders(state_dir: Path) -> None:
    async def main() -> None:
        async with FakeHost() as host, running_agent(host, state_dir):
            await host.next()
            task = spec(["sleep", "300"])
            tid = task.task_id
            await host.send(StartTask(order_id=1, task=task))
            await host.until(lambda m: isinstance(m, TaskState) and m.state == "running")
            await host.send(PauseTask(order_id=2, task_id=tid))
            ack, state = await host.next(), await host.next()
            assert isinstance(ack, Ack) and ack.ok and ack.order_id == 2
            assert isinstance(state, TaskState) and state.state == "paused"
            await host.send(ResumeTask(order_id=3, task_id=tid))
            await host.until(lambda m: isinstance(m, TaskState) and m.state == "running")
            await host.send(KillTask(order_id=4, task_id=tid, grace=5))
            seen = await host.until(lambda m: isinstance(m, TaskState) and m.state == "killed")
            assert isinstance(seen[0], Ack) and seen[0].order_id == 4
            await host.send(ResumeTask(order_id=5, task_id=tid))
            refused = await host.next()
            assert isinstance(refused, Ack) and not refused.ok
            await host.send(ForgetTask(task_id=tid))
            deadline = time.monotonic() + 5
            while (state_dir / "tasks" / str(tid)).exists():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)

    asyncio.run(main())


def test_hello_reconciles_and_logs_resume_from_welcome_offsets(state_dir: Path) -> None:
    async def main() -> None:
        backend = LocalBackend(state_dir=state_dir, node="node-a")
        task = spec(["sh", "-c", "printf 'hello world'; printf 'oops' >&2; exit 4"])
        await backend.start(task)
        await final_event(backend, task.task_id)
        tid = str(task.task_id)
        offsets = {tid: {"stdout": 6}}
        async with FakeHost(log_offsets=offsets) as host, running_agent(host, state_dir):
            hello = await host.next()
            assert isinstance(hello, Hello)
            (report,) = hello.tasks
            assert (report.state, report.exit_code) == ("failed", 4)
            assert {s.value: n for s, n in report.log_sizes.items()} == {
                "stdout": 11,
                "stderr": 4,
            }
            first, second = await host.next(), await host.next()
            logs = {m.stream.value: m for m in (first, second) if isinstance(m, LogData)}
            assert logs["stdout"].offset == 6
            assert base64.b64decode(logs["stdout"].data) == b"world"
            assert logs["stderr"].offset == 0
            assert base64.b64decode(logs["stderr"].data) == b"oops"

    asyncio.run(main())


def test_reconnects_after_drop_and_reports_what_happened(state_dir: Path, tmp_path: Path) -> None:
    async def main() -> None:
        async with FakeHost(drop_after_welcome=1) as host, running_agent(host, state_dir) as agent:
            first = await host.next()
            assert isinstance(first, Hello)
            started = time.monotonic()
            second = await host.next(timeout=5)
            assert isinstance(second, Hello)
            assert time.monotonic() - started < 2.0  # backoff starts at 0.5 s
            task = spec(["sh", "-c", "echo still here"])
            await host.send(StartTask(order_id=9, task=task))
            seen = await host.until(lambda m: isinstance(m, TaskState) and m.state == "completed")
            assert _logs(seen, task.task_id, "stdout") == b"still here\n"
            assert agent.connections == 2

    asyncio.run(main())


def test_exits_on_401(state_dir: Path) -> None:
    async def main() -> None:
        async with FakeHost(reject_status=401) as host:
            backend = LocalBackend(state_dir=state_dir, node="node-a")
            agent = RunnerAgent(host_url=host.url, token="bad", node="node-a", backend=backend)
            assert await asyncio.wait_for(agent.run(), 5) == EXIT_AUTH_FAILED
            assert len(host.requests) == 1  # no retry

    asyncio.run(main())


def test_runner_command_exits_nonzero_on_403_without_logging_token(tmp_path: Path) -> None:
    async def main() -> None:
        async with FakeHost(reject_status=403) as host:
            env = dict(os.environ, KOHAKURIVER_RUNNER_TOKEN="sup3r-secret")
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "kohakuriver_lab.runner",
                "--host-url",
                host.url,
                "--name",
                "node-z",
                "--state-dir",
                str(tmp_path / "st"),
                "--log-level",
                "DEBUG",
                env=env,
                cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == EXIT_AUTH_FAILED
            assert host.requests[0][1]["Authorization"] == "Bearer sup3r-secret"
            assert b"sup3r-secret" not in out
            assert b"refused this runner's token" in out

    asyncio.run(main())
