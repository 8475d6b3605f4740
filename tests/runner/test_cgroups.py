"""Cgroup confinement with real processes (skipped without a writable memory cgroup)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from runner_helpers import PY, final_event, spec

from kohakuriver_lab.runner import taskdir
from kohakuriver_lab.runner.backends.local import LocalBackend
from kohakuriver_lab.testing.integration import require_cgroups

pytestmark = pytest.mark.cgroups


def test_memory_limit_is_killed_oom_and_cgroup_removed(state_dir: Path) -> None:
    require_cgroups()
    hog = "b = []\nwhile True: b.append(bytearray(8 << 20))"

    async def main() -> None:
        backend = LocalBackend(state_dir=state_dir, node="n1")
        task = spec([PY, "-c", hog], memory=64 << 20)
        await backend.start(task)
        path = state_dir / "tasks" / str(task.task_id)
        cgroups = taskdir.read_json(path / taskdir.CGROUPS)
        memory_dir = Path(
            cgroups["paths"]["memory"] if cgroups["version"] == 1 else cgroups["paths"]["unified"]
        )
        assert memory_dir.is_dir()
        event = await final_event(backend, task.task_id, timeout=30)
        assert (event.state, event.exit_code) == ("killed_oom", -9)
        assert event.reason and "out of memory" in event.reason
        assert not memory_dir.exists()  # cleaned up

    asyncio.run(main())


def test_within_limit_completes(state_dir: Path) -> None:
    require_cgroups()

    async def main() -> None:
        backend = LocalBackend(state_dir=state_dir, node="n1")
        task = spec([PY, "-c", "b = bytearray(16 << 20)"], memory=128 << 20)
        await backend.start(task)
        assert (await final_event(backend, task.task_id)).state == "completed"

    asyncio.run(main())
