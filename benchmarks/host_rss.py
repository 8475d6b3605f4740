"""Host RSS with 100,000 completed task rows and 500 connected runners.

The rows (plus one ``completed`` event each) are bulk-inserted with SQLAlchemy Core into a
schema created by the host's own migrations, before the host starts. After the runners are
online, a few list calls (``/tasks?limit=100``, ``/nodes``, ``/cluster``) are made and the
host's RSS is read. Baseline: a host with an empty DB and no runners after the same calls.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from typing import Any

from sqlalchemy import insert

from kohakuriver_lab.ids import new_id
from kohakuriver_lab.server.db.engine import make_engine, upgrade_schema
from kohakuriver_lab.server.db.orm import Task, TaskEvent

from ._common import API, Fleet, Host, Outcome, Row, running_host, wait_online

NAME = "host_rss"
ROWS = 100_000
RUNNERS = 500
CHUNK = 10_000
MB = 1 << 20


def populate(db_path: str, rows: int = ROWS) -> float:
    """Create the schema and insert ``rows`` completed tasks; returns seconds taken."""
    start = time.perf_counter()
    engine = make_engine(f"sqlite:///{db_path}")
    upgrade_schema(engine)
    base = new_id()
    now = time.time() - rows
    with engine.begin() as conn:
        for lo in range(0, rows, CHUNK):
            tasks: list[dict[str, Any]] = []
            events: list[dict[str, Any]] = []
            for i in range(lo, min(rows, lo + CHUNK)):
                at = now + i
                tasks.append({
                    "task_id": base + i, "batch_id": base + i, "name": None,
                    "task_type": "command", "owner": "bench", "status": "completed",
                    "command": ["python", "-c", f"print({i})"], "env": {}, "workdir": None,
                    "priority": 0, "backend": None, "req_cores": 1, "req_memory": None,
                    "req_gpus": None, "target": None, "node": f"bench-{i % RUNNERS:03d}",
                    "assigned_cores": [i % 4], "assigned_gpus": [], "numa": 0,
                    "exit_code": 0, "reason": None, "kill_requested": False,
                    "submitted_at": at, "assigned_at": at + 0.01,
                    "started_at": at + 0.02, "finished_at": at + 0.5,
                })  # fmt: skip
                events.append({
                    "event_id": base + rows + i, "task_id": base + i, "from_status": "running",
                    "to_status": "completed", "actor": "runner", "reason": None, "at": at + 0.5,
                })  # fmt: skip
            conn.execute(insert(Task), tasks)
            conn.execute(insert(TaskEvent), events)
    engine.dispose()
    return time.perf_counter() - start


async def _calls(host: Host) -> None:
    async with host.async_client() as client:
        for path in ("/tasks?limit=100", "/tasks?status=completed&limit=500", "/nodes", "/cluster"):
            (await client.get(API + path)).raise_for_status()


async def _loaded(host: Host) -> tuple[int, float]:
    fleet = Fleet(host, RUNNERS)
    try:
        async with host.async_client() as client:
            connect_s = await fleet.connect()
            await wait_online(client, RUNNERS)
        await _calls(host)
        await asyncio.sleep(1.0)
        return host.rss(), connect_s
    finally:
        await fleet.close()


def run(quick: bool) -> Outcome:
    with running_host() as empty:
        asyncio.run(_calls(empty))
        baseline = empty.rss() / MB
    with tempfile.TemporaryDirectory(prefix="krbench-rss-") as data_dir:
        insert_s = populate(os.path.join(data_dir, "cluster.db"))
        db_mb = os.path.getsize(os.path.join(data_dir, "cluster.db")) / MB
        with running_host(data_dir=data_dir) as host:
            rss, connect_s = asyncio.run(_loaded(host))
    measured = rss / MB
    note = (
        f"{ROWS:,} task rows + {ROWS:,} events ({db_mb:.0f} MB DB, inserted in {insert_s:.1f} s), "
        f"{RUNNERS} runners online (connected in {connect_s:.1f} s), after list calls"
    )
    row = Row(NAME, "RSS", measured, "MB", 250.0, False, baseline, "empty host", note)
    return Outcome([row], {"rss_mb": measured, "baseline_mb": baseline, "db_mb": db_mb})
