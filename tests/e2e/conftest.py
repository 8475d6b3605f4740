"""Fixtures for end-to-end tests with real host and runner processes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import HostProcess, RunnerProcess, docker_client, remove_node_containers


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A world-writable work dir: confined tasks run as other users and may use it."""
    tmp_path.chmod(0o1777)
    return tmp_path


@pytest.fixture
def make_host(workdir: Path, host_db_url: str) -> Iterator[Callable[..., HostProcess]]:
    """Start hosts on the test's database; all are stopped at the end."""
    hosts: list[HostProcess] = []

    def make(**kwargs: object) -> HostProcess:
        host = HostProcess(workdir, host_db_url, **kwargs).start()  # type: ignore[arg-type]
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.stop()


@pytest.fixture
def make_runner(workdir: Path) -> Iterator[Callable[..., RunnerProcess]]:
    """Start runners; all are stopped at the end (their tasks are killed too, and the
    containers of docker runners removed)."""
    runners: list[RunnerProcess] = []

    def make(
        host: HostProcess,
        token: str,
        name: str,
        extra: list[str] | None = None,
        backend: str = "local",
    ) -> RunnerProcess:
        state = workdir / f"state-{name}"
        runner = RunnerProcess(host, token, name, state, backend, extra=extra).start()
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.stop()
    _kill_leftover_tasks(workdir)
    docker_runners = [runner for runner in runners if "docker" in runner.backend.split(",")]
    if docker_runners:
        api = docker_client()
        try:
            for runner in docker_runners:
                remove_node_containers(api, runner.name)
        finally:
            api.close()


def _kill_leftover_tasks(workdir: Path) -> None:
    """Kill supervisors of tasks a test left running (by the PIDs they recorded)."""
    import os
    import signal

    for pidfile in workdir.glob("**/child.pid"):
        try:
            os.killpg(int(pidfile.read_text().strip()), signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError):
            pass
    for pidfile in workdir.glob("**/supervisor.pid"):
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError):
            pass
