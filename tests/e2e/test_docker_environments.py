"""Container environments end to end: a host and two docker runners (real dockerd).

Node A builds the environment (create → exec → commit); the host stores the tarball; node B
runs tasks in it after fetching the tarball from the host over HTTP (the local copy of the
image is removed first, so B really downloads it), once for three concurrent tasks.
Corruption of the stored tarball is caught by the checksum.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import HostProcess, RunnerProcess, docker_client, wait_for, wait_node

from kohakuriver_lab.client import Client
from kohakuriver_lab.errors import InvalidRequest, RunnerRequestFailed

pytestmark = [pytest.mark.integration]

BUSYBOX = "kohakuriver-test/busybox:latest"
TERMINAL = {"completed", "failed", "killed", "killed_oom", "lost"}


@pytest.fixture
def docker_api() -> Iterator[Any]:
    api = docker_client(BUSYBOX, timeout=60)
    yield api
    api.close()


@pytest.fixture
def two_nodes(
    make_host: Callable[..., HostProcess],
    make_runner: Callable[..., RunnerProcess],
    docker_api: Any,
) -> tuple[HostProcess, RunnerProcess, RunnerProcess]:
    host = make_host(heartbeat=0.5)
    first, second = (
        make_runner(host, host.runner_token(name), name, backend="docker")
        for name in (f"env{os.getpid()}a", f"env{os.getpid()}b")
    )
    return host, first, second


def _remove_images(api: Any, repository: str) -> None:
    for row in api.images(name=repository):
        for tag in row.get("RepoTags") or []:
            api.remove_image(tag, force=True)


def _stdout(client: Client, task_id: int) -> str:
    return client.logs(task_id).data


def test_environment_create_commit_fetch_on_another_node(
    two_nodes: tuple[HostProcess, RunnerProcess, RunnerProcess], docker_api: Any, workdir: Path
) -> None:
    host, node_a, node_b = two_nodes
    env = f"e2e-{os.getpid()}"
    repository = f"kohakuriver/{env}"
    with host.client() as client:
        wait_node(client, node_a.name, "online")
        wait_node(client, node_b.name, "online")
        try:
            info = client.create_environment(env, BUSYBOX, node=node_a.name)
            assert info.status == "running" and info.node == node_a.name
            container = docker_api.inspect_container(f"kohakuriver-env-{env}")
            assert container["State"]["Running"]

            # exec: argv, exit codes and both streams come back
            built = client.env_exec(
                env, ["sh", "-c", "mkdir -p /opt/kr && echo built-in-env > /opt/kr/marker"]
            )
            assert built.exit_code == 0, built
            failing = client.env_exec(env, ["sh", "-c", "echo out; echo err >&2; exit 3"])
            assert (failing.exit_code, failing.stdout, failing.stderr) == (3, "out\n", "err\n")
            slow = client.env_exec(env, ["sleep", "30"], timeout=1)
            assert slow.timed_out and slow.exit_code != 0

            # commit + export: the host stores the tarball under its checksum
            version = client.commit_environment(env)
            assert (version.version, version.tag, version.image) == (1, "v1", f"{repository}:v1")
            stored = workdir / "host" / "environments" / env / "1.tar"
            assert stored.stat().st_size == version.size > 0
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == version.sha256
            assert client.get_environment(env).versions[0].sha256 == version.sha256

            # node B lacks the image: three tasks at once, one download
            _remove_images(docker_api, repository)
            result = client.submit(
                ["cat", "/opt/kr/marker"],
                environment=env,
                targets=[node_b.name, node_b.name, node_b.name],
            )
            for task_id in result.task_ids:
                task = wait_for(client, task_id, TERMINAL, timeout=90)
                assert task.status.value == "completed", task.reason
                assert task.environment == f"{env}:v1" and task.image == f"{repository}:v1"
                assert _stdout(client, task_id) == "built-in-env\n"
            assert node_b.log_path.read_text().count(f"fetched {repository}:v1") == 1
            assert docker_api.inspect_image(f"{repository}:v1")["Id"] == version.image_id

            # a second version; a corrupted tarball on the host fails the task, not hangs it
            client.env_exec(env, ["sh", "-c", "echo v2 > /opt/kr/marker"])
            second = client.commit_environment(env, tag="second")
            assert (second.version, second.tag) == (2, "second")
            _remove_images(docker_api, repository)
            tarball = workdir / "host" / "environments" / env / "2.tar"
            data = bytearray(tarball.read_bytes())
            data[len(data) // 2] ^= 0xFF
            tarball.write_bytes(bytes(data))
            bad = client.submit(
                ["cat", "/opt/kr/marker"], environment=f"{env}:second", targets=[node_b.name]
            )
            task = wait_for(client, bad.task_ids[0], TERMINAL, timeout=60)
            assert task.status.value == "failed" and "corrupted" in (task.reason or ""), task

            # bad input: clear 4xx, nothing queued
            with pytest.raises(InvalidRequest, match="unknown environment"):
                client.submit(["true"], environment="no-such-env")
            with pytest.raises(InvalidRequest, match="no version tagged"):
                client.submit(["true"], environment=f"{env}:nope")
            with pytest.raises(InvalidRequest, match="invalid environment name"):
                client.create_environment("Bad Name", BUSYBOX)
            with pytest.raises(RunnerRequestFailed, match="not found"):
                client.create_environment(f"{env}-x", "kohakuriver-test/missing:1", node_a.name)
        finally:
            client.delete_environment(env, versions=True)
            _remove_images(docker_api, repository)
        assert not stored.exists()
        with pytest.raises(Exception, match="No such container"):
            docker_api.inspect_container(f"kohakuriver-env-{env}")
