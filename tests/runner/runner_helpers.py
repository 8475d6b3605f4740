"""Helpers shared by the runner tests (importable: conftest puts this dir on sys.path)."""

from __future__ import annotations

import asyncio
import sys

from kohakuriver_lab.protocol import TaskSpec
from kohakuriver_lab.runner.backends.base import Backend, TaskEvent

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
