"""The real local backend through the whole stack (embedded runner + per-task supervisor).

Sequential ``["true"]`` tasks. Host-side times are the task's ``running``/``completed``
event ``at`` stamps minus the client's wall clock at the start of the submit request (same
machine, same clock); client-observed times come from polling ``GET /tasks/{id}`` every 5 ms.
Baseline: ``subprocess.run(["true"])`` in the benchmark process.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import Any

import httpx

from ._common import API, Outcome, Row, running_host

NAME = "local_backend"
SAMPLES = 20
WARMUP = 2
BODY = {"command": ["true"], "cores": 0}


def _wait_node(client: httpx.Client, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"{API}/cluster").json()["nodes_online"] < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("the embedded runner did not come online")
        time.sleep(0.1)


def _one(client: httpx.Client) -> dict[str, float]:
    wall0, t0 = time.time(), time.perf_counter()
    response = client.post(f"{API}/tasks", json=BODY)
    if response.status_code != 201:
        raise RuntimeError(f"submit: {response.status_code} {response.text}")
    task_id = response.json()["task_ids"][0]
    seen: dict[str, float] = {}
    deadline = t0 + 30
    while "completed" not in seen:
        status = client.get(f"{API}/tasks/{task_id}").json()["status"]
        now = time.perf_counter() - t0
        if status in ("running", "completed"):
            seen.setdefault("running", now)
        if status in ("completed", "failed", "lost", "killed"):
            if status != "completed":
                raise RuntimeError(f"task {task_id} ended {status}")
            seen["completed"] = now
        if time.perf_counter() > deadline:
            raise TimeoutError(f"task {task_id} did not complete in 30 s")
        time.sleep(0.005)
    events = client.get(f"{API}/tasks/{task_id}/events").json()["events"]
    at = {e["to_status"]: e["at"] for e in events}
    return {
        "host_assigning": at["assigning"] - wall0,
        "host_running": at["running"] - wall0,
        "host_completed": at["completed"] - wall0,
        "client_running": seen["running"],
        "client_completed": seen["completed"],
    }


def _median_ms(samples: list[dict[str, float]], key: str) -> float:
    return statistics.median(s[key] for s in samples) * 1000


def run(quick: bool) -> Outcome:
    with running_host(embedded=True) as host, host.client() as client:
        _wait_node(client)
        samples = [_one(client) for _ in range(WARMUP + SAMPLES)][WARMUP:]
    raw: list[float] = []
    for _ in range(WARMUP + SAMPLES):
        t0 = time.perf_counter()
        subprocess.run(["true"], check=True)
        raw.append(time.perf_counter() - t0)
    base = statistics.median(raw[WARMUP:]) * 1000
    med: dict[str, Any] = {k: _median_ms(samples, k) for k in samples[0]}
    label = 'subprocess.run(["true"])'
    rows = [
        Row(
            NAME,
            "submit->running",
            med["host_running"],
            "ms",
            150.0,
            False,
            base,
            label,
            f"median of {SAMPLES}, host event clock; client-observed "
            f"{med['client_running']:.0f} ms; submit->assigning {med['host_assigning']:.1f} ms",
        ),
        Row(
            NAME,
            "submit->completed",
            med["host_completed"],
            "ms",
            300.0,
            False,
            base,
            label,
            f"median of {SAMPLES}, host event clock; client-observed "
            f"{med['client_completed']:.0f} ms",
        ),
    ]
    return Outcome(rows, {"median_ms": med, "baseline_ms": base, "samples_s": samples})
