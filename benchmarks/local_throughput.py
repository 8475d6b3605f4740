"""Real-execution throughput of the embedded cluster (runner + supervisors + cgroups + logs).

``N`` ``["true"]`` tasks submitted back to back, one ``POST /tasks`` each, then waiting until
every one is ``completed``: tasks/s = N / (first submit → last host ``finished_at``). Once with
``cores: 1`` (each task waits for one of the node's cores, pinned) and once with ``cores: 0``
(no reservation: as many at once as the runner starts). Baseline: N sequential
``subprocess.run(["true"])`` in the benchmark process (what fork+exec alone allows).
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import httpx

from ._common import API, FINAL_STATUSES, Outcome, Row, running_host, wait_node_online

NAME = "local_throughput"


def _burst(client: httpx.Client, count: int, cores: int, timeout: float) -> dict[str, Any]:
    wall0 = time.time()
    ids = []
    for _ in range(count):
        response = client.post(f"{API}/tasks", json={"command": ["true"], "cores": cores})
        if response.status_code != 201:
            raise RuntimeError(f"submit: {response.status_code} {response.text}")
        ids.extend(response.json()["task_ids"])
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    finished: dict[str, dict[str, Any]] = {}
    while len(finished) < len(wanted):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(wanted) - len(finished)} task(s) not done in {timeout:.0f} s")
        page = client.get(f"{API}/tasks", params={"limit": 500}).json()
        for info in page["tasks"]:
            if info["task_id"] in wanted and info["status"] in FINAL_STATUSES:
                finished[info["task_id"]] = info
        time.sleep(0.05)
    bad = [t for t in finished.values() if t["status"] != "completed"]
    if bad:
        raise RuntimeError(f"{len(bad)} task(s) did not complete: {bad[0].get('reason')}")
    last = max(float(t["finished_at"]) for t in finished.values())
    return {"seconds": last - wall0, "tasks_per_s": count / (last - wall0)}


def run(quick: bool) -> Outcome:
    count = 50 if quick else 150
    results: dict[str, Any] = {}
    with running_host(embedded=True) as host, host.client(timeout=60) as client:
        wait_node_online(client)
        _burst(client, 5, 1, 60)  # warm-up
        for cores in (1, 0):
            results[f"cores={cores}"] = _burst(client, count, cores, 120 + count)
    t0 = time.perf_counter()
    for _ in range(count):
        subprocess.run(["true"], check=True)
    base = count / (time.perf_counter() - t0)
    label = 'sequential subprocess.run(["true"])'
    rows = [
        Row(
            NAME,
            f"tasks/s cores={cores}",
            results[f"cores={cores}"]["tasks_per_s"],
            "tasks/s",
            10.0,
            True,
            base,
            label,
            f"{count} tasks, first submit -> last finished_at "
            f"{results[f'cores={cores}']['seconds']:.1f} s",
        )
        for cores in (1, 0)
    ]
    return Outcome(rows, {"results": results, "baseline_tasks_per_s": base, "count": count})
