"""Real processes for end-to-end tests: ``jupyter kohakuriver`` hosts and ``kohakuriver-runner``s."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from kohakuriver_lab.client import Client
from kohakuriver_lab.testing.integration import missing

BIN = Path(sys.executable).parent
TOKEN = "e2e-secret-token"
TERMINAL = {"completed", "failed", "killed", "killed_oom", "lost", "rejected", "stopped"}


def docker_client(*images: str, timeout: int = 30) -> Any:
    """A docker ``APIClient`` on a dockerd that holds ``images``; the test misses its daemon
    otherwise (a skip, or a failure under KOHAKURIVER_REQUIRE_INTEGRATION=1)."""
    try:
        import docker

        api = docker.APIClient(version="auto", timeout=timeout, **docker.utils.kwargs_from_env())
        for image in images:
            api.inspect_image(image)
    except Exception as exc:
        missing(f"no dockerd with {', '.join(images)} ({exc}); see .ci/docker.sh and .ci/images.sh")
    return api


def remove_node_containers(api: Any, node: str) -> None:
    """Remove every container the runner of ``node`` left behind (tasks, VPS, environments)."""
    for row in api.containers(all=True, filters={"label": f"kohakuriver.node={node}"}):
        api.remove_container(row["Id"], force=True)


def terminate(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM a child and wait for it; SIGKILL when it does not exit in ``timeout`` s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KOHAKURIVER_")}


class HostProcess:
    """``jupyter kohakuriver`` on a fixed port and data dir, restartable."""

    def __init__(
        self,
        workdir: Path,
        db_url: str | None = None,
        *,
        heartbeat: float = 0.3,
        embedded: bool = False,
        extra: list[str] | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.db_url = db_url
        self.heartbeat = heartbeat
        self.embedded = embedded
        self.extra = extra or []
        # https (certfile and keyfile in extra), with a certificate this CA signed
        self.ca_file = ca_file
        self.url = f"{'https' if ca_file else 'http'}://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "host.log"

    def start(self, timeout: float = 30.0) -> HostProcess:
        argv = [
            str(BIN / "jupyter-kohakuriver"),
            "--allow-root",
            "--no-browser",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={TOKEN}",
            f"--ClusterHostApp.data_dir={self.workdir / 'host'}",
            f"--NodeRegistry.heartbeat_interval={self.heartbeat}",
            "--ClusterHostApp.sweep_interval=0.1",
            f"--ClusterHostApp.embedded_runner={self.embedded}",
            f"--ServerApp.root_dir={self.workdir}",
            *self.extra,
        ]
        if self.db_url:
            argv.append(f"--ClusterHostApp.db_url={self.db_url}")
        if self.embedded:
            argv.append("--EmbeddedRunner.node_name=embedded")
            if not any(a.startswith("--EmbeddedRunner.backend=") for a in self.extra):
                argv.append("--EmbeddedRunner.backend=local")  # not whatever this machine has
            # tests name their work dir as a task's workdir (confined tasks may use it); a
            # list trait of an extension's class is only read right from a config file
            config = self.workdir / "host_config.json"
            allowed = {"EmbeddedRunner": {"allowed_workdirs": [str(self.workdir)]}}
            config.write_text(json.dumps(allowed))
            argv.append(f"--config={config}")
        log = open(self.log_path, "ab")  # noqa: SIM115  closed with the process
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=log, env=_child_env(), stdin=subprocess.DEVNULL
        )
        auth = {"Authorization": f"token {TOKEN}"}
        verify = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"host exited: {self.log_path.read_text()[-3000:]}")
            try:
                r = httpx.get(self.url + "api/status", headers=auth, verify=verify)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("host did not start")

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
        self.process = None

    def client(self) -> Client:
        return Client(self.url, TOKEN, ca_file=str(self.ca_file) if self.ca_file else None)

    def runner_token(self, name: str = "e2e") -> str:
        with self.client() as client:
            token = client.create_runner_token(name).token
        assert token
        return token


class RunnerProcess:
    """``kohakuriver-runner`` with its own state dir (kept across restarts)."""

    def __init__(
        self,
        host: HostProcess,
        token: str,
        name: str,
        state_dir: Path,
        backend: str = "local",
        *,
        extra: list[str] | None = None,
    ) -> None:
        self.host = host
        self.token = token
        self.name = name
        self.state_dir = state_dir
        self.backend = backend  # e.g. "docker,local"
        self.extra = extra or []  # more command-line options (e.g. --RunnerApp.backend_options)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = state_dir.parent / f"runner-{name}.log"

    def start(self) -> RunnerProcess:
        env = _child_env()
        env["KOHAKURIVER_RUNNER_TOKEN"] = self.token
        argv = [
            str(BIN / "kohakuriver-runner"),
            f"--host-url={self.host.url}",
            f"--name={self.name}",
            f"--state-dir={self.state_dir}",
            f"--backend={self.backend}",
            "--RunnerApp.reconnect_max_delay=1",
            f"--RunnerApp.allowed_workdirs={self.host.workdir}",
            "--log-level=INFO",
            *self.extra,
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115  closed with the process
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=log, env=env, stdin=subprocess.DEVNULL
        )
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(20)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill(signal.SIGTERM)


def wait_for(client: Client, task_id: str, statuses: set[str], timeout: float = 20.0) -> Any:
    """Poll a task until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        task = client.get_task(task_id)
        if task.status.value in statuses:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} is {task.status.value}, wanted {statuses}")
        time.sleep(0.05)


def wait_node(client: Client, name: str, status: str, timeout: float = 20.0) -> float:
    """Poll until a node has ``status``; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        nodes = {n.name: n for n in client.list_nodes()}
        if name in nodes and nodes[name].status.value == status:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"node {name} did not become {status}")
