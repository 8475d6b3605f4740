"""Admins can remove a node (issue 10, attack 4: a hostile node could never be removed):
only offline and idle, audited, and its runner tokens are revoked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kohakuriver_lab.testing.api import api_call
from kohakuriver_lab.testing.fake_runner import FakeRunner


async def wait_node(api: Any, name: str, status: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (await api.get(f"nodes/{name}"))["status"] != status:
        assert asyncio.get_running_loop().time() < deadline, f"{name} is not {status}"
        await asyncio.sleep(0.05)


async def test_admin_removes_an_offline_idle_node(
    api: Any, host_url: str, runner_token: str, make_runner_token: Any
) -> None:
    runner = await FakeRunner(host_url, runner_token, "huge", cores=4096).connect()
    status, body = await api.call("DELETE", "nodes/huge")
    assert status == 409 and "online" in body["message"]
    await runner.close()
    await wait_node(api, "huge", "offline")
    waiting = {"command": ["x"], "targets": ["huge"]}
    task_id = (await api.post("tasks", waiting, expect=201))["task_ids"][0]
    status, body = await api.call("DELETE", "nodes/huge")
    assert status == 409 and "1 pending task(s) target node huge" in body["message"]
    await api.post(f"tasks/{task_id}/kill", expect=202)

    status, _ = await api.call("DELETE", "nodes/huge")
    assert status == 204
    assert (await api.call("GET", "nodes/huge"))[0] == 404
    assert (await api.get("cluster"))["nodes_total"] == 0
    event = (await api.get("audit", action="node.removed"))["events"][0]
    assert event["target"] == "node:huge" and len(event["detail"]["revoked_runner_tokens"]) == 1
    with pytest.raises(Exception, match="403"):  # its token is revoked
        await FakeRunner(host_url, runner_token, "huge").connect()
    # the name is free: a new token may add a node of that name again
    await (await FakeRunner(host_url, make_runner_token(), "huge", cores=2).connect()).close()
    assert len((await api.get("nodes/huge"))["cores"]) == 2
    assert (await api.call("DELETE", "nodes/nope"))[0] == 404


async def test_only_admins_remove_nodes(
    api: Any, host_url: str, runner_token: str, jp_fetch: Any
) -> None:
    await (await FakeRunner(host_url, runner_token, "node-a").connect()).close()
    await wait_node(api, "node-a", "offline")
    for role in ("viewer", "user", "operator"):
        name = f"who-{role}"
        await api.post("users", {"username": name, "role": role}, expect=201)
        token = (await api.post("tokens", {"name": "t", "username": name}, expect=201))["token"]
        headers = {"Authorization": f"token {token}"}
        status, _ = await api_call(jp_fetch, "DELETE", "/nodes/node-a", headers)
        assert status == 403, role
    assert (await api.get("nodes/node-a"))["name"] == "node-a"
