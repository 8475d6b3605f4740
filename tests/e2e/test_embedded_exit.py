"""Stopping a server that has an embedded runner: its tasks keep running and are adopted at
the next start (a host), or are killed with it under ``EmbeddedRunner.stop_tasks_on_exit``."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import HostProcess, wait_for, wait_node

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def processes_with(marker: str) -> list[int]:
    """PIDs of the processes whose command line holds ``marker`` (seen from the host)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique word for a task's command line; what still carries it is killed at the end."""
    word = f"marker-{uuid.uuid4().hex}"
    yield word
    for pid in processes_with(word):
        os.kill(pid, signal.SIGKILL)


def start_sleeper(host: HostProcess, marker: str) -> int:
    """A running task whose shell carries ``marker``; its ID."""
    with host.client() as client:
        wait_node(client, "embedded", "online")
        batch = client.submit(["sh", "-c", f"sleep 300; echo {marker}"], memory="64M")
        task_id = batch.task_ids[0]
        wait_for(client, task_id, {"running"})
    assert processes_with(marker), "the task's shell is not running"
    return task_id


def test_tasks_outlive_the_server_and_are_adopted(
    make_host: Callable[..., HostProcess], marker: str
) -> None:
    host = make_host(embedded=True)
    task_id = start_sleeper(host, marker)
    host.stop()
    assert processes_with(marker), "the task died with the server"
    log = host.log_path.read_text()
    assert "1 task(s) of node embedded keep running after the server stops" in log, log[-2000:]
    assert "its tasks keep running when the server stops" in log  # said at start, too
    host.start()  # the next start adopts it: still running, and it can be killed
    with host.client() as client:
        wait_node(client, "embedded", "online")
        assert client.get_task(task_id).status == "running"
        client.kill(task_id)
        wait_for(client, task_id, {"killed"})
    assert not processes_with(marker)


def test_stop_tasks_on_exit_kills_them_with_the_server(
    make_host: Callable[..., HostProcess], marker: str
) -> None:
    host = make_host(embedded=True, extra=["--EmbeddedRunner.stop_tasks_on_exit=True"])
    task_id = start_sleeper(host, marker)
    host.stop()  # returns once the server has exited
    assert not processes_with(marker), "the task outlived the server"
    log = host.log_path.read_text()
    assert "stopping the 1 task(s) of node embedded with the server" in log
    assert "its tasks are killed when the server stops" in log
    host.start()  # the runner reports the true end at its next hello
    with host.client() as client:
        wait_node(client, "embedded", "online")
        assert wait_for(client, task_id, {"killed", "failed", "completed"}).status == "killed"
