"""Runner restarts with the docker backend: a new backend on the same state dir (real dockerd)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from docker_helpers import BUSYBOX, MakeBackend, until
from runner_helpers import final_event, next_event, spec

from kohakuriver_lab.models import LogStream

pytestmark = [pytest.mark.integration]


def test_restart_mid_task_reports_real_exit_code_and_whole_log(make_backend: MakeBackend) -> None:
    async def main() -> None:
        first = make_backend()
        task = spec(
            ["sh", "-c", "echo before; echo e1 >&2; sleep 1.5; echo after; echo e2 >&2; exit 7"],
            image=BUSYBOX,
        )
        await first.start(task)
        await until(lambda: first.log_sizes(task.task_id)[LogStream.STDOUT] > 0)
        await first.close()  # the runner goes away; the container keeps running

        second = make_backend()
        await second.recover()
        [report] = await second.list_tasks()
        assert (report.task_id, report.state) == (task.task_id, "running")
        event = await final_event(second, task.task_id)
        assert (event.state, event.exit_code, event.reason) == ("failed", 7, "exit code 7")
        # resumed from where the files were: nothing lost, nothing doubled
        assert second.read_log(task.task_id, LogStream.STDOUT, 0, 1000) == b"before\nafter\n"
        assert second.read_log(task.task_id, LogStream.STDERR, 0, 1000) == b"e1\ne2\n"
        await second.close()

    asyncio.run(main())


def test_task_that_ended_while_runner_was_down(make_backend: MakeBackend, docker_api: Any) -> None:
    async def main() -> None:
        first = make_backend()
        ok = spec(["sh", "-c", "sleep 0.5; echo done"], image=BUSYBOX)
        killed = spec(["sleep", "30"], image=BUSYBOX)
        for task in (ok, killed):
            await first.start(task)
        await first.kill(killed.task_id, grace=0)  # asked for, not yet seen by this runner
        await first.close()
        for task in (ok, killed):
            name = f"kohakuriver-task-{task.task_id}"
            docker_api.wait(name, timeout=10)

        second = make_backend()
        await second.recover()
        # The first runner may or may not have recorded the ends before it closed: either
        # way the new one reports them (in hello, from list_tasks), with the real exit codes.
        deadline = time.monotonic() + 15
        while True:
            reports = {r.task_id: r for r in await second.list_tasks()}
            if all(r.state not in ("running", "paused") for r in reports.values()):
                break
            assert time.monotonic() < deadline, reports
            await asyncio.sleep(0.05)
        assert (reports[ok.task_id].state, reports[ok.task_id].exit_code) == ("completed", 0)
        assert (reports[killed.task_id].state, reports[killed.task_id].exit_code) == ("killed", 137)
        assert second.read_log(ok.task_id, LogStream.STDOUT, 0, 100) == b"done\n"
        assert set(reports) == {ok.task_id, killed.task_id}
        await second.close()

    asyncio.run(main())


def test_paused_task_is_recovered_paused(make_backend: MakeBackend) -> None:
    async def main() -> None:
        first = make_backend()
        task = spec(["sh", "-c", "echo up; sleep 30"], image=BUSYBOX)
        await first.start(task)
        await until(lambda: first.log_sizes(task.task_id)[LogStream.STDOUT] > 0)
        await first.pause(task.task_id)
        await first.close()

        second = make_backend()
        await second.recover()
        assert [r.state for r in await second.list_tasks()] == ["paused"]
        await second.resume(task.task_id)
        assert (await next_event(second)).state == "running"
        await second.kill(task.task_id, grace=0)
        assert (await final_event(second, task.task_id)).state == "killed"
        assert second.read_log(task.task_id, LogStream.STDOUT, 0, 100) == b"up\n"
        await second.close()

    asyncio.run(main())


def test_orphan_container_is_reported_then_killed_and_removed(
    make_backend: MakeBackend, tmp_path: Path, docker_api: Any
) -> None:
    """A container with this node's labels but no task dir (e.g. the state dir was wiped)."""

    async def main() -> None:
        old = make_backend(state=tmp_path / "old-state")
        task = spec(["sh", "-c", "echo orphan; sleep 60"], image=BUSYBOX)
        await old.start(task)
        await until(lambda: old.log_sizes(task.task_id)[LogStream.STDOUT] > 0)
        await old.close()

        fresh = make_backend(state=tmp_path / "new-state")
        await fresh.recover()
        [report] = await fresh.list_tasks()
        assert (report.task_id, report.state) == (task.task_id, "running")
        await until(lambda: fresh.log_sizes(task.task_id)[LogStream.STDOUT] == len(b"orphan\n"))
        # what the host does with a task it does not know: kill_task(grace=0), forget_task
        await fresh.kill(task.task_id, grace=0)
        await fresh.forget(task.task_id)
        assert not fresh.knows(task.task_id)
        assert await fresh.list_tasks() == []
        name = f"kohakuriver-task-{task.task_id}"
        assert not docker_api.containers(all=True, filters={"name": name})
        await asyncio.sleep(0.3)
        assert fresh.events.empty()  # a forgotten task reports nothing more
        await fresh.close()

    asyncio.run(main())


def test_container_removed_behind_the_runners_back(
    make_backend: MakeBackend, docker_api: Any
) -> None:
    async def main() -> None:
        first = make_backend()
        task = spec(["sleep", "30"], image=BUSYBOX)
        await first.start(task)
        await first.close()
        docker_api.remove_container(f"kohakuriver-task-{task.task_id}", force=True)

        second = make_backend()
        await second.recover()
        [report] = await second.list_tasks()
        assert (report.state, report.exit_code) == ("failed", None)
        assert report.reason == "container gone; exit status unknown"
        await second.close()

    asyncio.run(main())
