"""Notebook jobs on the host: submit, task tokens, progress, results, artifacts, contents."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from kohakuriver_lab.testing.api import parameterized_notebook, wait_status
from kohakuriver_lab.testing.fake_runner import FakeRunner

NOTEBOOK = parameterized_notebook()

pytestmark = pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)


def job_client(host_url: str, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Task {token}"} if token else {}
    return httpx.AsyncClient(base_url=host_url + "kohakuriver/api/", headers=headers)


async def test_notebook_job_round_trip(
    api: Any, host_url: str, runner_token: str, jp_fetch: Any, jp_ws_fetch: Any
) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    try:
        body = {
            "task_type": "notebook",
            "notebook": NOTEBOOK,
            "parameters": {"alpha": 0.5},
            "name": "train.ipynb",
        }
        task_id = (await api.post("tasks", body, expect=201))["task_ids"][0]
        task = await wait_status(api, task_id, {"running"})
        assert task["command"] == ["python", "-m", "kohakuriver_lab.nbjob"]
        assert task["parameters"] == {"alpha": 0.5}
        spec = runner.started[int(task_id)].task
        token = spec.env["KOHAKURIVER_TASK_TOKEN"]
        assert "KOHAKURIVER_TASK_TOKEN" not in task["env"]  # never shown by the API
        events = await jp_ws_fetch("kohakuriver", "api", "events", params={"tasks": task_id})
        assert json.loads(await events.read_message())["type"] == "subscribed"

        async with job_client(host_url, token) as job:
            assert (await job.get(f"tasks/{task_id}/job")).json() == {
                "parameters": {"alpha": 0.5},
                "notebook_name": "train.ipynb",
            }
            nb = (await job.get(f"tasks/{task_id}/artifacts/input.ipynb")).json()
            assert nb["cells"][0]["source"] == "alpha = 1"
            r = await job.post(f"tasks/{task_id}/progress", json={"done": 1, "total": 3, "cell": 0})
            assert r.status_code == 204
            frame = json.loads(await asyncio.wait_for(events.read_message(), 5))
            assert frame == {
                "type": "progress",
                "task_id": task_id,
                "done": 1,
                "total": 3,
                "cell": 0,
                "error": None,
            }
            assert (
                await job.post(f"tasks/{task_id}/results", json={"name": "loss", "value": 0.25})
            ).status_code == 204
            executed = dict(NOTEBOOK, cells=[dict(NOTEBOOK["cells"][0], execution_count=1)])
            put = await job.put(
                f"tasks/{task_id}/artifacts/output.ipynb", content=json.dumps(executed).encode()
            )
            assert put.status_code == 204, put.text
            error = "cell 2: ZeroDivisionError: division by zero"
            await job.post(
                f"tasks/{task_id}/progress", json={"done": 2, "total": 3, "cell": 1, "error": error}
            )
        await runner.finish(int(task_id), exit_code=1)
        done = await wait_status(api, task_id, {"failed"})
        assert done["reason"] == error
        assert done["output_path"] == f"kohakuriver-jobs/{task_id}/output.ipynb"
        assert (await api.get(f"tasks/{task_id}/results")) == {"results": {"loss": 0.25}}
        response = await jp_fetch("api", "contents", "kohakuriver-jobs", task_id, "output.ipynb")
        model = json.loads(response.body)
        assert model["type"] == "notebook"
        assert model["content"]["cells"][0]["execution_count"] == 1
        events.close()
    finally:
        await runner.close()


async def test_sweep_is_one_batch_with_results(api: Any, host_url: str, runner_token: str) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    try:
        sets = [{"alpha": a} for a in (0.1, 0.2, 0.3)]
        body = {"task_type": "notebook", "notebook": NOTEBOOK, "parameter_sets": sets, "cores": 0}
        result = await api.post("tasks", body, expect=201)
        assert len(result["task_ids"]) == 3
        for task_id, params in zip(result["task_ids"], sets, strict=True):
            await wait_status(api, task_id, {"running"})
            token = runner.started[int(task_id)].task.env["KOHAKURIVER_TASK_TOKEN"]
            async with job_client(host_url, token) as job:
                r = await job.post(
                    f"tasks/{task_id}/results",
                    json={"name": "score", "value": params["alpha"] * 10},
                )
                assert r.status_code == 204
            await runner.finish(int(task_id))
        table = (await api.get(f"batches/{result['batch_id']}/results"))["results"]
        assert [
            (row["parameters"]["alpha"], row["results"]["score"], row["status"]) for row in table
        ] == [(0.1, 1.0, "completed"), (0.2, 2.0, "completed"), (0.3, 3.0, "completed")]
    finally:
        await runner.close()


async def test_task_tokens_open_only_their_own_task(
    api: Any, host_url: str, runner_token: str
) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    try:
        body = {"task_type": "notebook", "notebook": NOTEBOOK, "parameter_sets": [{}, {}]}
        first, second = (await api.post("tasks", body, expect=201))["task_ids"]
        await wait_status(api, first, {"running"})
        token = runner.started[int(first)].task.env["KOHAKURIVER_TASK_TOKEN"]
        async with job_client(host_url, token) as job:
            r = await job.post(f"tasks/{second}/results", json={"name": "x", "value": 1})
            assert r.status_code == 403
            assert (await job.get("tasks")).status_code in (401, 403)  # no user routes
        async with job_client(host_url, None) as anonymous:
            assert (await anonymous.get(f"tasks/{first}/job")).status_code in (401, 403)
        async with job_client(host_url, "krt_" + "0" * 64) as forged:
            assert (await forged.get(f"tasks/{first}/artifacts/input.ipynb")).status_code == 403
        async with job_client(host_url, token) as job:
            bad = await job.put(f"tasks/{first}/artifacts/output.ipynb", content=b"not json")
            assert bad.status_code == 400 and "not a notebook" in bad.json()["message"]
            big = await job.post(f"tasks/{first}/progress", json={"done": -1, "total": 1})
            assert big.status_code == 400
    finally:
        await runner.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"task_type": "notebook"}, "notebook: required"),
        ({"task_type": "notebook", "notebook": {"cells": "x"}}, "nbformat 4"),
        ({"task_type": "notebook", "notebook": NOTEBOOK, "command": ["x"]}, "not allowed"),
        ({"command": ["x"], "parameters": {"a": 1}}, "only notebook jobs"),
        (
            {
                "task_type": "notebook",
                "notebook": NOTEBOOK,
                "parameters": {},
                "parameter_sets": [{}],
            },
            "either",
        ),
    ],
)
async def test_bad_notebook_submits(api: Any, body: dict[str, Any], message: str) -> None:
    status, data = await api.call("POST", "tasks", body)
    assert status == 400 and message in data["message"], data


async def test_concurrent_job_outputs_all_land(api: Any, host_url: str, runner_token: str) -> None:
    """The first outputs of a sweep arrive together, before the jobs folder exists: each is
    saved (a folder another upload created meanwhile is no error; it was a 500)."""
    runner = await FakeRunner(
        host_url, runner_token, "node-a", cores=8, auto_finish=False
    ).connect()
    try:
        body = {"task_type": "notebook", "notebook": NOTEBOOK, "parameter_sets": [{}] * 6}
        ids = (await api.post("tasks", body, expect=201))["task_ids"]
        for task_id in ids:
            await wait_status(api, task_id, {"running"})
        executed = json.dumps(NOTEBOOK).encode()

        async def upload(task_id: str) -> int:
            token = runner.started[int(task_id)].task.env["KOHAKURIVER_TASK_TOKEN"]
            async with job_client(host_url, token) as job:
                put = await job.put(f"tasks/{task_id}/artifacts/output.ipynb", content=executed)
                return put.status_code

        assert await asyncio.gather(*(upload(t) for t in ids)) == [204] * len(ids)
        for task_id in ids:
            task = await api.get(f"tasks/{task_id}")
            assert task["output_path"] == f"kohakuriver-jobs/{task_id}/output.ipynb"
    finally:
        await runner.close()
