"""The local backend with real processes (no cgroups needed)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from runner_helpers import PY, final_event, next_event, spec

from kohakuriver_lab.models import LogStream
from kohakuriver_lab.runner import taskdir
from kohakuriver_lab.runner.backends.base import load_backend_class
from kohakuriver_lab.runner.backends.local import LocalBackend
from kohakuriver_lab.runner.cgroups import TaskCgroups
from kohakuriver_lab.runner.errors import InvalidTaskState, TaskNotFound, TaskStartError


def _pid_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def _wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_entry_point_finds_local_backend() -> None:
    assert load_backend_class("local") is LocalBackend
    with pytest.raises(LookupError, match="unknown runner backend"):
        load_backend_class("nope")


def test_exit_codes_and_output(state_dir: Path) -> None:
    async def main() -> None:
        backend = LocalBackend(state_dir=state_dir, node="n1")
        ok = spec(["sh", "-c", "echo out; echo err >&2"])
        bad = spec(["sh", "-c", "echo before; exit 3"])
        await backend.start(ok)
        assert (await next_event(backend)).state == "running"
        event = await final_event(backend, ok.task_id)
        assert (event.state, event.exit_code, event.reason) == ("completed", 0, None)
        assert backend.read_log(ok.task_id, LogStream.STDOUT, 0, 100) == b"out\n"
        assert backend.read_log(ok.task_id, LogStream.STDERR, 0, 100) == b"err\n"
        assert backend.read_log(ok.task_id, LogStream.STDOUT, 2, 100) == b"t\n"
        await backend.start(bad)
        event = await final_event(backend, bad.task_id)
        assert (event.state, event.exit_code, event.reason) == ("failed", 3, "exit code 3")
        reports = {r.task_id: r for r in await backend.list_tasks()}
        assert reports[bad.task_id].exit_code == 3
        assert reports[bad.task_id].log_sizes == {LogStream.STDOUT: 7, LogStream.STDERR: 0}

    asyncio.run(main())


def test_signal_death_is_failed_with_signal_name(state_dir: Path) -> None:
    async def main() -> None:
        backend = LocalBackend(state_dir=state_dir, node="n1")
        task = spec(["sh", "-c", "kill -SEGV $$"])
        await backend.start(task)
        event = await final_event(backend, task.task_id)
        assert (event.state, event.exit_code) == ("failed", -11)
        assert event.reason == "killed by signal SIGSEGV"

    asyncio.run(main())


def test_env_argv_and_workdir(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOHAKURIVER_RUNNER_TOKEN", "secret-token")
    monkeypatch.setenv("KOHAKURIVER_OTHER_SECRET", "x")
    script = (
        "import os, sys, json; e = os.environ; "
        "print(json.dumps([sys.argv[1:], e['KOHAKURIVER_TASK_ID'], e['KOHAKURIVER_NODE'], "
        "e['CUDA_VISIBLE_DEVICES'], e.get('MY_VAR'), os.getcwd(), "
        "sorted(k for k in e if k.startswith('KOHAKURIVER_'))]))"
    )

    tmp_path.chmod(0o755)  # a per-user task identity must be able to enter it

    async def main() -> None:
        import json

        options = {"allowed_workdirs": [str(tmp_path)]}
        backend = LocalBackend(state_dir=state_dir, node="n1", options=options)
        a = spec([PY, "-c", script, "$(echo hi)", "a b", "`id`"], env={"MY_VAR": "v"})
        b = spec([PY, "-c", script], gpus=[0, 2], workdir=str(tmp_path))
        for task in (a, b):
            await backend.start(task)
            assert (await final_event(backend, task.task_id)).state == "completed"
        out_a = json.loads(backend.read_log(a.task_id, LogStream.STDOUT, 0, 10000))
        out_b = json.loads(backend.read_log(b.task_id, LogStream.STDOUT, 0, 10000))
        assert out_a[0] == ["$(echo hi)", "a b", "`id`"]  # no shell
        assert out_a[1:5] == [str(a.task_id), "n1", "", "v"]
        assert out_a[5] == str(state_dir / "tasks" / str(a.task_id) / "work")
        assert out_a[6] == ["KOHAKURIVER_NODE", "KOHAKURIVER_TASK_ID"]  # secrets dropped
        assert out_b[3] == "0,2"
        assert out_b[5] == str(tmp_path)

    asyncio.run(main())


def test_cpu_affinity(state_dir: Path) -> None:
    core = max(os.sched_getaffinity(0))

    async def main() -> None:
        backend = LocalBackend(state_dir=state_dir, node="n1")
        task = spec(["grep", "Cpus_allowed_list", "/proc/self/status"], cores=[core])
        await backend.start(task)
        assert (await final_event(backend, task.task_id)).state == "completed"
        line = backend.read_log(task.task_id, LogStream.STDOUT, 0, 1000).decode()
        assert line.split() == ["Cpus_allowed_list:", str(core)]

    asyncio.run(main())


def test_program_not_found_fails_with_127(state_dir: Path) -> None:
    async def main() -> None:
        backend = LocalBackend(state_dir=state_dir, node="n1")
        task = spec(["no-such-program-xyz", "arg"])
        with pytest.raises(TaskStartError) as info:
            await backend.start(task)
        assert info.value.exit_code == 127
        assert info.value.message == "command not found: no-such-program-xyz"
        (report,) = await backend.list_tasks()
        assert (report.state, report.exit_code) == ("failed", 127)
        assert backend.events.empty()  # the error is the report, not an event

    asyncio.run(main())


def test_start_is_idempotent_and_forget(state_dir: Path) -> None:
    async def main() -> None:
        backend = LocalBackend(state_dir=state_dir, node="n1")
        task = spec(["sh", "-c", "echo once; sleep 0.3"])
        await backend.start(task)
        await backend.start(task)
        with pytest.raises(InvalidTaskState):
            await backend.forget(task.task_id)
        await final_event(backend, task.task_id)
        assert backend.read_log(task.task_id, LogStream.STDOUT, 0, 100) == b"once\n"
        await backend.forget(task.task_id)
        assert not (state_dir / "tasks" / str(task.task_id)).exists()
        assert await backend.list_tasks() == []
        await backend.forget(task.task_id)  # unknown: nothing to do
        with pytest.raises(TaskNotFound):
            await backend.kill(task.task_id, 1)

    asyncio.run(main())


def _work(state_dir: Path, task_id: int) -> Path:
    """The task's own working directory (where a confined task can leave files for the test)."""
    return state_dir / "tasks" / str(task_id) / "work"


def _host_pids(state_dir: Path, task_id: int) -> list[int]:
    """The task's processes as the node sees them (a confined task has PIDs of its own)."""
    data = taskdir.read_json(state_dir / "tasks" / str(task_id) / taskdir.CGROUPS)
    return TaskCgroups.from_json(data).procs()


@pytest.mark.cgroups
def test_kill_term_grace_then_kill_whole_group(state_dir: Path) -> None:
    from kohakuriver_lab.testing.integration import require_cgroups

    require_cgroups()
    script = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "g = subprocess.Popen(['sleep', '300'])\n"
        "open('pids', 'w').write(f'{os.getpid()} {g.pid}')\n"
        "time.sleep(300)\n"
    )

    async def main() -> None:
        backend = LocalBackend(state_dir=state_dir, node="n1")
        task = spec([PY, "-c", script])
        pids = _work(state_dir, task.task_id) / "pids"
        await backend.start(task)
        await asyncio.get_running_loop().run_in_executor(None, _wait_for, pids.exists)
        await asyncio.sleep(0.1)
        host_pids = _host_pids(state_dir, task.task_id)
        assert len(host_pids) >= 2  # the command and its grandchild (and the task's init)
        started = time.monotonic()
        await backend.kill(task.task_id, 0.6)
        event = await final_event(backend, task.task_id)
        elapsed = time.monotonic() - started
        assert (event.state, event.exit_code) == ("killed", -9)  # TERM ignored → KILL
        assert 0.55 <= elapsed < 5
        assert not any(_pid_alive(pid) for pid in host_pids)
        await backend.kill(task.task_id, 1)  # already ended: no-op

    asyncio.run(main())


def test_kill_respects_term(state_dir: Path) -> None:
    async def main() -> None:
        backend = LocalBackend(state_dir=state_dir, node="n1")
        task = spec(["sleep", "300"])
        await backend.start(task)
        started = time.monotonic()
        await backend.kill(task.task_id, 30)
        event = await final_event(backend, task.task_id)
        assert (event.state, event.exit_code) == ("killed", -15)
        assert time.monotonic() - started < 3

    asyncio.run(main())


def _counter_pause_resume(state_dir: Path, tmp_path: Path) -> None:
    script = (  # written atomically (in the task's own dir), so a reader never sees it empty
        "import os, time\n"
        "i = 0\n"
        "while True:\n"
        "    i += 1; open('counter.tmp', 'w').write(str(i)); os.replace('counter.tmp', "
        "'counter'); time.sleep(0.01)\n"
    )
    task = spec([PY, "-c", script])
    counter = _work(state_dir, task.task_id) / "counter"

    def read() -> int:
        try:
            return int(counter.read_text() or 0)
        except (OSError, ValueError):
            return 0

    async def main() -> None:
        backend = LocalBackend(state_dir=state_dir, node="n1")
        await backend.start(task)
        assert (await next_event(backend)).state == "running"
        await asyncio.get_running_loop().run_in_executor(None, _wait_for, lambda: read() > 3)
        await backend.pause(task.task_id)
        assert (await next_event(backend)).state == "paused"
        await asyncio.sleep(0.1)
        frozen_at = read()
        await asyncio.sleep(0.4)
        assert read() == frozen_at  # stopped advancing
        (report,) = await backend.list_tasks()
        assert report.state == "paused"
        # a new backend (runner restart) still reports it paused
        other = LocalBackend(state_dir=state_dir, node="n1")
        assert [r.state for r in await other.list_tasks()] == ["paused"]
        await backend.resume(task.task_id)
        assert (await next_event(backend)).state == "running"
        await asyncio.sleep(0.4)
        assert read() > frozen_at + 3
        await backend.pause(task.task_id)
        await backend.kill(task.task_id, 5)  # killing a paused task works
        event = await final_event(backend, task.task_id)
        assert event.state == "killed"
        with pytest.raises(InvalidTaskState):
            await backend.pause(task.task_id)

    asyncio.run(main())


def test_pause_resume_with_signals(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TaskCgroups, "can_freeze", property(lambda self: False))
    _counter_pause_resume(state_dir, tmp_path)


@pytest.mark.cgroups
def test_pause_resume_with_freezer(state_dir: Path, tmp_path: Path) -> None:
    from kohakuriver_lab.testing.integration import require_cgroups

    require_cgroups()
    _counter_pause_resume(state_dir, tmp_path)


# ===== Runner restart =====


def test_task_survives_backend_restart_and_reports_exit(state_dir: Path) -> None:
    command = ["sh", "-c", "echo up; while [ ! -e go ]; do sleep 0.02; done; echo done; exit 7"]

    async def main() -> None:
        first = LocalBackend(state_dir=state_dir, node="n1")
        task = spec(command)
        go = _work(state_dir, task.task_id) / "go"
        await first.start(task)
        await first.close()
        del first
        second = LocalBackend(state_dir=state_dir, node="n1")
        await second.recover()
        (report,) = await second.list_tasks()
        assert (report.task_id, report.state) == (task.task_id, "running")
        go.touch()
        event = await final_event(second, task.task_id)
        assert (event.state, event.exit_code) == ("failed", 7)
        assert second.read_log(task.task_id, LogStream.STDOUT, 0, 100) == b"up\ndone\n"

    asyncio.run(main())


def test_task_that_ended_without_a_backend_is_reported(state_dir: Path) -> None:
    async def main() -> None:
        first = LocalBackend(state_dir=state_dir, node="n1")
        task = spec(["sh", "-c", "while [ ! -e go ]; do sleep 0.02; done; exit 5"])
        go = _work(state_dir, task.task_id) / "go"
        await first.start(task)
        await first.close()
        go.touch()
        exit_file = state_dir / "tasks" / str(task.task_id) / taskdir.EXIT
        await asyncio.get_running_loop().run_in_executor(None, _wait_for, exit_file.exists)
        second = LocalBackend(state_dir=state_dir, node="n1")
        await second.recover()
        (report,) = await second.list_tasks()
        assert (report.state, report.exit_code, report.reason) == ("failed", 5, "exit code 5")

    asyncio.run(main())


def test_supervisor_lost_is_reported_failed(state_dir: Path) -> None:
    async def main() -> None:
        backend = LocalBackend(state_dir=state_dir, node="n1")
        path = state_dir / "tasks" / "77"
        path.mkdir(parents=True)
        (path / taskdir.SUPERVISOR_PID).write_text(str(os.getpid()))  # not a supervisor
        await backend.recover()
        (report,) = await backend.list_tasks()
        assert (report.task_id, report.state, report.exit_code) == (77, "failed", None)
        assert "supervisor died" in (report.reason or "")

    asyncio.run(main())


def test_memory_limit_without_cgroups_falls_back_to_rlimit(state_dir: Path) -> None:
    """With cgroups off (or not writable) the limit is RLIMIT_AS, with a warning in the log."""

    async def main() -> None:
        backend = LocalBackend(state_dir=state_dir, node="n1", options={"use_cgroups": False})
        hog = spec([PY, "-c", "b = bytearray(512 << 20)"], memory=256 << 20)
        small = spec([PY, "-c", "b = bytearray(16 << 20)"], memory=256 << 20)
        await backend.start(hog)
        event = await final_event(backend, hog.task_id)
        assert (event.state, event.exit_code) == ("failed", 1)  # MemoryError, not an OOM kill
        assert b"MemoryError" in backend.read_log(hog.task_id, LogStream.STDERR, 0, 10_000)
        log = (state_dir / "tasks" / str(hog.task_id) / taskdir.SUPERVISOR_LOG).read_text()
        assert "RLIMIT_AS" in log
        await backend.start(small)
        assert (await final_event(backend, small.task_id)).state == "completed"

    asyncio.run(main())
