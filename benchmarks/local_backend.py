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

from ._common import Outcome, Row, running_host, timed_task, wait_node_online

NAME = "local_backend"
SAMPLES = 20
WARMUP = 2
BODY = {"command": ["true"], "cores": 0}


def _median_ms(samples: list[dict[str, float]], key: str) -> float:
    return statistics.median(s[key] for s in samples) * 1000


def run(quick: bool) -> Outcome:
    with running_host(embedded=True) as host, host.client() as client:
        wait_node_online(client)
        samples = [timed_task(client, BODY, 30) for _ in range(WARMUP + SAMPLES)][WARMUP:]
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
