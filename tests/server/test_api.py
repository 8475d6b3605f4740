"""REST API against a real Jupyter server with the host extension and fake runners."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kohakuriver_lab.testing.api import wait_status
from kohakuriver_lab.testing.fake_runner import FakeRunner

FINAL = {"completed", "failed", "killed", "killed_oom", "lost", "rejected", "stopped"}

pytestmark = pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)


# =============================================================================
# Submit validation
# =============================================================================


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"command": []}, "command"),
        ({"command": "echo hi"}, "command"),
        ({"command": ["true"], "memory": "lots"}, "cannot read memory size"),
        ({"command": ["true"], "memory": 1}, "at least 4194304 bytes (4 MiB"),
        ({"command": ["true"], "memory": "1K"}, "at least 4194304 bytes (4 MiB"),
        ({"command": ["true"], "cores": -1}, "cores"),
        ({"command": ["true"], "targets": ["bad name!"]}, "invalid node name"),
        ({"command": ["true"], "targets": ["node::x"]}, "GPU indices"),
        ({"command": ["true"], "env": {"1BAD": "x"}}, "invalid environment variable name"),
        ({"command": ["true"], "workdir": "relative/path"}, "absolute"),
        ({"command": ["true"], "surprise": 1}, "surprise"),
    ],
)
async def test_invalid_submit_is_400_with_message(
    api: Any, body: dict[str, Any], message: str
) -> None:
    status, data = await api.call("POST", "tasks", body)
    assert status == 400
    assert message in data["message"], data
    page = await api.get("tasks")
    assert page["tasks"] == []  # nothing was stored


async def test_body_that_is_not_json_is_400(api: Any) -> None:
    status, data = await api.call("POST", "tasks", "{not json")
    assert status == 400 and "not valid JSON" in data["message"]


async def test_impossible_requests_are_refused(api: Any, host_url: str, runner_token: str) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", cores=4, gpus=2).connect()
    try:
        status, data = await api.call("POST", "tasks", {"command": ["true"], "cores": 64})
        assert status == 400 and "needs 64 cores" in data["message"]
        status, data = await api.call("POST", "tasks", {"command": ["true"], "gpus": [5]})
        assert status == 400 and "has no GPU 5" in data["message"]
        status, data = await api.call("POST", "tasks", {"command": ["true"], "targets": ["ghost"]})
        assert status == 409 and "unknown node 'ghost'" in data["message"]  # the cluster's state
        status, data = await api.call(
            "POST", "tasks", {"command": ["true"], "targets": ["node-a:3"]}
        )
        assert status == 400 and "no NUMA node 3" in data["message"]
        status, data = await api.call("POST", "tasks", {"command": ["true"], "image": "alpine"})
        assert status == 400 and "has no 'docker' backend" in data["message"]
        status, data = await api.call(
            "POST", "tasks", {"command": ["true"], "image": "alpine", "backend": "local"}
        )
        assert (
            status == 400 and "an image or environment needs the docker backend" in data["message"]
        )
        status, data = await api.call("POST", "tasks", {"command": ["true"], "image": "a b --rm"})
        assert status == 400 and "invalid image reference" in data["message"]
    finally:
        await runner.close()


# =============================================================================
# Submit, run, observe
# =============================================================================


async def test_submit_batch_runs_and_records_events(
    api: Any, host_url: str, runner_token: str, make_runner_token: Any
) -> None:
    a = await FakeRunner(host_url, runner_token, "node-a", output=b"out\n").connect()
    b = await FakeRunner(host_url, make_runner_token(), "node-b").connect()
    try:
        result = await api.post(
            "tasks",
            {
                "command": ["echo", "out"],
                "targets": ["node-a", "node-b:0"],
                "memory": "1G",
                "name": "two",
            },
            expect=201,
        )
        ids = result["task_ids"]
        assert len(ids) == 2 and all(isinstance(i, str) for i in ids)
        assert result["batch_id"] == ids[0]
        tasks = [await wait_status(api, i, {"completed"}) for i in ids]
        assert [t["node"] for t in tasks] == ["node-a", "node-b"]
        assert tasks[0]["req_memory"] == 1 << 30 and tasks[0]["exit_code"] == 0
        assert tasks[1]["numa"] == 0
        spec = a.started[int(ids[0])].task
        assert spec.command == ["echo", "out"] and spec.cores == tasks[0]["assigned_cores"]
        assert spec.memory == 1 << 30
        events = (await api.get(f"tasks/{ids[0]}/events"))["events"]
        assert [(e["from_status"], e["to_status"]) for e in events] == [
            (None, "pending"),
            ("pending", "assigning"),
            ("assigning", "running"),
            ("running", "completed"),
        ]
        assert events[1]["actor"] == "scheduler" and events[2]["actor"] == "runner:node-a"
        logs = await api.get(f"tasks/{ids[0]}/logs", stream="stdout", offset=1)
        assert logs == {
            "task_id": ids[0],
            "stream": "stdout",
            "offset": 1,
            "next_offset": 4,
            "data": "ut\n",
            "eof": True,
        }
        batch = await api.get("tasks", batch=ids[0])
        assert {t["task_id"] for t in batch["tasks"]} == set(ids)
        # the runner was told to forget the finished tasks
        await asyncio.sleep(0.05)
        assert int(ids[0]) in a.forgotten and int(ids[1]) in b.forgotten
    finally:
        await a.close()
        await b.close()


async def test_failed_exit_code(api: Any, host_url: str, runner_token: str) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", exit_code=3).connect()
    try:
        result = await api.post("tasks", {"command": ["false"]}, expect=201)
        task = await wait_status(api, result["task_ids"][0], FINAL)
        assert (
            task["status"] == "failed"
            and task["exit_code"] == 3
            and task["reason"] == "exit code 3"
        )
    finally:
        await runner.close()


async def test_list_filters_and_cursor_pagination(api: Any) -> None:
    ids = []
    for i in range(7):
        ids.append(
            (await api.post("tasks", {"command": ["true"], "name": f"t{i}"}, expect=201))[
                "task_ids"
            ][0]
        )
    page = await api.get("tasks", limit=3)
    assert [t["task_id"] for t in page["tasks"]] == ids[::-1][:3]
    seen = [t["task_id"] for t in page["tasks"]]
    while page["next_cursor"]:
        page = await api.get("tasks", limit=3, cursor=page["next_cursor"])
        seen += [t["task_id"] for t in page["tasks"]]
    assert seen == ids[::-1]
    pending = await api.get("tasks", status="pending,running")
    assert len(pending["tasks"]) == 7
    assert (await api.get("tasks", status="completed"))["tasks"] == []
    status, data = await api.call("GET", "tasks", status="bogus")
    assert status == 400 and "unknown status" in data["message"]
    status, data = await api.call("GET", "tasks", limit="0")
    assert status == 400


async def test_unknown_task_is_404(api: Any) -> None:
    status, data = await api.call("GET", "tasks/12345")
    assert status == 404 and data["message"] == "task 12345 not found"
    status, _ = await api.call("POST", "tasks/12345/kill")
    assert status == 404


# =============================================================================
# Queue
# =============================================================================


async def test_task_waits_with_reason_then_starts_when_resources_free(
    api: Any, host_url: str, runner_token: str
) -> None:
    runner = await FakeRunner(
        host_url, runner_token, "node-a", cores=2, auto_finish=False
    ).connect()
    try:
        first = (await api.post("tasks", {"command": ["sleep", "9"], "cores": 2}, expect=201))[
            "task_ids"
        ][0]
        await wait_status(api, first, {"running"})
        second = (await api.post("tasks", {"command": ["true"], "cores": 1}, expect=201))[
            "task_ids"
        ][0]
        await asyncio.sleep(0.2)
        waiting = await api.get(f"tasks/{second}")
        assert waiting["status"] == "pending"
        assert waiting["reason"] == "waiting for resources: node-a: needs 1 cores, 0 free of 2"
        await runner.finish(int(first))
        started = await wait_status(api, second, {"running"}, timeout=2)
        assert started["assigned_cores"] == [0]
    finally:
        await runner.close()


async def test_priority_then_fifo(api: Any, host_url: str, runner_token: str) -> None:
    ids = {}
    for name, priority in [("low", 0), ("high", 5), ("low2", 0), ("high2", 5)]:
        body = {"command": ["true"], "cores": 1, "priority": priority, "name": name}
        ids[name] = (await api.post("tasks", body, expect=201))["task_ids"][0]
    runner = await FakeRunner(
        host_url, runner_token, "node-a", cores=1, auto_finish=False
    ).connect()
    try:
        order = []
        for _ in range(4):
            await asyncio.sleep(0.1)
            running = [i for i in runner.started if i not in runner.finished]
            assert len(running) == 1
            order.append(running[0])
            await runner.finish(running[0])
        names = {int(v): k for k, v in ids.items()}
        assert [names[i] for i in order] == ["high", "high2", "low", "low2"]
    finally:
        await runner.close()


async def test_concurrent_submits_never_double_book(
    api: Any, host_url: str, runner_token: str
) -> None:
    runner = await FakeRunner(
        host_url, runner_token, "node-a", cores=8, gpus=4, auto_finish=False
    ).connect()
    try:
        bodies = [{"command": ["true"], "cores": 1, "gpus": 1} for _ in range(12)]
        results = await asyncio.gather(*(api.post("tasks", b, expect=201) for b in bodies))
        await asyncio.sleep(0.3)
        tasks = [await api.get(f"tasks/{r['task_ids'][0]}") for r in results]
        placed = [t for t in tasks if t["status"] in ("assigning", "running")]
        assert len(placed) == 4
        gpus = [g for t in placed for g in t["assigned_gpus"]]
        cores = [c for t in placed for c in t["assigned_cores"]]
        assert sorted(gpus) == [0, 1, 2, 3] and len(set(cores)) == 4
        node = await api.get("nodes/node-a")
        assert sorted(node["usage"]["gpus_used"]) == ["0", "1", "2", "3"]
        summary = await api.get("cluster")
        assert summary["gpus_used"] == 4 and summary["queued"] == 8 and summary["nodes_online"] == 1
    finally:
        await runner.close()


# =============================================================================
# Control
# =============================================================================


async def test_kill_pending_and_running(api: Any, host_url: str, runner_token: str) -> None:
    queued = (await api.post("tasks", {"command": ["true"]}, expect=201))["task_ids"][0]
    killed = await api.post(f"tasks/{queued}/kill", expect=202)
    assert killed["status"] == "killed"
    status, data = await api.call("POST", f"tasks/{queued}/kill")
    assert status == 409 and "already ended" in data["message"]
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    try:
        running = (await api.post("tasks", {"command": ["sleep", "100"]}, expect=201))["task_ids"][
            0
        ]
        await wait_status(api, running, {"running"})
        info = await api.post(f"tasks/{running}/kill", expect=202)
        assert info["kill_requested"] is True
        task = await wait_status(api, running, FINAL)
        assert task["status"] == "killed"
    finally:
        await runner.close()


async def test_pause_and_resume(api: Any, host_url: str, runner_token: str) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    try:
        task_id = (await api.post("tasks", {"command": ["sleep", "100"]}, expect=201))["task_ids"][
            0
        ]
        status, _data = await api.call("POST", f"tasks/{task_id}/resume")
        assert status == 409
        await wait_status(api, task_id, {"running"})
        await api.post(f"tasks/{task_id}/pause", expect=202)
        await wait_status(api, task_id, {"paused"})
        node = await api.get("nodes/node-a")
        assert node["usage"]["cores_used"] == [0]  # paused tasks keep their cores
        await api.post(f"tasks/{task_id}/resume", expect=202)
        await wait_status(api, task_id, {"running"})
    finally:
        await runner.close()


# =============================================================================
# Logs live
# =============================================================================


async def test_follow_logs_websocket(
    api: Any, host_url: str, runner_token: str, jp_ws_fetch: Callable[..., Awaitable[Any]]
) -> None:
    runner = await FakeRunner(host_url, runner_token, "node-a", auto_finish=False).connect()
    try:
        task_id = (await api.post("tasks", {"command": ["x"]}, expect=201))["task_ids"][0]
        await wait_status(api, task_id, {"running"})
        ws = await jp_ws_fetch("kohakuriver", "api", "tasks", task_id, "logs", "follow")
        # "é" split over two chunks must arrive whole
        import base64

        from kohakuriver_lab.models import LogStream
        from kohakuriver_lab.protocol import LogData

        first, second = "héllo\n".encode()[:2], "héllo\n".encode()[2:]
        await runner.send(
            LogData(
                task_id=int(task_id),
                stream=LogStream.STDOUT,
                offset=0,
                data=base64.b64encode(first).decode(),
            )
        )
        await runner.send(
            LogData(
                task_id=int(task_id),
                stream=LogStream.STDOUT,
                offset=2,
                data=base64.b64encode(second).decode(),
            )
        )
        text = ""
        while text != "héllo\n":
            frame = json.loads(await ws.read_message())
            assert frame["type"] == "log" and frame["stream"] == "stdout"
            text += frame["data"]
        await runner.finish(int(task_id))
        end = json.loads(await ws.read_message())
        assert end == {"type": "end", "status": "completed", "exit_code": 0}
        ws.close()
    finally:
        await runner.close()


# =============================================================================
# Nodes and tokens
# =============================================================================


async def test_nodes_report_resources_and_history(
    api: Any, host_url: str, runner_token: str
) -> None:
    runner = await FakeRunner(
        host_url, runner_token, "gpu-01", cores=8, gpus=2, numa_nodes=2
    ).connect()
    try:
        await asyncio.sleep(0.5)  # a couple of 0.2 s heartbeats
        nodes = (await api.get("nodes"))["nodes"]
        assert [n["name"] for n in nodes] == ["gpu-01"]
        assert nodes[0]["status"] == "online" and nodes[0]["history"] is None
        node = await api.get("nodes/gpu-01")
        assert len(node["numa"]) == 2 and node["numa"][1]["cores"] == [4, 5, 6, 7]
        assert [g["index"] for g in node["gpus"]] == [0, 1]
        assert len(node["history"]) >= 2 and node["metrics"]["cpu_percent"] == 12.5
        status, _ = await api.call("GET", "nodes/nope")
        assert status == 404
    finally:
        await runner.close()


async def test_runner_tokens_create_list_revoke_disconnects(api: Any, host_url: str) -> None:
    created = await api.post("runner-tokens", {"name": "gpu nodes"}, expect=201)
    assert created["token"].startswith("krr_")
    runner = await FakeRunner(host_url, created["token"], "node-a").connect()
    listed = (await api.get("runner-tokens"))["tokens"]
    assert [t["name"] for t in listed] == ["gpu nodes"] and listed[0]["token"] is None
    assert listed[0]["last_used_at"] is not None
    status, _ = await api.call("DELETE", f"runner-tokens/{created['token_id']}")
    assert status == 204
    await asyncio.sleep(0.1)
    assert runner._ws.close_code == 4001  # disconnected
    with pytest.raises(Exception, match="403"):
        await FakeRunner(host_url, created["token"], "node-a").connect()
    assert (await api.get("runner-tokens"))["tokens"][0]["revoked"] is True
    await runner.close()


async def test_token_bound_to_node(api: Any, host_url: str) -> None:
    created = await api.post("runner-tokens", {"name": "a only", "node": "node-a"}, expect=201)
    with pytest.raises(Exception):  # noqa: B017  the host closes the socket instead of welcoming
        await FakeRunner(host_url, created["token"], "node-b").connect()
    await (await FakeRunner(host_url, created["token"], "node-a").connect()).close()


async def test_openapi_document_covers_every_route(api: Any) -> None:
    from kohakuriver_lab.server.routes import ROUTES

    doc = await api.get("openapi.json")
    assert doc["openapi"].startswith("3.")
    paths = set(doc["paths"])
    import re

    words = re.compile(r"\(([a-z]+(?:\|[a-z]+)+)\)")  # one documented path per action
    expanded = []
    for route, handler in ROUTES:
        found = words.search(route)
        names = found.group(1).split("|") if found else [None]
        expanded += [(route.replace(found.group(0), n) if found else route, handler) for n in names]
    for pattern, handler in expanded:
        # turn the regex into the templated OpenAPI path
        templ = re.sub(r"\(\\d\{1,20\}\)", "{id}", pattern)
        templ = re.sub(r"\([^)]*\)", "{x}", templ)
        documented = {
            re.sub(r"\{[^}]+\}", "{x}", p.removeprefix("/kohakuriver/api")) for p in paths
        }
        assert re.sub(r"\{[^}]+\}", "{x}", templ) in documented, pattern
        methods = {m for m in ("get", "post", "delete", "put", "patch") if m in vars(handler)}
        doc_path = next(
            p
            for p in paths
            if re.sub(r"\{[^}]+\}", "{x}", p.removeprefix("/kohakuriver/api"))
            == re.sub(r"\{[^}]+\}", "{x}", templ)
        )
        assert methods <= set(doc["paths"][doc_path]), (pattern, methods)


async def test_responses_match_openapi_schemas(api: Any, host_url: str, runner_token: str) -> None:
    import jsonschema

    doc = await api.get("openapi.json")
    schemas = doc["components"]["schemas"]

    def check(name: str, value: Any) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}}
        jsonschema.validate(value, schema)

    runner = await FakeRunner(host_url, runner_token, "node-a", output=b"x").connect()
    try:
        result = await api.post("tasks", {"command": ["true"], "memory": "1G"}, expect=201)
        check("SubmitResult", result)
        task = await wait_status(api, result["task_ids"][0], FINAL)
        check("TaskInfo", task)
        check("TaskPage", await api.get("tasks"))
        check("LogChunk", await api.get(f"tasks/{task['task_id']}/logs"))
        check("NodeInfo", await api.get("nodes/node-a"))
        check("ClusterSummary", await api.get("cluster"))
        for event in (await api.get(f"tasks/{task['task_id']}/events"))["events"]:
            check("TaskEventInfo", event)
        _status, error = await api.call("GET", "tasks/1")
        check("Error", error)
    finally:
        await runner.close()


async def test_new_small_task_backfills_past_a_waiting_one(
    api: Any, host_url: str, runner_token: str
) -> None:
    runner = await FakeRunner(
        host_url, runner_token, "node-a", cores=1, auto_finish=False
    ).connect()
    try:
        busy = (await api.post("tasks", {"command": ["x"], "cores": 1}, expect=201))["task_ids"][0]
        await wait_status(api, busy, {"running"})
        waiting = (await api.post("tasks", {"command": ["x"], "cores": 1}, expect=201))["task_ids"][
            0
        ]
        light = (await api.post("tasks", {"command": ["x"], "cores": 0}, expect=201))["task_ids"][0]
        assert (await wait_status(api, light, {"running"}))["assigned_cores"] == []
        assert (await api.get(f"tasks/{waiting}"))["status"] == "pending"
        await runner.finish(int(busy))
        await wait_status(api, waiting, {"running"})
    finally:
        await runner.close()


async def test_image_tasks_go_to_docker_nodes(
    api: Any, host_url: str, runner_token: str, make_runner_token: Any
) -> None:
    plain = await FakeRunner(host_url, runner_token, "plain").connect()
    docker = await FakeRunner(
        host_url, make_runner_token(), "dock", backends=("docker", "local")
    ).connect()
    try:
        body = {"command": ["python", "-V"], "image": "kohakuriver/py:3.11"}
        task_id = (await api.post("tasks", body, expect=201))["task_ids"][0]
        task = await wait_status(api, task_id, {"completed"})
        assert task["node"] == "dock" and task["image"] == "kohakuriver/py:3.11"
        spec = docker.started[int(task_id)].task
        assert (spec.backend, spec.image) == ("docker", "kohakuriver/py:3.11")
        local = await api.post("tasks", {"command": ["true"], "targets": ["plain"]}, expect=201)
        await wait_status(api, local["task_ids"][0], {"completed"})
        assert plain.started[int(local["task_ids"][0])].task.backend == "local"
    finally:
        await plain.close()
        await docker.close()


async def test_token_callers_are_recorded_as_the_host_owner(api: Any) -> None:
    import getpass

    first = (await api.post("tasks", {"command": ["a"]}, expect=201))["task_ids"][0]
    second = (await api.post("tasks", {"command": ["b"]}, expect=201))["task_ids"][0]
    owners = {(await api.get(f"tasks/{t}"))["owner"] for t in (first, second)}
    assert owners == {getpass.getuser()}  # not a fresh "Anonymous" identity per request
    mine = await api.get("tasks", owner=getpass.getuser())
    assert {t["task_id"] for t in mine["tasks"]} == {first, second}
    events = (await api.get(f"tasks/{first}/events"))["events"]
    assert events[0]["actor"] == getpass.getuser()
    me = await api.get("me")
    assert me == {
        "username": getpass.getuser(),
        "role": "admin",  # the host's owner
        "groups": [],
        "scopes": None,
        "via": "jupyter",
    }


async def test_type_filter_and_total(api: Any) -> None:
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}
    for _ in range(3):
        await api.post("tasks", {"command": ["true"]}, expect=201)
    await api.post("tasks", {"task_type": "notebook", "notebook": notebook}, expect=201)
    page = await api.get("tasks", type="notebook", count="true")
    assert page["total"] == 1 and [t["task_type"] for t in page["tasks"]] == ["notebook"]
    page = await api.get("tasks", type="command", limit=2, count="true")
    assert page["total"] == 3 and len(page["tasks"]) == 2 and page["next_cursor"]
    assert (await api.get("tasks"))["total"] is None  # only when asked
    status, data = await api.call("GET", "tasks", type="vm")
    assert status == 400 and "unknown task type" in data["message"]


async def test_image_tasks_prefer_nodes_that_have_the_image(
    api: Any, host_url: str, runner_token: str, make_runner_token: Any
) -> None:
    big = await FakeRunner(host_url, runner_token, "big", cores=16, backends=("docker",)).connect()
    small = await FakeRunner(
        host_url, make_runner_token(), "small", cores=2, backends=("docker",), images=("lab/torch",)
    ).connect()
    try:
        assert (await api.get("nodes/small"))["images"] == ["lab/torch:latest"]
        body = {"command": ["python", "-V"], "image": "lab/torch:latest"}
        task_id = (await api.post("tasks", body, expect=201))["task_ids"][0]
        assert (await wait_status(api, task_id, {"completed"}))["node"] == "small"
    finally:
        await big.close()
        await small.close()
