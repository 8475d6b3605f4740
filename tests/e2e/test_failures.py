"""Failure semantics with real processes: runner SIGKILL and restart, host restart."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from harness import TERMINAL, HostProcess, RunnerProcess, wait_for, wait_node

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HEARTBEAT = 0.3


def test_runner_sigkill_marks_offline_and_restart_recovers(
    make_host: Callable[..., HostProcess],
    make_runner: Callable[[HostProcess, str, str], RunnerProcess],
) -> None:
    host = make_host(heartbeat=HEARTBEAT)
    runner = make_runner(host, host.runner_token(), "node-a")
    with host.client() as client:
        wait_node(client, "node-a", "online")
        long = client.submit(["sleep", "60"]).task_ids[0]
        short = client.submit(["sh", "-c", "sleep 2; echo finished-while-away; exit 7"]).task_ids[0]
        wait_for(client, long, {"running"})
        wait_for(client, short, {"running"})

        runner.kill()  # SIGKILL: tasks keep running under their supervisors
        took = wait_node(client, "node-a", "offline")
        assert took <= 3 * HEARTBEAT + 0.5, f"offline after {took:.2f} s"
        assert wait_for(client, long, {"lost"}).reason.startswith("node node-a went offline")
        assert wait_for(client, short, {"lost"}).status.value == "lost"

        time.sleep(2.5)  # the short task ends while no runner watches it
        runner.start()
        wait_node(client, "node-a", "online")
        revived = wait_for(client, long, {"running"})
        assert revived.finished_at is None
        done = wait_for(client, short, TERMINAL - {"lost"})
        assert (done.status.value, done.exit_code) == ("failed", 7)
        chunk = client.logs(short)
        deadline = time.monotonic() + 5
        while chunk.data == "" and time.monotonic() < deadline:  # resent after reconnect
            time.sleep(0.05)
            chunk = client.logs(short)
        assert chunk.data == "finished-while-away\n"
        history = [e.to_status.value for e in client.events(short)]
        assert history == ["pending", "assigning", "running", "lost", "failed"]

        client.kill(long)
        assert wait_for(client, long, TERMINAL - {"lost"}).status.value == "killed"


@pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
def test_host_restart_loses_nothing(
    make_host: Callable[..., HostProcess],
    make_runner: Callable[[HostProcess, str, str], RunnerProcess],
) -> None:
    host = make_host(heartbeat=1.0)
    make_runner(host, host.runner_token(), "node-a")
    with host.client() as client:
        wait_node(client, "node-a", "online")
        script = "echo start; sleep 3; echo end; exit 3"
        task_id = client.submit(["sh", "-c", script], name="survivor").task_ids[0]
        queued = client.submit(["true"], cores=2).task_ids[0]  # waits: the node has 2 cores
        wait_for(client, task_id, {"running"})
    host.stop()
    time.sleep(1.0)
    host.start()
    with host.client() as client:
        done = wait_for(client, task_id, TERMINAL - {"lost"}, timeout=30)
        assert (done.status.value, done.exit_code, done.name) == ("failed", 3, "survivor")
        assert client.logs(task_id).data == "start\nend\n"
        assert "lost" not in [e.to_status.value for e in client.events(task_id)]
        assert wait_for(client, queued, {"completed"}, timeout=30).exit_code == 0
