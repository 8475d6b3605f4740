"""A node name belongs to one runner token (issue 10, attack 3): a token without a node
cannot pose as a node whose runner died, and the real runner always gets back in."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
import websockets

from kohakuriver_lab.models import RunnerTokenCreate
from kohakuriver_lab.protocol import Hello, TaskReport, TaskState, encode, runner_socket_url
from kohakuriver_lab.testing.api import wait_status
from kohakuriver_lab.testing.fake_runner import FakeRunner


def new_token(services: Any, name: str, node: str | None = None) -> tuple[int, str]:
    info = services.tokens.create(RunnerTokenCreate(name=name, node=node), created_by="test")
    return int(info.token_id), str(info.token)


async def impostor(host_url: str, token: str, hello: Hello, *then: Any) -> tuple[list[Any], Any]:
    """Say hello (and pipeline ``then`` before any answer); every frame received and the
    close code."""
    received: list[Any] = []
    async with websockets.connect(
        runner_socket_url(host_url), additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await ws.send(encode(hello))
        for message in then:
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(encode(message))
        with contextlib.suppress(websockets.ConnectionClosed, asyncio.TimeoutError):
            while True:
                received.append(json.loads(await asyncio.wait_for(ws.recv(), 2.0)))
    return received, ws.close_code


async def test_token_without_node_cannot_take_over_a_dead_nodes_name(
    api: Any, host_url: str, services: Any
) -> None:
    _, vm_token = new_token(services, "vm")  # unbound: binds to "vm" on its first hello
    attacker_id, attacker_token = new_token(services, "spare")
    real = await FakeRunner(host_url, vm_token, "vm", auto_finish=False).connect()
    body = {"command": ["sleep", "100"], "targets": ["vm"], "env": {"SECRET": "s3cret"}}
    victim = (await api.post("tasks", body, expect=201))["task_ids"][0]
    await wait_status(api, victim, {"running"})
    await real.close()  # vm's runner dies; the node is still online for a few heartbeats

    forged = TaskState(task_id=int(victim), state="completed", exit_code=0)
    frames, code = await impostor(host_url, attacker_token, real.hello, forged)
    assert code == 4003, (code, frames)
    assert [f["type"] for f in frames] == ["error"]
    assert "belongs to another runner token" in frames[0]["message"]
    assert (await api.get(f"tasks/{victim}"))["status"] in {"running", "lost"}
    audit = (await api.get("audit", action="runner.refused"))["events"]
    assert audit and audit[0]["target"] == "node:vm"
    assert audit[0]["actor"] == f"runner_token:{attacker_id}"
    tokens = {t["token_id"]: t for t in (await api.get("runner-tokens"))["tokens"]}
    assert tokens[str(attacker_id)]["node"] is None  # the refused hello bound nothing

    # the next task for vm is not sent to the impostor, who tries once more
    following = (await api.post("tasks", {"command": ["true"], "targets": ["vm"]}, expect=201))[
        "task_ids"
    ][0]
    frames, code = await impostor(host_url, attacker_token, real.hello)
    assert code == 4003 and "start_task" not in [f["type"] for f in frames]
    assert len((await api.get("audit", action="runner.refused"))["events"]) == 1  # a minute

    # the real runner comes back with its own token and is welcomed
    reports = [TaskReport(task_id=int(victim), state="running")]
    back = FakeRunner(host_url, vm_token, "vm", auto_finish=False, reports=reports)
    back.started[int(victim)] = None  # type: ignore[assignment]
    await back.connect()
    try:
        assert (await wait_status(api, victim, {"running"}))["exit_code"] is None
        await wait_status(api, following, {"running"})
        assert int(following) in back.started
    finally:
        await back.close()


async def test_reconnect_with_own_token_replaces_a_stale_session(
    api: Any, host_url: str, runner_token: str
) -> None:
    stale = FakeRunner(host_url, runner_token, "node-a", auto_finish=False, heartbeat=False)
    await stale.connect()  # its connection is left open, as a half-dead one would be
    fresh = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    try:
        await asyncio.sleep(0.1)
        assert stale._ws.close_code == 4004  # replaced by the new session
        task_id = (await api.post("tasks", {"command": ["sleep", "1"]}, expect=201))["task_ids"][0]
        await wait_status(api, task_id, {"running"})
        assert int(task_id) in fresh.started and int(task_id) not in stale.started
    finally:
        await stale.close()
        await fresh.close()


async def test_unbound_token_binds_to_its_first_name(
    api: Any, host_url: str, services: Any
) -> None:
    token_id, token = new_token(services, "fresh")
    await (await FakeRunner(host_url, token, "node-a").connect()).close()
    tokens = {t["token_id"]: t for t in (await api.get("runner-tokens"))["tokens"]}
    assert tokens[str(token_id)]["node"] == "node-a"  # persisted on the token row
    hello = Hello(node="node-b", cores=[0], memory_total=1 << 30)
    frames, code = await impostor(host_url, token, hello)
    assert code == 1008 and "this token is for node node-a" in frames[0]["message"]
    assert services.registry.get("node-b") is None
    await (await FakeRunner(host_url, token, "node-a").connect()).close()


async def test_rotation_and_revocation_hand_the_name_over(
    api: Any, host_url: str, services: Any
) -> None:
    old_id, old = new_token(services, "old")
    await (await FakeRunner(host_url, old, "gpu-01").connect()).close()
    # an admin creates a newer token for the name: it takes the name over (rotation)
    _, new = new_token(services, "new", node="gpu-01")
    await (await FakeRunner(host_url, new, "gpu-01").connect()).close()
    frames, code = await impostor(host_url, old, Hello(node="gpu-01", cores=[0], memory_total=1))
    assert code == 4003, frames  # the old token lost the name
    # a revoked owner frees the name for an unbound token
    spare_id, spare = new_token(services, "spare")
    frames, code = await impostor(host_url, spare, Hello(node="gpu-01", cores=[0], memory_total=1))
    assert code == 4003
    assert old_id != spare_id
    for info in services.tokens.list_tokens():
        if info.name == "new":
            services.tokens.revoke(info.token_id)
    await (await FakeRunner(host_url, spare, "gpu-01").connect()).close()


@pytest.fixture
def host_config() -> dict[str, Any]:
    return {"NodeRegistry": {"heartbeat_interval": 0.5}}  # vm stays online a while
