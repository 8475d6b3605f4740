"""REST submit latency: one keep-alive client, back-to-back submits, tasks queue (no runner).

Baseline: the same client doing authenticated ``GET /api/status`` (jupyter_server's own
handler) on the same server, back-to-back, right after the submits.

Each submit kicks a dispatch pass that runs on the event loop *after* the response is
written, so back-to-back submits also pay for the previous submit's pass; that is the
latency a client submitting in a loop sees, and what is measured.
"""

from __future__ import annotations

import time

from ._common import API, Outcome, Row, running_host, summary_ms

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
    ]
    details = {"submit_ms": sub, "status_ms": base, "first100_ms": first, "last100_ms": last}
    return Outcome(rows, details)
