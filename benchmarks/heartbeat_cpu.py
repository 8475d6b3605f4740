"""Host CPU with 500 fake runners heartbeating at the default interval (5 s).

Host process CPU time delta (psutil, user + system) over a window after all runners are
online, as % of one core. Baseline: the same host idle (no runners) over an equal window,
measured first.
"""

from __future__ import annotations

import asyncio
import time

import psutil

from ._common import Fleet, Host, Outcome, Row, running_host, wait_online

NAME = "heartbeat_cpu"
RUNNERS = 500
SETTLE_S = 3.0


async def _window(host: Host, seconds: float) -> tuple[float, float]:
    """(host CPU %, this process's CPU %) of one core over ``seconds``."""
    me = psutil.Process()
    c0, m0, t0 = host.cpu_seconds(), me.cpu_times(), time.perf_counter()
    await asyncio.sleep(seconds)
    c1, m1, t1 = host.cpu_seconds(), me.cpu_times(), time.perf_counter()
    mine = (m1.user + m1.system) - (m0.user + m0.system)
    return 100 * (c1 - c0) / (t1 - t0), 100 * mine / (t1 - t0)


async def _bench(host: Host, window: float) -> Outcome:
    await asyncio.sleep(SETTLE_S)
    idle, _ = await _window(host, window)
    fleet = Fleet(host, RUNNERS)
    try:
        async with host.async_client() as client:
            connect_s = await fleet.connect()
            await wait_online(client, RUNNERS)
        await asyncio.sleep(SETTLE_S)
        sent0 = fleet.heartbeats_sent
        busy, client_cpu = await _window(host, window)
        beats = fleet.heartbeats_sent - sent0
        async with host.async_client() as client:
            await wait_online(client, RUNNERS, timeout=5)  # still all online
    finally:
        await fleet.close()
    note = (
        f"{RUNNERS} runners (connected in {connect_s:.1f} s), {window:.0f} s windows, "
        f"{beats / window:.0f} heartbeats/s; {(busy - idle) / RUNNERS * 100:.2f}% per 100 "
        f"runners above idle; client process {client_cpu:.1f}%"
    )
    row = Row(NAME, "host CPU", busy, "% core", 10.0, False, idle, "idle host", note)
    details = {
        "window_s": window,
        "connect_s": connect_s,
        "host_cpu_pct": busy,
        "idle_cpu_pct": idle,
        "heartbeats_per_s": beats / window,
        "client_cpu_pct": client_cpu,
    }
    return Outcome([row], details)


def run(quick: bool) -> Outcome:
    with running_host() as host:
        return asyncio.run(_bench(host, 15.0 if quick else 30.0))
