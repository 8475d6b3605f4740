"""The whole stack with the real local backend: host, embedded runner, supervisor, cgroups."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import TERMINAL, HostProcess, wait_for, wait_node

from kohakuriver_lab.testing.integration import require_cgroups

pytestmark = [pytest.mark.integration]

PROBE = (
    "import json, os; print(json.dumps({'task': os.environ['KOHAKURIVER_TASK_ID'], "
    "'node': os.environ['KOHAKURIVER_NODE'], 'cuda': os.environ['CUDA_VISIBLE_DEVICES'], "
    "'cpus': sorted(os.sched_getaffinity(0)), 'cwd': os.getcwd(), 'user': os.environ['MY_VAR'], "
    "'argv': __import__('sys').argv[1:]}))"
)


@pytest.fixture
def host(make_host: Callable[..., HostProcess]) -> HostProcess:
    host = make_host(heartbeat=0.5, embedded=True)
    with host.client() as client:
        wait_node(client, "embedded", "online")
    return host


def test_embedded_runner_runs_argv_with_pinning_and_env(host: HostProcess, workdir: Path) -> None:
    with host.client() as client:
        node = client.get_node("embedded")
        assert node.backends == ["local"] and node.gpus == []
        result = client.submit(
            ["python3", "-c", PROBE, "$(echo not-a-shell)", "a b"],
            env={"MY_VAR": "mine"},
            workdir=str(workdir),
            cores=1,
        )
        task = wait_for(client, result.task_ids[0], TERMINAL)
        assert task.status.value == "completed", client.logs(task.task_id, "stderr").data
        seen = json.loads(client.logs(task.task_id).data)
        assert seen == {
            "task": str(task.task_id),
            "node": "embedded",
            "cuda": "",
            "cpus": task.assigned_cores,
            "cwd": str(workdir),
            "user": "mine",
            "argv": ["$(echo not-a-shell)", "a b"],
        }
        # the token the runner dialled in with is never visible to tasks
        leak = client.submit(["sh", "-c", "env | grep -c KOHAKURIVER_RUNNER_TOKEN || true"])
        wait_for(client, leak.task_ids[0], TERMINAL)
        assert client.logs(leak.task_ids[0]).data.strip() == "0"


def test_kill_pause_resume_and_missing_program(host: HostProcess, workdir: Path) -> None:
    counter = workdir / "count"
    # written atomically (write + rename), so a reader never sees the file empty
    script = (
        f"i=0; while true; do i=$((i+1)); echo $i > {counter}.tmp; mv {counter}.tmp {counter}; "
        "sleep 0.05; done"
    )
    with host.client() as client:
        # its workdir is the one directory of the test's the confined task sees
        task_id = client.submit(["sh", "-c", script], workdir=str(workdir)).task_ids[0]
        wait_for(client, task_id, {"running"})
        time.sleep(0.3)
        client.pause(task_id)
        wait_for(client, task_id, {"paused"})
        time.sleep(0.2)
        frozen = counter.read_text()
        time.sleep(0.4)
        assert counter.read_text() == frozen
        client.resume(task_id)
        wait_for(client, task_id, {"running"})
        time.sleep(0.4)
        assert int(counter.read_text()) > int(frozen)
        client.kill(task_id)
        killed = wait_for(client, task_id, TERMINAL)
        assert killed.status.value == "killed"

        missing = client.submit(["definitely-not-a-program-xyz"]).task_ids[0]
        failed = wait_for(client, missing, TERMINAL)
        assert failed.status.value == "failed" and failed.exit_code == 127
        assert "definitely-not-a-program-xyz" in (failed.reason or "")


def test_memory_limit_oom_is_killed_oom(host: HostProcess) -> None:
    require_cgroups()
    hog = "x = []\nwhile True: x.append(bytearray(8 << 20))"
    with host.client() as client:
        task_id = client.submit(["python3", "-c", hog], memory="64M").task_ids[0]
        task = wait_for(client, task_id, TERMINAL, timeout=30)
        assert task.status.value == "killed_oom", task
        ok = client.submit(["python3", "-c", "b = bytearray(16 << 20)"], memory="64M").task_ids[0]
        assert wait_for(client, ok, TERMINAL).status.value == "completed"


def test_client_follows_logs_live_and_waits(host: HostProcess) -> None:
    with host.client() as client:
        script = "echo one; echo warn >&2; sleep 0.5; echo two"
        task_id = client.submit(["sh", "-c", script]).task_ids[0]
        seen = list(client.follow_logs(task_id))
        assert "".join(t for s, t in seen if s == "stdout") == "one\ntwo\n"
        assert "".join(t for s, t in seen if s == "stderr") == "warn\n"
        done = client.wait(task_id, timeout=10)
        assert done.status.value == "completed"


def test_async_client_against_the_host(host: HostProcess) -> None:
    import asyncio

    from harness import TOKEN

    from kohakuriver_lab.client import AsyncClient

    async def main() -> None:
        async with AsyncClient(host.url, TOKEN) as client:
            batch = await client.submit(["sh", "-c", "echo async"], name="a")
            task = await client.wait(batch.task_ids[0], timeout=10)
            assert task.status.value == "completed"
            chunks = [text async for _, text in client.follow_logs(task.task_id, stream="stdout")]
            assert "".join(chunks) == "async\n"
            page = await client.list_tasks(status="completed")
            assert task.task_id in [t.task_id for t in page.tasks]

    asyncio.run(main())


REPORT_RESULT = """
import json, os, urllib.request
url = os.environ["KOHAKURIVER_URL"] + "kohakuriver/api/tasks/%s/results" % os.environ["KOHAKURIVER_TASK_ID"]
request = urllib.request.Request(
    url, data=json.dumps({"name": "answer", "value": [42]}).encode(), method="POST",
    headers={"Authorization": "Task " + os.environ["KOHAKURIVER_TASK_TOKEN"],
             "Content-Type": "application/json"})
print(urllib.request.urlopen(request).status)
"""


def test_a_task_reports_results_with_its_task_token(host: HostProcess) -> None:
    with host.client() as client:
        task_id = client.submit(["python3", "-c", REPORT_RESULT]).task_ids[0]
        task = wait_for(client, task_id, TERMINAL)
        assert task.status.value == "completed", client.logs(task_id, "stderr").data
        assert client.logs(task_id).data == "204\n"
        assert client.results(task_id) == {"answer": [42]}
