"""REST submit latency: one keep-alive client, back-to-back submits that queue.

Two scenarios: no runner at all, and a busy cluster (one node online whose only core is
held, so each submit's dispatch pass really considers the new task and it waits).

Baseline: the same client doing authenticated ``GET /api/status`` (jupyter_server's own
handler) on the same server, back-to-back, right after the submits.

Each submit kicks a dispatch pass that runs on the event loop *after* the response is
written, so back-to-back submits also pay for the previous submit's pass; that is the
latency a client submitting in a loop sees, and what is measured.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from kohakuriver_lab.testing.fake_runner import FakeRunner

from ._common import API, Host, Outcome, Row, running_host, summary_ms

NAME = "submit_latency"
BODY = {"command": ["true"], "cores": 0}
WARMUP = 50
SAMPLES = 500


def _timed(call: object, count: int) -> list[float]:
    assert callable(call)
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


@contextmanager
def busy_node(host: Host) -> Iterator[None]:
    """One online node with one core, held by a running task, on a background loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = FakeRunner(host.url, host.runner_token("busy"), "busy", cores=1, auto_finish=False)
    asyncio.run_coroutine_threadsafe(runner.connect(), loop).result(30)
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(runner.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _busy_submits(host: Host) -> list[float]:
    with busy_node(host), host.client() as client:
        hold = client.post(f"{API}/tasks", json={"command": ["sleep"], "cores": 1})
        hold.raise_for_status()
        time.sleep(0.3)  # the holder is placed; from now on every submit waits

        def submit() -> None:
            response = client.post(f"{API}/tasks", json={"command": ["true"], "cores": 1})
            if response.status_code != 201:
                raise RuntimeError(f"submit failed: {response.status_code} {response.text}")

        return _timed(submit, WARMUP + SAMPLES)[WARMUP:]


def run(quick: bool) -> Outcome:
    with running_host() as host, host.client() as client:

        def submit() -> None:
            response = client.post(f"{API}/tasks", json=BODY)
            if response.status_code != 201:
                raise RuntimeError(f"submit failed: {response.status_code} {response.text}")

        def status() -> None:
            client.get("/api/status").raise_for_status()

        _timed(status, WARMUP)
        submit_s = _timed(submit, WARMUP + SAMPLES)[WARMUP:]
        time.sleep(0.2)  # let the last dispatch pass finish
        status_s = _timed(status, SAMPLES)
    with running_host() as host:
        busy = summary_ms(_busy_submits(host))
    sub, base = summary_ms(submit_s), summary_ms(status_s)
    first, last = summary_ms(submit_s[:100]), summary_ms(submit_s[-100:])
    label = "GET /api/status"
    note = (
        f"{SAMPLES} back-to-back submits after {WARMUP} warm-up (queue {WARMUP}->"
        f"{WARMUP + SAMPLES}); p50 first 100 {first['p50']:.1f} ms, last 100 {last['p50']:.1f} ms"
    )
    rows = [
        Row(NAME, "p50", sub["p50"], "ms", 5.0, False, base["p50"], label, note),
        Row(NAME, "p99", sub["p99"], "ms", 25.0, False, base["p99"], label),
        Row(
            NAME,
            "p50 busy node",
            busy["p50"],
            "ms",
            5.0,
            False,
            base["p50"],
            label,
            f"{SAMPLES} submits that wait behind a held core on an online node",
        ),
        Row(NAME, "p99 busy node", busy["p99"], "ms", 25.0, False, base["p99"], label),
    ]
    details = {
        "submit_ms": sub,
        "status_ms": base,
        "first100_ms": first,
        "last100_ms": last,
        "busy_ms": busy,
    }
    return Outcome(rows, details)
