"""Shared helpers: a host subprocess, a fleet of fake runners, result rows and statistics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from kohakuriver_lab.models import NodeMetrics
from kohakuriver_lab.protocol import Heartbeat
from kohakuriver_lab.testing.fake_runner import FakeRunner

API = "/kohakuriver/api"

# =============================================================================
# Results
# =============================================================================


@dataclass
class Row:
    """One line of the result table: a measured value against a target and a baseline."""

    benchmark: str
    metric: str
    measured: float
    unit: str
    target: float
    higher_is_better: bool
    baseline: float | None
    baseline_label: str
    notes: str = ""

    @property
    def passed(self) -> bool:
        if self.higher_is_better:
            return self.measured >= self.target
        return self.measured <= self.target

    @property
    def ratio(self) -> float | None:
        """measured / baseline (how many times the baseline the measured value is)."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.measured / self.baseline

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "metric": self.metric,
            "measured": self.measured,
            "unit": self.unit,
            "target": self.target,
            "target_op": ">=" if self.higher_is_better else "<=",
            "baseline": self.baseline,
            "baseline_label": self.baseline_label,
            "ratio": self.ratio,
            "passed": self.passed,
            "notes": self.notes,
        }


@dataclass
class Outcome:
    """What one benchmark module returns: table rows plus free-form details for the JSON."""

    rows: list[Row]
    details: dict[str, Any] = field(default_factory=dict)


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (nearest-rank on sorted data, linear interpolation)."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * pct / 100.0
    lo, hi = int(k), min(int(k) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean/max of durations given in seconds, in milliseconds."""
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "mean": statistics.fmean(ms) if ms else float("nan"),
        "max": max(ms) if ms else float("nan"),
    }


# =============================================================================
# Host subprocess
# =============================================================================


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _host_command() -> list[str]:
    script = Path(sys.executable).parent / "jupyter-kohakuriver"
    if script.exists():
        return [sys.executable, str(script)]
    found = shutil.which("jupyter-kohakuriver")
    if found:
        return [found]
    return [sys.executable, "-c", "from kohakuriver_lab.server.app import main; main()"]


_LIVE_HOSTS: set[Host] = set()


def _start_profiler(pid: int, port: int) -> subprocess.Popen[bytes] | None:
    """With ``KRBENCH_PYSPY=DIR`` (and py-spy on PATH or in KRBENCH_PYSPY_BIN), record the
    host's stacks to ``DIR/host-PORT.txt`` (collapsed format; summarise with
    ``python -m benchmarks._profile FILE``)."""
    out = os.environ.get("KRBENCH_PYSPY")
    spy = os.environ.get("KRBENCH_PYSPY_BIN") or shutil.which("py-spy")
    if not out or not spy:
        return None
    os.makedirs(out, exist_ok=True)
    argv = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
    argv += ["-o", os.path.join(out, f"host-{port}.txt")]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Host:
    """``jupyter kohakuriver`` as a subprocess in its own session, stopped by PID."""

    def __init__(
        self, data_dir: str | None = None, *, embedded: bool = False, extra: Sequence[str] = ()
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="krbench-")
        self.embedded = embedded
        self.extra = list(extra)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"token {self.token}"}
        self.process: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None
        self._log: Any = None
        self._profiler: subprocess.Popen[bytes] | None = None

    @property
    def db_path(self) -> str:
        return os.path.join(self.data_dir, "cluster.db")

    def start(self, timeout: float = 60.0) -> Host:
        argv = [
            *_host_command(),
            "--port",
            str(self.port),
            "--ip",
            "127.0.0.1",
            f"--IdentityProvider.token={self.token}",
            f"--ClusterHostApp.data_dir={self.data_dir}",
            f"--ServerApp.root_dir={self.data_dir}",  # job outputs land here, not in the cwd
            "--allow-root",
            "--ServerApp.port_retries=0",
            *(["--ClusterHostApp.embedded_runner=True"] if self.embedded else []),
            *self.extra,
        ]
        self._log = open(os.path.join(self.data_dir, "host.log"), "wb")  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if not k.startswith("KOHAKURIVER_")}
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        _LIVE_HOSTS.add(self)
        self.ps = psutil.Process(self.process.pid)
        self._profiler = _start_profiler(self.process.pid, self.port)
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"host exited early; see {self.data_dir}/host.log")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{API}/cluster").status_code == 200:
                        return self
                if time.monotonic() > deadline:
                    raise TimeoutError(f"host did not answer in {timeout:.0f} s")
                time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; leftover descendants are killed by PID."""
        process, self.process = self.process, None
        profiler, self._profiler = self._profiler, None
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                profiler.wait(15)
            except subprocess.TimeoutExpired:
                profiler.kill()
        if process is not None:
            descendants: list[psutil.Process] = []
            with contextlib.suppress(psutil.Error):
                descendants = psutil.Process(process.pid).children(recursive=True)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
            for child in descendants:
                with contextlib.suppress(psutil.Error):
                    if child.is_running():
                        child.kill()
        if self._log is not None:
            self._log.close()
            self._log = None
        _LIVE_HOSTS.discard(self)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Host:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------------------
    # Measurements
    # -------------------------------------------------------------------------

    def cpu_seconds(self) -> float:
        """User + system CPU time of the host process so far."""
        assert self.ps is not None
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        """Resident set size of the host process, in bytes."""
        assert self.ps is not None
        return int(self.ps.memory_info().rss)

    # -------------------------------------------------------------------------
    # REST
    # -------------------------------------------------------------------------

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)

    def async_client(self, timeout: float = 60.0) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        return httpx.AsyncClient(
            base_url=self.url, headers=self.headers, timeout=timeout, limits=limits
        )

    def runner_token(self, name: str = "bench") -> str:
        with self.client() as client:
            response = client.post(f"{API}/runner-tokens", json={"name": name})
            response.raise_for_status()
            return str(response.json()["token"])


def stop_all_hosts() -> None:
    """Stop every host still running (used on errors and signals)."""
    for host in list(_LIVE_HOSTS):
        host.stop()


@contextlib.contextmanager
def running_host(**kwargs: Any) -> Iterator[Host]:
    host = Host(**kwargs)
    try:
        host.start()
        yield host
    finally:
        host.stop()


# =============================================================================
# Fake runner fleet
# =============================================================================


class Fleet:
    """Many :class:`FakeRunner` instances plus one cheap, staggered heartbeat loop for all.

    The runners are built with ``heartbeat=False``; :meth:`_pace` sends each runner one
    heartbeat per interval, spread evenly over the interval in 100 ms ticks, so 500 runners
    cost one asyncio task instead of 500 timers firing in bursts.
    """

    def __init__(self, host: Host, count: int, *, cores: int = 4, prefix: str = "bench") -> None:
        self.host = host
        self.count = count
        self.cores = cores
        self.prefix = prefix
        self.runners: list[FakeRunner] = []
        self._pacer: asyncio.Task[None] | None = None
        self.heartbeats_sent = 0

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.runners]

    async def connect(self, concurrency: int = 25, auto_finish: bool = True) -> float:
        """Connect every runner (``concurrency`` handshakes at a time); returns seconds taken."""
        width = len(str(self.count))
        names = [f"{self.prefix}-{i:0{width}d}" for i in range(self.count)]
        # one token per node: a runner token binds to the first node name it says hello as
        tokens = await asyncio.to_thread(lambda: [self.host.runner_token(n) for n in names])
        self.runners = [
            FakeRunner(
                self.host.url,
                tokens[i],
                names[i],
                cores=self.cores,
                heartbeat=False,
                auto_finish=auto_finish,
            )
            for i in range(self.count)
        ]
        gate = asyncio.Semaphore(concurrency)

        async def one(runner: FakeRunner) -> None:
            async with gate:
                await runner.connect()

        start = time.perf_counter()
        self._pacer = asyncio.ensure_future(self._pace())
        await asyncio.gather(*(one(r) for r in self.runners))
        return time.perf_counter() - start

    async def _pace(self, tick: float = 0.1) -> None:
        await wait_for(lambda: self.runners[0].welcome is not None, 60, what="first welcome")
        welcome = self.runners[0].welcome
        interval = welcome.heartbeat_interval if welcome else 5.0
        per_tick = max(1.0, len(self.runners) * tick / interval)
        owed = 0.0
        index = 0
        next_at = time.monotonic()
        while True:
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            owed += per_tick
            while owed >= 1.0:
                owed -= 1.0
                runner = self.runners[index % len(self.runners)]
                index += 1
                if not runner.connected.is_set():
                    continue
                metrics = NodeMetrics(
                    at=time.time(),
                    cpu_percent=12.5,
                    memory_used=1 << 30,
                    memory_total=runner.hello.memory_total,
                    load_1m=0.5,
                )
                with contextlib.suppress(Exception):
                    await runner.send(Heartbeat(metrics=metrics))
                    self.heartbeats_sent += 1

    def finished(self) -> int:
        return sum(len(r.finished) for r in self.runners)

    async def close(self) -> None:
        if self._pacer is not None:
            self._pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pacer
            self._pacer = None
        await asyncio.gather(*(r.close() for r in self.runners), return_exceptions=True)


async def wait_for(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "condition"
) -> None:
    """Poll ``predicate`` until true; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


async def online_nodes(client: httpx.AsyncClient) -> int:
    response = await client.get(f"{API}/cluster")
    response.raise_for_status()
    return int(response.json()["nodes_online"])


async def wait_online(client: httpx.AsyncClient, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while await online_nodes(client) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} nodes online after {timeout:.0f} s")
        await asyncio.sleep(0.1)


# =============================================================================
# One timed task (sync client)
# =============================================================================

FINAL_STATUSES = ("completed", "failed", "killed", "killed_oom", "lost", "rejected", "stopped")


def wait_node_online(client: httpx.Client, timeout: float = 60.0) -> None:
    """Block until the host has at least one online node."""
    deadline = time.monotonic() + timeout
    while client.get(f"{API}/cluster").json()["nodes_online"] < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("no runner came online")
        time.sleep(0.1)


def timed_task(
    client: httpx.Client, body: dict[str, Any], timeout: float = 60.0
) -> dict[str, float]:
    """Submit ``body`` and poll (every 5 ms) until it completes.

    Returns seconds since the submit request started: ``host_<status>`` from the task's event
    times (host clock) and ``client_running`` / ``client_completed`` as the poller saw them.
    A task that ends otherwise than ``completed`` raises.
    """
    wall0, t0 = time.time(), time.perf_counter()
    response = client.post(f"{API}/tasks", json=body)
    if response.status_code != 201:
        raise RuntimeError(f"submit: {response.status_code} {response.text}")
    task_id = response.json()["task_ids"][0]
    seen: dict[str, float] = {}
    while True:
        info = client.get(f"{API}/tasks/{task_id}").json()
        now = time.perf_counter() - t0
        if info["status"] in ("running", "completed"):
            seen.setdefault("client_running", now)
        if info["status"] in FINAL_STATUSES:
            if info["status"] != "completed":
                raise RuntimeError(f"task {task_id} ended {info['status']}: {info.get('reason')}")
            seen["client_completed"] = now
            break
        if now > timeout:
            raise TimeoutError(f"task {task_id} did not complete in {timeout:.0f} s")
        time.sleep(0.005)
    events = client.get(f"{API}/tasks/{task_id}/events").json()["events"]
    return {**{f"host_{e['to_status']}": e["at"] - wall0 for e in events}, **seen}
