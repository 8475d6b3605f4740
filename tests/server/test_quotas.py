"""Quotas (per user and per group) and fair-share ordering, with a fake runner over a real
WebSocket and real REST calls as different users."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kohakuriver_lab.models import ApiTokenCreate, Role, UserCreate
from kohakuriver_lab.server.users import host_owner
from kohakuriver_lab.testing.api import api_call
from kohakuriver_lab.testing.fake_runner import FakeRunner

Fetch = Callable[..., Awaitable[Any]]


@pytest.fixture
def member(services: Any, started_host: Any) -> Callable[..., dict[str, str]]:
    admin = services.users.caller(host_owner())

    def make(name: str, groups: tuple[str, ...] = ()) -> dict[str, str]:
        services.users.create(UserCreate(username=name, role=Role.USER, groups=list(groups)), admin)
        token = services.api_tokens.create(admin, ApiTokenCreate(name="t", username=name))
        return {"Authorization": f"Bearer {token.token}"}

    return make


async def submit(fetch: Fetch, who: dict[str, str], **body: Any) -> str:
    status, result = await api_call(fetch, "POST", "/tasks", who, {"command": ["sleep"], **body})
    assert status == 201, result
    return str(result["task_ids"][0])


async def settle(fetch: Fetch, ids: list[str], timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """The tasks once none is 'assigning' any more (the fake runner confirmed the starts)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        tasks = {i: (await api_call(fetch, "GET", f"/tasks/{i}", {}))[1] for i in ids}
        if all(t["status"] != "assigning" for t in tasks.values()):
            return tasks
        assert asyncio.get_running_loop().time() < deadline, tasks
        await asyncio.sleep(0.05)


async def test_user_and_group_quotas_keep_tasks_pending_with_the_reason(
    jp_fetch: Fetch, member: Any, host_url: str, runner_token: str
) -> None:
    runner = await FakeRunner(
        host_url, runner_token, "node-q", cores=8, gpus=4, auto_finish=False
    ).connect()
    try:
        alice = member("alice", ("vision",))
        carl = member("carl", ("vision",))
        status, _ = await api_call(
            jp_fetch, "PUT", "/quotas", {}, {"subject": "user:alice", "max_gpus": 1}
        )
        assert status == 200
        status, _ = await api_call(
            jp_fetch, "PUT", "/quotas", {}, {"subject": "group:vision", "max_tasks": 2}
        )
        assert status == 200
        assert (await api_call(jp_fetch, "PUT", "/quotas", alice, {"subject": "user:alice"}))[
            0
        ] == 403

        first = await submit(jp_fetch, alice, gpus=1)
        second = await submit(jp_fetch, alice, gpus=1)
        tasks = await settle(jp_fetch, [first, second])
        assert tasks[first]["status"] == "running"
        assert tasks[second]["status"] == "pending"
        assert tasks[second]["reason"] == "quota: user:alice uses 1 of 1 GPUs"

        third = await submit(jp_fetch, carl)  # the group's second task: fits
        fourth = await submit(jp_fetch, carl)  # the group's third: over max_tasks
        tasks = await settle(jp_fetch, [third, fourth])
        assert tasks[third]["status"] == "running"
        assert tasks[fourth]["reason"] == "quota: group:vision uses 2 of 2 tasks"

        # freeing quota lets the waiting tasks run
        await api_call(jp_fetch, "POST", f"/tasks/{first}/kill", alice)
        assert (await api_call(jp_fetch, "DELETE", "/quotas/group:vision", {}))[0] == 204
        tasks = await settle(jp_fetch, [second, fourth])
        deadline = asyncio.get_running_loop().time() + 5
        while {t["status"] for t in tasks.values()} != {"running"}:
            assert asyncio.get_running_loop().time() < deadline, [
                (t["status"], t["reason"]) for t in tasks.values()
            ]
            await asyncio.sleep(0.05)
            tasks = await settle(jp_fetch, [second, fourth])
        _, listing = await api_call(jp_fetch, "GET", "/quotas", {})
        assert listing["quotas"] == [
            {
                "subject": "user:alice",
                "max_gpus": 1,
                "max_cores": None,
                "max_tasks": None,
                "max_vps": None,
            }
        ]
        assert (await api_call(jp_fetch, "DELETE", "/quotas/user:nobody", {}))[0] == 404
    finally:
        await runner.close()


@pytest.mark.parametrize("fair", [True, False])
async def test_fair_share_interleaves_users_of_equal_priority(
    jp_fetch: Fetch, member: Any, host_url: str, runner_token: str, services: Any, fair: bool
) -> None:
    services.scheduler.fair_share = fair
    heavy, light = member("heavy"), member("light")
    # queued while no node is online: the order they run in is the scheduler's choice
    heavy_ids = [await submit(jp_fetch, heavy) for _ in range(3)]
    light_ids = [await submit(jp_fetch, light)]
    urgent = await submit(jp_fetch, heavy, priority=5)
    runner = await FakeRunner(
        host_url, runner_token, "node-f", cores=3, auto_finish=False
    ).connect()
    try:
        tasks = await settle(jp_fetch, [*heavy_ids, *light_ids, urgent])
        running = {i for i, t in tasks.items() if t["status"] == "running"}
        assert urgent in running  # priority first, always
        if fair:
            assert running == {urgent, heavy_ids[0], light_ids[0]}
        else:
            assert running == {urgent, heavy_ids[0], heavy_ids[1]}
    finally:
        await runner.close()
