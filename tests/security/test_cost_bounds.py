"""Cost bounds (issue 10, attack 8): a sweep, a batch, a user's queue, a notebook and the
artifacts of a job and of a user are bounded by ``CostLimits`` traits; each refusal is a
4xx that names its limit and trait, and nothing of a refused request is stored."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from kohakuriver_lab.testing.api import parameterized_notebook
from kohakuriver_lab.testing.fake_runner import FakeRunner

NOTEBOOK = parameterized_notebook()


@pytest.fixture
def host_config() -> dict[str, Any]:
    return {
        "CostLimits": {
            "max_parameter_sets": 5,
            "max_batch_tasks": 6,
            "max_queued_tasks": 8,
            "max_notebook_bytes": 20_000,
            "max_artifact_bytes": 30_000,
            "max_job_artifact_bytes": 50_000,
            "max_user_artifact_bytes": 120_000,
        }
    }


async def queued(api: Any) -> int:
    page = await api.get("tasks", status="pending,pending_approval", count="true")
    return int(page["total"])


def sweep(n: int) -> dict[str, Any]:
    return {
        "task_type": "notebook",
        "notebook": NOTEBOOK,
        "parameter_sets": [{"alpha": i} for i in range(n)],
    }


async def test_parameter_sets_per_sweep(api: Any) -> None:
    status, body = await api.call("POST", "tasks", sweep(6))
    assert status == 400, (status, body)
    assert "CostLimits.max_parameter_sets" in body["message"] and "5" in body["message"]
    assert await queued(api) == 0
    result = await api.post("tasks", sweep(5), expect=201)
    assert len(result["task_ids"]) == 5


async def test_a_sweep_stores_its_notebook_once(api: Any, services: Any) -> None:
    ids = (await api.post("tasks", sweep(3), expect=201))["task_ids"]
    root = services.jobs.artifacts.root
    stats = [os.stat(root / f"{int(i) % 1000:03d}" / i / "input.ipynb") for i in ids]
    assert len({(s.st_dev, s.st_ino) for s in stats}) == 1  # hard links, not 3 copies


async def test_tasks_per_batch(api: Any, host_url: str, runner_token: str) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    try:
        body = {"command": ["true"], "targets": ["node-a"] * 7}
        status, data = await api.call("POST", "tasks", body)
        assert status == 400, (status, data)
        assert "CostLimits.max_batch_tasks" in data["message"]
        body["targets"] = ["node-a"] * 6
        assert len((await api.post("tasks", body, expect=201))["task_ids"]) == 6
    finally:
        await runner.close()


async def test_queued_tasks_per_user(api: Any) -> None:
    for _ in range(2):
        await api.post("tasks", {"command": ["true"], "targets": None, "cores": 1}, expect=201)
    await api.post("tasks", sweep(5), expect=201)  # 7 queued (no node: they wait)
    status, body = await api.call("POST", "tasks", sweep(2))
    assert status == 429, (status, body)
    assert "CostLimits.max_queued_tasks" in body["message"] and "8" in body["message"]
    await api.post("tasks", {"command": ["true"]}, expect=201)  # the 8th fits
    assert await queued(api) == 8


async def test_notebook_size_per_job(api: Any) -> None:
    big = dict(NOTEBOOK, cells=[dict(NOTEBOOK["cells"][0], source="x" * 25_000)])
    status, body = await api.call("POST", "tasks", {"task_type": "notebook", "notebook": big})
    assert status == 413, (status, body)
    assert "CostLimits.max_notebook_bytes" in body["message"]
    assert await queued(api) == 0


async def _job(api: Any, services: Any) -> tuple[str, httpx.AsyncClient, str]:
    task_id = (await api.post("tasks", sweep(1), expect=201))["task_ids"][0]
    token = services.task_tokens.token_for(int(task_id))
    return task_id, httpx.AsyncClient(headers={"Authorization": f"Task {token}"}), token


async def test_artifact_bytes_per_file_and_per_job(api: Any, services: Any, host_url: str) -> None:
    task_id, job, _ = await _job(api, services)
    url = f"{host_url}kohakuriver/api/tasks/{task_id}/artifacts"
    async with job:
        r = await job.put(f"{url}/big.bin", content=b"x" * 30_001)
        assert r.status_code == 413, r.text
        assert "CostLimits.max_artifact_bytes" in r.json()["message"]
        assert (await job.put(f"{url}/a.bin", content=b"x" * 29_000)).status_code == 204
        r = await job.put(f"{url}/b.bin", content=b"x" * 25_000)
        assert r.status_code == 413, r.text
        assert "CostLimits.max_job_artifact_bytes" in r.json()["message"]

        # streamed without a length: cut off at the limit as it arrives
        async def chunks() -> Any:
            for _ in range(40):
                yield b"y" * 1000

        try:  # the host answers 413 and closes; the client may see only the close
            r = await job.put(f"{url}/c.bin", content=chunks())
            assert r.status_code == 413, r.text
        except httpx.TransportError:
            pass
        # replacing a file counts its new size only
        assert (await job.put(f"{url}/a.bin", content=b"z" * 29_500)).status_code == 204
    names = services.jobs.artifacts.names(int(task_id))
    assert names == ["a.bin", "input.ipynb"]
    assert not [p for p in os.listdir(services.jobs.artifacts.folder(int(task_id))) if p[0] == "."]


async def test_artifact_bytes_per_user(api: Any, services: Any, host_url: str) -> None:
    stored = 0
    for _ in range(6):
        task_id, job, _ = await _job(api, services)
        async with job:
            r = await job.put(
                f"{host_url}kohakuriver/api/tasks/{task_id}/artifacts/out.bin",
                content=b"x" * 29_000,
            )
        if r.status_code == 413:
            assert "CostLimits.max_user_artifact_bytes" in r.json()["message"], r.text
            break
        assert r.status_code == 204, r.text
        stored += 1
    else:
        raise AssertionError("six 29 kB uploads passed a 120 kB per-user limit")
    assert 2 <= stored <= 4


async def test_wrong_task_token_body_is_refused_before_it_is_read(
    api: Any, services: Any, host_url: str
) -> None:
    task_id = (await api.post("tasks", sweep(1), expect=201))["task_ids"][0]
    other = services.task_tokens.token_for(int(task_id) + 1)
    async with httpx.AsyncClient(headers={"Authorization": f"Task {other}"}) as job:
        r = await job.put(
            f"{host_url}kohakuriver/api/tasks/{task_id}/artifacts/out.bin",
            content=b"x" * 100,
        )
    assert r.status_code == 403, r.text
