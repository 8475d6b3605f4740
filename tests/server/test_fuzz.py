"""Hostile input on every operation of the OpenAPI document: no input gives a 5xx, the host
keeps answering.

Generated requests per operation (schema-valid and schema-violating, every status, content
type and response schema checked) are schemathesis's job: ``tests/e2e/test_api_contract.py``.
This module keeps what schemathesis does not send: hostile bodies (not JSON, over the size
limits, nested too deep, NUL bytes, lone surrogates, huge numbers, NaN) on every JSON
operation, bad values inside otherwise valid bodies, edge URLs and edge parameter values
(digits ``str.isdigit`` takes but ``int`` does not, numbers past 64 bits), and the WebSockets
opened with parameters at their limits. Every module test ends by checking that the host
still answers and can show every task it accepted.

The host runs on the test's event loop; the client runs in a worker thread and talks to it
over a real socket, so the loop (and the fake runner's heartbeats) keep going meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import websockets

from kohakuriver_lab.server.handlers.base import MAX_BODY_BYTES, MAX_SUBMIT_BYTES
from kohakuriver_lab.server.openapi import openapi_document
from kohakuriver_lab.testing.fake_runner import FakeRunner

BOTH_DBS = pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
DOC = openapi_document("/")
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]
NOTEBOOK = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}

# =============================================================================
# The operations of the document
# =============================================================================


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    query_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    json_body: dict[str, Any] | None = None
    """The body's schema, for operations that take JSON."""
    raw_body: bool = False
    """The operation takes bytes (artifacts, image uploads)."""

    @property
    def id(self) -> str:
        return f"{self.method} {self.path.removeprefix('/kohakuriver/api')}"


def operations() -> list[Operation]:
    """Every operation that takes path or query parameters or a body."""
    ops = []
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            params = op.get("parameters", [])
            content = op.get("requestBody", {}).get("content", {})
            json_schema = content.get("application/json", {}).get("schema")
            operation = Operation(
                method=method.upper(),
                path=path,
                path_params={p["name"]: p["schema"] for p in params if p["in"] == "path"},
                query_params={p["name"]: p["schema"] for p in params if p["in"] == "query"},
                json_body=json_schema,
                raw_body=bool(content) and json_schema is None,
            )
            if params or content:
                ops.append(operation)
    return ops


OPERATIONS = operations()
JSON_OPERATIONS = [op for op in OPERATIONS if op.json_body is not None]


def _ref(schema: dict[str, Any]) -> dict[str, Any]:
    return SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]  # type: ignore[no-any-return]


# =============================================================================
# The host under fuzz
# =============================================================================


@dataclass
class Target:
    """A started host with a node, a few tasks and a runner token to aim at."""

    client: httpx.Client
    known: dict[str, list[str]]

    def send(
        self, method: str, path: str, *, params: Any = None, content: bytes | None = None
    ) -> httpx.Response:
        return self.client.request(method, path, params=params, content=content)


async def _seed(host_url: str, headers: dict[str, str]) -> dict[str, list[str]]:
    """A running task, a notebook job and their IDs, for the fuzzer to aim at."""
    async with httpx.AsyncClient(base_url=host_url, headers=headers) as seed:
        submit = await seed.post(
            "kohakuriver/api/tasks", json={"command": ["echo", "hi"], "name": "fuzz"}
        )
        notebook = await seed.post(
            "kohakuriver/api/tasks", json={"task_type": "notebook", "notebook": NOTEBOOK}
        )
        spare = await seed.post("kohakuriver/api/runner-tokens", json={"name": "spare"})
    assert submit.status_code == 201 and notebook.status_code == 201, (submit, notebook)
    assert spare.status_code == 201, spare
    return {
        "task_id": [*notebook.json()["task_ids"], *submit.json()["task_ids"]],
        "batch_id": [str(submit.json()["batch_id"])],
        "token_id": [str(spare.json()["token_id"])],  # not the fake node's: it stays online
        "name": ["node-a", "input.ipynb", "output.ipynb", "env-a"],
        "tag": ["v1", "latest"],
        "version": ["1"],
        "action": ["stop"],
    }


@pytest.fixture
def target(
    host_url: str, jp_serverapp: Any, runner_token: str, jp_asyncio_loop: Any
) -> Iterator[Target]:
    """The host with a fake node (tasks stay running), a task, a notebook job, a token."""
    run = jp_asyncio_loop.run_until_complete
    headers = {"Authorization": f"token {jp_serverapp.identity_provider.token}"}
    runner = FakeRunner(
        host_url, runner_token, "node-a", cores=4, gpus=2, numa_nodes=2, auto_finish=False
    )
    # A fresh connection per request: a handler that refuses before reading the body (the
    # image upload) makes tornado close the connection, and a reused one would be reset.
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    client = httpx.Client(base_url=host_url, headers=headers, timeout=30, limits=no_reuse)
    try:
        run(runner.connect())
        yield Target(client, run(_seed(host_url, headers)))
    finally:
        client.close()
        run(runner.close())


def check(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"{what} -> {response.status_code}: {response.text[:800]}"


async def in_thread(work: Callable[[], None]) -> None:
    """Run blocking client code while the host keeps serving on this loop."""
    await asyncio.get_running_loop().run_in_executor(None, work)


def still_answers(target: Target) -> None:
    """The host answers, and can show every task it accepted (odd names, parameters...)."""
    for path in ("me", "cluster", "nodes", "runner-tokens", "environments"):
        response = target.send("GET", "kohakuriver/api/" + path)
        assert response.status_code == 200, (path, response.status_code, response.text[:500])
    page = target.send("GET", "kohakuriver/api/tasks", params={"limit": "500"})
    assert page.status_code == 200, (page.status_code, page.text[:500])
    for task in page.json()["tasks"]:
        for suffix in ("", "/events", "/results", "/logs"):
            response = target.send("GET", f"kohakuriver/api/tasks/{task['task_id']}{suffix}")
            assert response.status_code < 500, (suffix, task, response.text[:500])
        batch = target.send("GET", f"kohakuriver/api/batches/{task['batch_id']}/results")
        assert batch.status_code < 500, (task, batch.text[:500])


# =============================================================================
# Tests
# =============================================================================


def _nested(depth: int) -> bytes:
    return b'{"name": ' + b"[" * depth + b"]" * depth + b"}"


HOSTILE: dict[str, Callable[[Operation], bytes]] = {
    "not-json": lambda op: b"{not json",
    "binary": lambda op: bytes(range(256)) * 4,
    "invalid-utf8-in-string": lambda op: b'{"name": "\xff\xfe"}',
    "top-level-array": lambda op: b"[1, 2, 3]",
    "top-level-string": lambda op: b'"hello"',
    "null": lambda op: b"null",
    "over-the-limit": lambda op: (
        b'{"name": "'
        + b"x" * ((MAX_SUBMIT_BYTES if op.path.endswith("/tasks") else MAX_BODY_BYTES) + 1)
        + b'"}'
    ),
    "deep-array": lambda op: b"[" * 100_000 + b"]" * 100_000,
    "deep-object": lambda op: b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "deep-inside-object": lambda op: _nested(990),
    "deep-moderate": lambda op: _nested(200),
    "nul-bytes": lambda op: json.dumps(
        {k: "a\x00b" for k in _keys(op)} | {"command": ["a\x00"]}
    ).encode(),
    "nul-keys": lambda op: b'{"\\u0000": 1, "name": "\\u0000"}',
    "lone-surrogates": lambda op: json.dumps(
        {k: "\ud800x\udfff" for k in _keys(op)} | {"command": ["\ud800"]}
    ).encode(),
    "surrogate-everywhere": lambda op: _everywhere(op, "\udc80"),
    "unicode": lambda op: _everywhere(op, "ü日本\U0001f600\u202e\ufeff"),
    "wrong-types": lambda op: json.dumps({k: [{"x": None}] for k in _keys(op)}).encode(),
    "huge-numbers": lambda op: json.dumps({k: 10**40 for k in _keys(op)}).encode(),
    "huge-number-literal": lambda op: b'{"name": 1' + b"0" * 5000 + b"}",
    "nan-infinity": lambda op: b'{"name": NaN, "value": Infinity, "timeout": -Infinity}',
    "duplicate-keys": lambda op: b'{"name": "a", "name": 1, "name": null}',
}


def _keys(op: Operation) -> list[str]:
    assert op.json_body is not None
    schema = _ref(op.json_body) if "$ref" in op.json_body else op.json_body
    return sorted(schema.get("properties", {})) or ["name"]


def _everywhere(op: Operation, text: str) -> bytes:
    """Every string-ish field of a plausible body set to ``text``."""
    body = {k: text for k in _keys(op)}
    body.update(command=[text, text], targets=[text], env={"A": text}, mounts=[text])
    body = {k: v for k, v in body.items() if k in _keys(op) or k == "name"}
    return json.dumps(body).encode()


def _url(target: Target, op: Operation) -> str:
    """The operation's URL on the seeded objects (the notebook job's ID first)."""
    url = op.path.lstrip("/").replace("{action}", "stop")
    for name in op.path_params:
        url = url.replace("{" + name + "}", target.known.get(name, ["1"])[0])
    return url


@BOTH_DBS
async def test_hostile_bodies_are_refused_not_crashed(target: Target) -> None:
    def run() -> None:
        for case, make in HOSTILE.items():
            for op in JSON_OPERATIONS:
                url = _url(target, op)
                response = target.send(op.method, url, content=make(op))
                check(response, f"{case}: {op.method} /{url}")
        still_answers(target)

    await in_thread(run)


# Bodies that pass validation, each field then replaced by a bad value: what is stored must be
# storable (PostgreSQL: no NUL in text, no NaN in JSON) and shown again (UTF-8: no surrogates).
VALID_BODIES: dict[str, list[dict[str, Any]]] = {
    "TaskSubmit": [
        {"command": ["true"]},
        {"task_type": "notebook", "notebook": NOTEBOOK, "parameters": {"a": 1}},
        {"task_type": "notebook", "notebook": NOTEBOOK, "parameter_sets": [{"a": 1}]},
    ],
    "JobProgress": [{"done": 0, "total": 1}],
    "JobResult": [{"name": "loss", "value": 1}],
    "RunnerTokenCreate": [{"name": "t"}],
    "EnvironmentCreate": [{"name": "e", "image": "alpine"}],
    "EnvironmentExec": [{"command": ["true"]}],
}
BAD_VALUES: dict[str, str] = {
    "nul": json.dumps("a\x00b"),
    "lone-surrogate": json.dumps("a\ud800b"),
    "encoded-surrogate": '"a\udced\udca0\udc80b"',  # raw CESU-8 bytes, via surrogateescape
    "nan": "NaN",
    "infinity": "-Infinity",
    "huge-int": str(2**64),
    "nested-nul": json.dumps({"k\x00": ["\x00"]}),
    "nested-surrogate": json.dumps([{"\udfff": "x"}]),
}


def _with_value(base: dict[str, Any], key: str, raw: str) -> bytes:
    """``base`` with ``key`` set to the raw JSON text ``raw`` (NaN is not json.dumps-able)."""
    marker = "__VALUE__"
    text = json.dumps({**base, key: marker}).replace(json.dumps(marker), raw)
    return text.encode("utf-8", "surrogateescape")


@BOTH_DBS
async def test_bad_values_in_valid_bodies(target: Target) -> None:
    def run() -> None:
        for case, bad in BAD_VALUES.items():
            for op in JSON_OPERATIONS:
                assert op.json_body is not None
                name = op.json_body.get("$ref", "").rsplit("/", 1)[-1]
                url = _url(target, op)
                for base in VALID_BODIES.get(name, [{}]):
                    for key in sorted({*_keys(op), *base}):
                        values = [bad, f"[{bad}]"]
                        if isinstance(base.get(key), dict):  # inside parameters, env, ...
                            values.append('{"x": ' + bad + "}")
                        for value in values:
                            body = _with_value(base, key, value)
                            response = target.send(op.method, url, content=body)
                            check(response, f"{case}: {op.method} /{url} {body[:300]!r}")
        still_answers(target)

    await in_thread(run)


EDGE_URLS = [
    "tasks?limit=" + "9" * 400,
    "tasks?cursor=" + "9" * 30,
    "tasks?batch=" + "9" * 30,
    "tasks?cursor=%C2%B2",  # '²' is a digit to str.isdigit(), not to int()
    "tasks?batch=%D9%A3",  # Arabic-Indic three
    "tasks?status=%00",
    "tasks?node=%00&owner=%00",
    "tasks?node=%ff",  # not UTF-8
    "tasks/99999999999999999999",
    "tasks/99999999999999999999/logs?offset=99999999999999999999",
    "tasks/1/logs?offset=" + "9" * 30,
    "tasks/1/logs?stream=%00",
    "batches/99999999999999999999/results",
    "runner-tokens/99999999999999999999",
    "environments/a/versions/99999999999999999999/image",
    "nodes/" + "a" * 63,
    "tasks/{task}/logs?offset=" + str(2**62),
    "tasks/{task}/logs/follow?offset=%C2%B2",
    "tasks/{task}/logs/follow?offset=" + "9" * 30,
    "tasks/{task}/artifacts/" + "a" * 100,
    "events?tasks=%C2%B2",
    "events?batch=%D9%A3",
    "events?tasks=" + "9" * 30,
    "environments/a/versions/" + str(2**31),  # an INTEGER column on PostgreSQL
    "environments/a/versions/" + str(2**31) + "/image",
]


@BOTH_DBS
async def test_edge_urls_are_refused_not_crashed(target: Target) -> None:
    def run() -> None:
        for path in EDGE_URLS:
            path = path.replace("{task}", target.known["task_id"][0])
            for method in ("GET", "DELETE", "POST"):
                body = b"{}" if method == "POST" else None
                response = target.send(method, "kohakuriver/api/" + path, content=body)
                check(response, f"{method} {path}")
        still_answers(target)

    await in_thread(run)


def test_every_operation_is_fuzzed() -> None:
    """The document lists the routes; a route missing from it would escape the fuzzer."""
    from kohakuriver_lab.server.routes import ROUTES

    documented = {re.sub(r"\{[^}]+\}", "X", op.path) for op in OPERATIONS}
    documented |= {
        re.sub(r"\{[^}]+\}", "X", path) for path, item in DOC["paths"].items() for _ in item
    }
    for route, _handler in ROUTES:
        words = re.search(r"\(([a-z]+(?:\|[a-z]+)+)\)", route)  # one path per action
        for pattern in (
            [route.replace(words.group(0), w) for w in words.group(1).split("|")]
            if words
            else [route]
        ):
            template = "/kohakuriver/api" + re.sub(r"\([^)]*\)", "X", pattern)
            assert template in documented, f"{pattern} is not in the OpenAPI document"


# Every query and path parameter of every operation gets each of these, the others left at
# the seeded objects: what str.isdigit() accepts but int() does not, numbers past 64 bits...
EDGE_VALUES = ["\u00b2", "\u0663", "9" * 30, str(2**63), "-1", "", " 1", "1e3", "\x00", "%"]


@BOTH_DBS
async def test_edge_values_in_every_parameter(target: Target) -> None:
    def run() -> None:
        for op in OPERATIONS:
            body = b"{}" if op.json_body is not None or op.raw_body else None
            for name in [*op.query_params, *op.path_params]:
                for value in EDGE_VALUES:
                    params = {}
                    url = op.path.lstrip("/")
                    if name in op.query_params:
                        params[name] = value
                    else:
                        url = url.replace("{" + name + "}", quote(value, safe=""))
                    url = _url(target, replace(op, path="/" + url))
                    response = target.send(op.method, url, params=params, content=body)
                    check(response, f"{op.method} /{url} params={params!r}")
        still_answers(target)

    await in_thread(run)


@BOTH_DBS
@pytest.mark.parametrize(
    "path",
    [
        "tasks/{task}/logs/follow?offset=" + str(2**63 - 1),
        "tasks/{task}/logs/follow?stream=stderr&offset=0",
        "events?tasks=" + str(2**63 - 1),
        "events?tasks={task},{task}&topics=tasks",
        "events?batch=" + str(2**63 - 1) + "&topics=tasks,nodes",
    ],
)
async def test_sockets_with_edge_parameters_open(target: Target, path: str) -> None:
    """Parameters at their limits open the WebSocket; the host keeps answering after."""
    url = str(target.client.base_url).replace("http", "ws", 1) + "kohakuriver/api/"
    url += path.replace("{task}", target.known["task_id"][0])
    auth = {"Authorization": target.client.headers["Authorization"]}
    async with websockets.connect(url, additional_headers=auth, open_timeout=10) as ws:
        if path.startswith("events"):
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "subscribed"
        else:  # nothing past that offset, the task still runs: no frame, no error
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)
    await in_thread(lambda: still_answers(target))
