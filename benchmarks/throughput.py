"""Scheduling throughput: 2,000 trivial tasks across 50 fake runners (4 cores each).

Tasks (``cores: 1``) are submitted as the lab's batch submit does: 40 ``POST /tasks`` of 50
targets each (one task per node), from one keep-alive client with 4 requests in flight.
Completion is detected by counting the fake runners' finished sets, then confirmed through
the API (every task ``completed``); tasks/s uses the host's own ``finished_at`` times.

Baseline: the same client doing 2,000 plain ``GET /api/status`` back-to-back (what the HTTP
layer alone costs per request), as requests/s.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx

from ._common import API, Fleet, Host, Outcome, Row, running_host, wait_for, wait_online

NAME = "throughput"
RUNNERS = 50
TASKS = 2000
IN_FLIGHT = 4


async def _completed(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"status": "completed", "limit": 500}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(f"{API}/tasks", params=params)
        response.raise_for_status()
        page = response.json()
        tasks += page["tasks"]
        cursor = page.get("next_cursor")
        if not cursor:
            return tasks


async def _bench(host: Host) -> Outcome:
    fleet = Fleet(host, RUNNERS, cores=4)
    async with host.async_client() as client:
        try:
            connect_s = await fleet.connect()
            await wait_online(client, RUNNERS)

            t0 = time.perf_counter()
            for _ in range(TASKS):
                (await client.get("/api/status")).raise_for_status()
            baseline_rps = TASKS / (time.perf_counter() - t0)

            batches = TASKS // RUNNERS
            body = {"command": ["true"], "cores": 1, "targets": fleet.names}
            gate = asyncio.Semaphore(IN_FLIGHT)

            async def submit() -> None:
                async with gate:
                    response = await client.post(f"{API}/tasks", json=body)
                    if response.status_code != 201:
                        raise RuntimeError(f"submit: {response.status_code} {response.text}")

            cpu0 = host.cpu_seconds()
            start_wall, start = time.time(), time.perf_counter()
            await asyncio.gather(*(submit() for _ in range(batches)))
            submitted = time.perf_counter() - start
            await wait_for(lambda: fleet.finished() >= TASKS, 120, 0.01, "runners to finish")
            runners_done = time.perf_counter() - start
            host_cpu_pct = 100 * (host.cpu_seconds() - cpu0) / runners_done
            tasks = await _completed(client)
            while len(tasks) < TASKS:
                await asyncio.sleep(0.05)
                tasks = await _completed(client)
            confirmed = time.perf_counter() - start
        finally:
            await fleet.close()
    host_end = max(t["finished_at"] for t in tasks)
    host_span = host_end - start_wall
    rate = TASKS / host_span
    to_running = [t["started_at"] - t["submitted_at"] for t in tasks]
    to_done = [t["finished_at"] - t["submitted_at"] for t in tasks]
    note = (
        f"{batches} submits x {RUNNERS} targets, {IN_FLIGHT} in flight (submits took "
        f"{submitted:.2f} s); span = first submit -> last host finished_at; client saw all "
        f"runners done at {runners_done:.2f} s; host CPU {host_cpu_pct:.0f}% of a core; baseline = {TASKS} GET /api/status (req/s)"
    )
    details = {
        "tasks": TASKS,
        "runners": RUNNERS,
        "connect_s": connect_s,
        "submit_s": submitted,
        "host_span_s": host_span,
        "runners_done_s": runners_done,
        "api_confirmed_s": confirmed,
        "baseline_get_per_s": baseline_rps,
        "host_cpu_pct_during": host_cpu_pct,
        "median_submit_to_running_ms": statistics.median(to_running) * 1000,
        "median_submit_to_completed_ms": statistics.median(to_done) * 1000,
        "max_submit_to_completed_ms": max(to_done) * 1000,
    }
    row = Row(NAME, "tasks/s", rate, "/s", 500.0, True, baseline_rps, "GET req/s", note)
    return Outcome([row], details)


def run(quick: bool) -> Outcome:
    with running_host() as host:
        return asyncio.run(_bench(host))
