"""Others' tasks are redacted from one allow-list, on REST and the events socket alike
(issue 10, attack 6): a failed notebook job's ``progress.error`` (a traceback with a secret)
reaches its owner, never another user."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import websockets

from kohakuriver_lab.models import ApiTokenCreate, Role, TaskInfo, UserCreate
from kohakuriver_lab.server.policy import VISIBLE_TO_OTHERS, redact
from kohakuriver_lab.server.routes import API_PREFIX
from kohakuriver_lab.server.users import host_owner
from kohakuriver_lab.testing.api import api_call as call
from kohakuriver_lab.testing.api import parameterized_notebook
from kohakuriver_lab.testing.fake_runner import FakeRunner

Fetch = Callable[..., Awaitable[Any]]
SECRET = "sk-live-7f3a9c1e"
NOTEBOOK = parameterized_notebook()


def member(services: Any, name: str, role: Role = Role.USER) -> dict[str, str]:
    admin = services.users.caller(host_owner())
    services.users.create(UserCreate(username=name, role=role), admin)
    token = services.api_tokens.create(admin, ApiTokenCreate(name="t", username=name))
    return {"Authorization": f"Bearer {token.token}"}


async def frames_until(ws: Any, task: str, status: str, raw: list[str]) -> dict[str, Any]:
    """Read frames (kept in ``raw``) until the task frame of ``task`` with ``status``."""

    async def read() -> dict[str, Any]:
        while True:
            text = await ws.recv()
            raw.append(text)
            frame = json.loads(text)
            about = frame["type"] == "task" and frame["task"]["task_id"] == task
            if about and frame["task"]["status"] == status:
                return frame  # type: ignore[no-any-return]

    return await asyncio.wait_for(read(), 10)


async def test_a_failed_jobs_error_reaches_its_owner_only(
    jp_fetch: Fetch, services: Any, host_url: str, runner_token: str
) -> None:
    nora = member(services, "nora")
    olga = member(services, "olga")
    base = host_url.replace("http", "ws", 1).rstrip("/") + API_PREFIX
    owners_ws = await websockets.connect(f"{base}/events?topics=tasks", additional_headers=nora)
    others_ws = await websockets.connect(f"{base}/events?topics=tasks", additional_headers=olga)
    for ws in (owners_ws, others_ws):
        assert json.loads(await ws.recv())["type"] == "subscribed"
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    owners: list[str] = []
    others: list[str] = []
    try:
        body = {
            "task_type": "notebook",
            "notebook": NOTEBOOK,
            "parameters": {"api_key": SECRET},
            "name": f"train-{SECRET}.ipynb",
            "env": {"KEY": SECRET},
        }
        status, submitted = await call(jp_fetch, "POST", "/tasks", nora, body)
        assert status == 201, submitted
        task = str(submitted["task_ids"][0])
        await frames_until(owners_ws, task, "running", owners)
        token = runner.started[int(task)].task.env["KOHAKURIVER_TASK_TOKEN"]
        error = f"cell 1: KeyError: 'token={SECRET}'\nTraceback (most recent call last): ..."
        async with httpx.AsyncClient(
            base_url=host_url + "kohakuriver/api/", headers={"Authorization": f"Task {token}"}
        ) as job:
            r = await job.post(
                f"tasks/{task}/progress", json={"done": 1, "total": 2, "cell": 1, "error": error}
            )
            assert r.status_code == 204
        await runner.finish(int(task), exit_code=1)
        failed = await frames_until(owners_ws, task, "failed", owners)
        seen = await frames_until(others_ws, task, "failed", others)
    finally:
        await runner.close()
        await owners_ws.close()
        await others_ws.close()

    # the owner: the error everywhere it belongs
    assert failed["task"]["progress"]["error"] == error and failed["task"]["reason"] == error
    progress = [json.loads(r) for r in owners if json.loads(r)["type"] == "progress"]
    assert progress and progress[0]["error"] == error
    status, info = await call(jp_fetch, "GET", f"/tasks/{task}", nora)
    assert info["progress"]["error"] == error and info["env"] == {"KEY": SECRET}

    # another user: not on the socket, not in the task, not in the list
    assert others and not [r for r in others if SECRET in r]
    assert not [r for r in others if json.loads(r)["type"] == "progress"]
    assert seen["task"]["redacted"] and seen["task"]["progress"] is None
    status, info = await call(jp_fetch, "GET", f"/tasks/{task}", olga)
    assert status == 200 and info["redacted"] and info["status"] == "failed"
    assert SECRET not in json.dumps(info)
    assert (info["progress"], info["reason"], info["name"]) == (None, None, None)
    status, page = await call(jp_fetch, "GET", "/tasks", olga)
    listed = [t for t in page["tasks"] if t["task_id"] == task]
    assert listed and SECRET not in json.dumps(page)


def test_every_field_outside_the_allow_list_is_blanked() -> None:
    """All of TaskInfo, filled with a marker: only the allow-list shows through (a field
    added later is hidden until it is added there), and the result is still a TaskInfo."""
    fields = set(TaskInfo.model_fields)
    assert fields >= VISIBLE_TO_OTHERS, VISIBLE_TO_OTHERS - fields
    full = TaskInfo(
        task_id=1,
        batch_id=1,
        name=SECRET,
        task_type="notebook",  # type: ignore[arg-type]
        owner="nora",
        status="failed",  # type: ignore[arg-type]
        command=["python", SECRET],
        env={"K": SECRET},
        workdir=f"/home/{SECRET}",
        image=f"registry/{SECRET}:1",
        mounts=[f"/data/{SECRET}:/d"],
        ssh_port=2222,
        req_cores=1,
        reason=SECRET,
        parameters={"p": SECRET},
        progress={"done": 1, "error": SECRET},
        output_path=f"jobs/{SECRET}.ipynb",
        submitted_at=0.0,
    ).model_dump(mode="json")
    shown = redact({**full, "future_field": SECRET})
    assert SECRET not in json.dumps(shown)
    assert shown["ssh_port"] is None and shown["redacted"] is True
    assert {k: shown[k] for k in VISIBLE_TO_OTHERS} == {k: full[k] for k in VISIBLE_TO_OTHERS}
    assert TaskInfo.model_validate(shown).command == []
