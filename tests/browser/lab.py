"""A real ``jupyter lab`` with the cluster host, an embedded runner and fake nodes, for the
browser tests of the panel.

Before the server starts, 10,000 task rows are bulk-inserted into its SQLite DB (as
``benchmarks/host_rss.py`` does). After it starts, 49 fake runners (4 GPUs each, varying
metrics every second) join the embedded node, so the cluster has 50 nodes.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from kohakuriver_lab.ids import new_id
from kohakuriver_lab.models import GpuMetrics, NodeMetrics
from kohakuriver_lab.protocol import Heartbeat
from kohakuriver_lab.server.db.engine import make_engine, upgrade_schema
from kohakuriver_lab.server.db.orm import Task
from kohakuriver_lab.testing.fake_runner import FakeRunner

ROWS = 10_000
FAKE_NODES = 49
STATUSES = ["completed"] * 6 + ["failed", "killed", "completed", "killed_oom"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def populate(db_path: str, rows: int = ROWS) -> float:
    """Create the schema and insert ``rows`` finished tasks on the fake nodes."""
    start = time.perf_counter()
    engine = make_engine(f"sqlite:///{db_path}")
    upgrade_schema(engine)
    base = new_id() - 10 * rows  # older than anything submitted during the test
    now = time.time() - rows
    tasks: list[dict[str, Any]] = []
    for i in range(rows):
        at = now + i
        status = STATUSES[i % len(STATUSES)]
        tasks.append({
            "task_id": base + i, "batch_id": base + i, "name": f"sweep-{i:05d}" if i % 3 else None,
            "task_type": "notebook" if i % 11 == 0 else "command",
            "owner": ("alice", "bob", "carol")[i % 3], "status": status,
            "command": ["python", "train.py", f"--seed={i}"], "env": {}, "workdir": None,
            "priority": 0, "backend": None, "req_cores": 1 + i % 4, "req_memory": None,
            "req_gpus": i % 3 or None, "target": None, "node": f"fake-{i % FAKE_NODES:02d}",
            "assigned_cores": [i % 4], "assigned_gpus": [i % 4] if i % 3 else [], "numa": 0,
            "exit_code": 0 if status == "completed" else 1, "reason": None,
            "kill_requested": False, "submitted_at": at, "assigned_at": at + 0.01,
            "started_at": at + 0.02, "finished_at": at + 5 + i % 300,
        })  # fmt: skip
    with engine.begin() as conn:
        for lo in range(0, rows, 2000):
            conn.execute(insert(Task), tasks[lo : lo + 2000])
    engine.dispose()
    return time.perf_counter() - start


class Lab:
    """``jupyter lab`` as a subprocess (stopped by PID) plus a thread running fake runners."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.token = "kr-browser-" + os.urandom(8).hex()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "lab.log"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runners: list[FakeRunner] = []
        self.extra_runners: list[FakeRunner] = []
        self.fleet_token = ""
        self.populate_s = 0.0
        self._beats: asyncio.Future[Any] | None = None

    # ----- REST -----
    def api(self, method: str, path: str, body: Any = None, *, bearer: str = "") -> Any:
        """Call the host's REST API as the server's owner (an admin), or with ``bearer`` (a
        personal API token) as that token's user."""
        data = None if body is None else json.dumps(body).encode()
        auth = f"Bearer {bearer}" if bearer else f"token {self.token}"
        req = urllib.request.Request(
            f"{self.url}/kohakuriver/api/{path}",
            data=data,
            method=method,
            headers={"Authorization": auth, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def get(self, path: str) -> Any:
        """GET a Jupyter server route (e.g. ``lab/api/workspaces/default``) as JSON."""
        req = urllib.request.Request(
            f"{self.url}/{path}", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def problems(self, limit: int = 12) -> list[str]:
        """The host log's last refusals (4xx), errors and tracebacks, for failure messages."""
        marks = (" -> 4", " -> 5", "Traceback", "[E ", "[W ")
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [line[:300] for line in lines if any(m in line for m in marks)][-limit:]

    # ----- lifecycle -----
    def start(self) -> None:
        data_dir = self.root / "host"
        data_dir.mkdir()
        self.populate_s = populate(str(data_dir / "cluster.db"))
        settings = self.root / "app-settings"
        settings.mkdir()
        (settings / "overrides.json").write_text(
            json.dumps(
                {
                    "@jupyterlab/apputils-extension:notification": {
                        "fetchNews": "false",
                        "checkForUpdates": False,
                    }
                }
            )
        )
        nbroot = self.root / "nbroot"
        nbroot.mkdir()
        env = dict(os.environ)
        env["JUPYTERLAB_SETTINGS_DIR"] = str(self.root / "user-settings")
        env["JUPYTERLAB_WORKSPACES_DIR"] = str(self.root / "workspaces")
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={nbroot}",
            "--LabApp.expose_app_in_browser=True", "--LabApp.extension_manager=readonly",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            f"--LabApp.app_settings_dir={settings}",
            "--ClusterHostApp.embedded_runner=True", f"--ClusterHostApp.data_dir={data_dir}",
            "--EmbeddedRunner.backend=local",  # the fake nodes are the docker ones
        ]  # fmt: skip
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {self.log_path.read_text()[-3000:]}")
            try:
                nodes = self.api("GET", "nodes")["nodes"]
                if any(n["status"] == "online" for n in nodes):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab not ready: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        self.embedded = next(n["name"] for n in nodes if n["status"] == "online")
        self.thread.start()
        self.call(self._connect_fakes())

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _connect_fakes(self) -> None:
        self.runners = [
            FakeRunner(
                self.url, await self._new_token(f"fake-{i:02d}"), f"fake-{i:02d}",
                cores=16, gpus=4, numa_nodes=2,
                memory=64 << 30, heartbeat=False, auto_finish=(i != 0),
            )
            for i in range(FAKE_NODES)
        ]  # fmt: skip
        gate = asyncio.Semaphore(10)

        async def one(runner: FakeRunner) -> None:
            async with gate:
                await runner.connect()

        await asyncio.gather(*(one(r) for r in self.runners))
        self._beats = asyncio.ensure_future(self._beat())

    async def _new_token(self, node: str) -> str:
        body = {"name": f"fake {node}", "node": node}
        return str((await asyncio.to_thread(self.api, "POST", "runner-tokens", body))["token"])

    async def _beat(self) -> None:
        """One heartbeat per fake node per second, with wave-shaped CPU and GPU load."""
        while True:
            now = time.time()
            for i, runner in enumerate(self.runners):
                phase = now / 20 + i
                gpus = [
                    GpuMetrics(
                        index=g, utilization=50 + 45 * math.sin(phase + g),
                        memory_used=(8 + 4 * g) << 30, memory_total=24 << 30,
                        temperature=55 + 10 * math.sin(phase + g), power_watts=200.0,
                    )
                    for g in range(4)
                ]  # fmt: skip
                metrics = NodeMetrics(
                    at=now, cpu_percent=40 + 30 * math.sin(phase), memory_used=(20 + i % 20) << 30,
                    memory_total=64 << 30, load_1m=1.0, gpus=gpus,
                )  # fmt: skip
                try:
                    await runner.send(Heartbeat(metrics=metrics))
                except Exception:
                    pass
            await asyncio.sleep(1.0)

    def add_runner(self, name: str, **options: Any) -> FakeRunner:
        """Connect one more fake node (e.g. ``backends=("docker",)``); it heartbeats itself."""

        async def connect() -> FakeRunner:
            runner = FakeRunner(self.url, await self._new_token(name), name, **options)
            await runner.connect()
            return runner

        runner: FakeRunner = self.call(connect())
        self.extra_runners.append(runner)
        return runner

    def stop(self) -> None:
        if self.thread.is_alive():

            async def close() -> None:
                if self._beats:
                    self._beats.cancel()
                runners = self.runners + self.extra_runners
                await asyncio.gather(*(r.close() for r in runners), return_exceptions=True)

            try:
                self.call(close(), timeout=10)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(5)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None):
            self._log.close()
