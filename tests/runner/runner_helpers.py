"""Helpers shared by the runner tests (importable: conftest puts this dir on sys.path)."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from kohakuriver_lab.protocol import TaskSpec
from kohakuriver_lab.runner.backends.base import Backend, TaskEvent
from kohakuriver_lab.runner.cgroups import TaskCgroups

PY = sys.executable
_ids = iter(range(1000, 10**6))


def spec(command: list[str], **kwargs: object) -> TaskSpec:
    """A task spec with a fresh id."""
    return TaskSpec(task_id=next(_ids), command=command, **kwargs)  # type: ignore[arg-type]


async def next_event(backend: Backend, timeout: float = 15.0) -> TaskEvent:
    return await asyncio.wait_for(backend.events.get(), timeout)


async def final_event(backend: Backend, task_id: int, timeout: float = 15.0) -> TaskEvent:
    """Wait for the task's final event, skipping others."""
    while True:
        event = await next_event(backend, timeout)
        if event.task_id == task_id and event.final:
            return event


def memory_cgroup_writable() -> bool:
    group = TaskCgroups.create(f"probe-{os.getpid()}", 64 << 20)
    try:
        return group.memory_limited
    finally:
        group.remove()


def require_cgroups() -> None:
    """Skip without a writable memory cgroup, or fail if KOHAKURIVER_REQUIRE_INTEGRATION=1."""
    if memory_cgroup_writable():
        return
    message = "no writable memory cgroup on this machine"
    if os.environ.get("KOHAKURIVER_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"{message} (KOHAKURIVER_REQUIRE_INTEGRATION=1 forbids skipping)")
    pytest.skip(message)
