"""What confining a local task costs at start (issue 10: at most ~10 ms per task start).

The local backend alone (no host): median of ``LocalBackend.start()`` for ``["true"]`` — the
supervisor is spawned, builds the task's cgroups and sandbox and reports ``started`` — with
``task_user='dynamic'`` (own uid, PID/mount/IPC namespaces, private /proc, /tmp, /dev/shm,
hidden paths, cpuset) against ``task_user='runner'`` (the same without the sandbox), runs
alternating. Needs root (otherwise only the baseline exists and the row is skipped).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from kohakuriver_lab.ids import new_id
from kohakuriver_lab.protocol import TaskSpec
from kohakuriver_lab.runner.backends.local import LocalBackend

from ._common import Outcome, Row
from .docker_overhead import SkippedRow

NAME = "confinement"


async def _start_ms(backend: LocalBackend, cores: list[int]) -> float:
    spec = TaskSpec(task_id=new_id(), command=["true"], cores=cores, owner="bench")
    t0 = time.perf_counter()
    await backend.start(spec)
    elapsed = (time.perf_counter() - t0) * 1000
    while True:  # let it finish before the next start, so the runs do not overlap
        event = await backend.events.get()
        if event.task_id == spec.task_id and event.final:
            return elapsed


async def _measure(samples: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"runner": [], "dynamic": []}
    core = min(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        backends = {
            mode: LocalBackend(
                state_dir=Path(tmp) / mode, node="bench", options={"task_user": mode}
            )
            for mode in results
        }
        for i in range(samples + 3):
            for mode, backend in backends.items():
                ms = await _start_ms(backend, [core])
                if i >= 3:  # warm-up
                    results[mode].append(ms)
        for backend in backends.values():
            await backend.close()
    return results


def run(quick: bool) -> Outcome:
    if os.geteuid() != 0:
        nothing: Any = None
        row = SkippedRow(NAME, "start, confined", nothing, "ms", nothing, False, None, "-")
        row.notes = "skipped: needs a root runner (per-user identities)"
        return Outcome([row], {"skipped": "not root"})
    samples = 15 if quick else 40
    results = asyncio.run(_measure(samples))
    med = {mode: statistics.median(values) for mode, values in results.items()}
    overhead = med["dynamic"] - med["runner"]
    rows = [
        Row(
            NAME,
            "start, confined",
            med["dynamic"],
            "ms",
            med["runner"] + 10.0,
            False,
            med["runner"],
            "task_user='runner' (no sandbox)",
            f"median of {samples} alternating starts; sandbox overhead {overhead:.1f} ms "
            "(target: baseline + 10 ms)",
        )
    ]
    details: dict[str, Any] = {"median_ms": med, "samples_ms": results}
    return Outcome(rows, details)
