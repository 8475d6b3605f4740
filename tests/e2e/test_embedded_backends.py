"""The embedded runner offers Docker when a daemon answers, local processes otherwise, and an
explicit ``EmbeddedRunner.backend`` wins (real hosts, a real dockerd)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import docker
import pytest
from harness import HostProcess, docker_client, wait_for, wait_node

from kohakuriver_lab.errors import KohakuRiverError
from kohakuriver_lab.runner.backends.docker.engine import TASK_ID_LABEL

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

IMAGE = "kohakuriver-test/busybox:latest"
AUTO = "--EmbeddedRunner.backend="  # empty: detect


def backends_of(host: HostProcess) -> list[str]:
    with host.client() as client:
        wait_node(client, "embedded", "online")
        return list(client.get_node("embedded").backends)


def test_docker_is_offered_when_dockerd_answers(make_host: Callable[..., HostProcess]) -> None:
    api = docker_client(IMAGE)
    host = make_host(embedded=True, extra=[AUTO])
    task_id = None
    try:
        assert backends_of(host) == ["docker", "local"]
        assert "embedded runner backends docker,local: Docker" in host.log_path.read_text()
        with host.client() as client:
            task_id = client.submit(["echo", "in a container"], image=IMAGE).task_ids[0]
            task = wait_for(client, task_id, {"completed", "failed", "killed"}, timeout=60)
            assert (task.status, task.backend) == ("completed", "docker"), task.reason
            assert client.logs(task_id).data == "in a container\n"
    finally:
        if task_id is not None:  # the runner removes its container itself; never leave one
            host.stop()
            for row in api.containers(all=True, filters={"label": f"{TASK_ID_LABEL}={task_id}"}):
                with contextlib.suppress(docker.errors.APIError):  # already being removed
                    api.remove_container(row["Id"], force=True)


def test_an_explicit_backend_wins(make_host: Callable[..., HostProcess]) -> None:
    docker_client()
    host = make_host(embedded=True, extra=["--EmbeddedRunner.backend=local"])
    assert backends_of(host) == ["local"]


def test_without_docker_it_is_local_only(
    make_host: Callable[..., HostProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    host = make_host(embedded=True, extra=[AUTO])
    assert backends_of(host) == ["local"]
    log = host.log_path.read_text()
    assert "embedded runner backends local: no Docker daemon answers" in log, log[-2000:]
    with host.client() as client, pytest.raises(KohakuRiverError, match="docker"):
        client.submit(["echo", "x"], image=IMAGE)
