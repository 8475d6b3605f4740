"""Hostile request bodies (issue 10, attacks 8 and 9): no body makes a 5xx, env keys are
matched in full, workdirs are absolute and normalized, and the bodies of unauthenticated
requests are refused before they are read (a real host process, its RSS measured)."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from ..e2e.harness import TOKEN, HostProcess

# =============================================================================
# Validation: in-process host (pytest-jupyter)
# =============================================================================

HUGE = "9" * 400


@pytest.mark.parametrize(
    "fields",
    [
        {"memory": HUGE},  # float("9" * 400) is inf: int(inf) raised OverflowError, a 500
        {"memory": int(HUGE)},
        {"memory": f"{HUGE}G"},
        {"gpus": [int(HUGE)]},
        {"gpus": [1 << 62]},
        {"targets": [f"node-a:{HUGE}"]},
        {"targets": ["node-a::" + HUGE]},
        {"priority": int(HUGE)},
        {"cores": int(HUGE)},
    ],
    ids=lambda f: "-".join(f"{k}={str(v)[:12]}" for k, v in f.items()),
)
async def test_huge_integers_are_400(api: Any, fields: dict[str, Any]) -> None:
    status, body = await api.call("POST", "tasks", {"command": ["true"], **fields})
    assert status == 400, (status, body)
    assert body["message"]


async def test_non_finite_numbers_are_400(api: Any) -> None:
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}
    raw = json.dumps({"task_type": "notebook", "notebook": nb, "parameters": {"x": 0}})
    status, body = await api.call("POST", "tasks", raw.replace('"x": 0', '"x": 1e400'))
    assert status == 400, (status, body)
    assert "out of range" in body["message"]


@pytest.mark.parametrize("key", ["FOO\n", "FOO\r\n", "\nFOO", "FOO BAR", "A" * 300, "1ABC", ""])
async def test_env_keys_match_in_full(api: Any, key: str) -> None:
    status, body = await api.call("POST", "tasks", {"command": ["true"], "env": {key: "1"}})
    assert status == 400, (status, body)
    assert "environment variable name" in body["message"]


@pytest.mark.parametrize(
    "env",
    [
        {"BIG": "x" * (128 * 1024 + 1)},
        {f"V{i}": "1" for i in range(1025)},
        {f"V{i}": "x" * 100_000 for i in range(11)},
    ],
    ids=["value-over-128KiB", "over-1024-vars", "over-1MiB-in-all"],
)
async def test_env_values_and_count_are_bounded(api: Any, env: dict[str, str]) -> None:
    status, body = await api.call("POST", "tasks", {"command": ["true"], "env": env})
    assert status == 400, (status, body)


async def test_valid_env_is_kept(api: Any) -> None:
    body = await api.post("tasks", {"command": ["true"], "env": {"_A1": "x=y\n"}}, expect=201)
    task = await api.get(f"tasks/{body['task_ids'][0]}")
    assert task["env"] == {"_A1": "x=y\n"}


@pytest.mark.parametrize(
    "workdir",
    ["relative/dir", "/data/../root", "/data/..", "/a\nb", "/a\tb", "/" + "a" * 5000],
)
async def test_malformed_workdir_is_400(api: Any, workdir: str) -> None:
    status, body = await api.call("POST", "tasks", {"command": ["true"], "workdir": workdir})
    assert status == 400, (status, body)
    assert "workdir" in body["message"]


async def test_workdir_is_stored_normalized(api: Any) -> None:
    ids = (await api.post("tasks", {"command": ["true"], "workdir": "//data//x/./y/"}))["task_ids"]
    assert (await api.get(f"tasks/{ids[0]}"))["workdir"] == "/data/x/y"


async def test_environment_exec_env_is_checked(api: Any) -> None:
    status, body = await api.call(
        "POST", "environments/e1/exec", {"command": ["true"], "env": {"FOO\n": "1"}}
    )
    assert status == 400, (status, body)


async def test_job_progress_counters_are_bounded(api: Any, services: Any) -> None:
    ids = (await api.post("tasks", {"command": ["true"]}, expect=201))["task_ids"]
    status, body = await api.call(
        "POST", f"tasks/{ids[0]}/progress", {"done": int(HUGE), "total": 1}
    )
    assert status == 400, (status, body)


# =============================================================================
# Unauthenticated bodies: a real host process
# =============================================================================

BODY = 200 * 1024 * 1024
CHUNK = 256 * 1024


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Any:
    process = HostProcess(Path(tmp_path_factory.mktemp("host"))).start()
    yield process
    process.stop()


def _rss(host: HostProcess) -> int:
    assert host.process is not None
    proc = psutil.Process(host.process.pid)
    return int(proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(True)))


def _stream(
    port: int, method: str, path: str, length: int, headers: str = "", result: Any = None
) -> dict[str, Any]:
    """Send headers declaring ``length`` bytes, then the body in chunks until a response
    arrives; how much was sent by then, and the status line."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n{headers}\r\n".encode()
    )
    sent, chunk, reply = 0, b"x" * CHUNK, b""
    sock.setblocking(False)
    try:
        while sent < length:
            try:
                reply += sock.recv(65536)
            except BlockingIOError:
                pass
            if reply:
                break
            try:
                sent += sock.send(chunk[: length - sent])
            except BlockingIOError:
                time.sleep(0.001)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(30)
        while b"\r\n\r\n" not in reply:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    except (ConnectionResetError, TimeoutError):
        pass
    finally:
        sock.close()
    out = {"sent": sent, "status": reply.split(b"\r\n", 1)[0].decode(errors="replace")}
    if result is not None:
        result.append(out)
    return out


def _status(line: str) -> int:
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def test_unauthenticated_bodies_are_refused_before_they_are_read(host: HostProcess) -> None:
    """Three concurrent unauthenticated 200 MiB bodies: each answered 4xx long before it is
    sent in full, and the host's memory does not grow with them (it buffered 3 x 400 MiB)."""
    routes = [
        ("POST", "/kohakuriver/api/tasks"),
        ("PUT", "/kohakuriver/api/tasks/1234/artifacts/output.ipynb"),
        ("POST", "/kohakuriver/register"),
    ]
    before = _rss(host)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss(host))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=_stream, args=(host.port, m, p, BODY), kwargs={"result": results})
        for m, p in routes
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    done.set()
    sampler.join()
    assert len(results) == 3, results
    for result in results:
        assert 400 <= _status(result["status"]) < 500, results
        assert result["sent"] < BODY // 4, results  # answered before the body was sent
    growth = peak[0] - before
    assert growth < 100 * 1024 * 1024, f"host RSS grew by {growth / 2**20:.0f} MiB"


def test_authenticated_body_over_the_limit_is_413_on_its_headers(host: HostProcess) -> None:
    auth = f"Authorization: token {TOKEN}\r\n"
    result = _stream(host.port, "POST", "/kohakuriver/api/tasks", BODY, auth)
    assert _status(result["status"]) == 413, result
    assert result["sent"] < BODY // 4, result
    result = _stream(host.port, "PATCH", "/kohakuriver/api/settings", 2 * 1024 * 1024, auth)
    assert _status(result["status"]) == 413, result


def test_413_names_the_limit(host: HostProcess) -> None:
    import httpx

    r = httpx.patch(
        host.url + "kohakuriver/api/settings",
        headers={"Authorization": f"token {TOKEN}"},
        content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
    )
    assert r.status_code == 413, r.text
    assert "CostLimits.max_body_bytes" in r.json()["message"]
