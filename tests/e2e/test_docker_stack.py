"""The whole stack with the docker backend: a host and ``kohakuriver-runner --backend docker,local``.

Needs a reachable dockerd and the images of ``.ci/images.sh`` (skips without, fails under
KOHAKURIVER_REQUIRE_INTEGRATION=1).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import TERMINAL, HostProcess, RunnerProcess, docker_client, wait_for, wait_node

from kohakuriver_lab.errors import InvalidRequest

pytestmark = [pytest.mark.integration]

BUSYBOX = "kohakuriver-test/busybox"


@pytest.fixture
def docker_api() -> Iterator[Any]:
    api = docker_client(BUSYBOX)
    yield api
    api.close()


@pytest.fixture
def docker_runner(
    make_host: Callable[..., HostProcess],
    make_runner: Callable[..., RunnerProcess],
    docker_api: Any,
) -> tuple[HostProcess, RunnerProcess]:
    host = make_host(heartbeat=0.5)
    name = f"dock{os.getpid()}"
    return host, make_runner(host, host.runner_token(name), name, backend="docker,local")


def test_image_task_runs_in_a_container_and_plain_task_locally(
    docker_runner: tuple[HostProcess, RunnerProcess], docker_api: Any
) -> None:
    host, runner = docker_runner
    with host.client() as client:
        wait_node(client, runner.name, "online")
        assert client.get_node(runner.name).backends == ["docker", "local"]
        script = "echo hello from $KOHAKURIVER_NODE; cat /sys/fs/cgroup/cpuset/cpuset.cpus; exit 0"
        result = client.submit_request(
            {"command": ["sh", "-c", script], "image": BUSYBOX, "cores": 1}
        )
        task = wait_for(client, result.task_ids[0], TERMINAL, timeout=30)
        assert task.status.value == "completed", client.logs(task.task_id, "stderr").data
        lines = client.logs(task.task_id).data.splitlines()
        assert lines[0] == f"hello from {runner.name}"
        if Path("/sys/fs/cgroup/cpuset").is_dir():  # cgroup v1 here
            assert lines[1] == ",".join(str(c) for c in task.assigned_cores)

        # the same node runs a task without an image with the local backend
        plain = client.submit(["hostname"])
        task = wait_for(client, plain.task_ids[0], TERMINAL, timeout=30)
        assert task.status.value == "completed"
        assert client.logs(task.task_id).data == socket.gethostname() + "\n"

        # a missing image: a failed task with the reason, never a hung one
        bad = client.submit_request({"command": ["true"], "image": "kohakuriver-test/nope"})
        task = wait_for(client, bad.task_ids[0], TERMINAL, timeout=30)
        assert task.status.value == "failed"
        assert f"image kohakuriver-test/nope not found on node {runner.name}" in str(
            client.get_task(task.task_id)
        )


def test_per_task_mounts_follow_the_allow_list(
    make_host: Callable[..., HostProcess],
    make_runner: Callable[..., RunnerProcess],
    workdir: Path,
    docker_api: Any,
) -> None:
    data = workdir / "datasets"
    scratch = workdir / "scratch"
    data.mkdir()
    scratch.mkdir()
    (data / "hello.txt").write_text("from the node\n")
    host = make_host(
        heartbeat=0.5,
        extra=[
            f"--MountPolicy.allowed_mounts={data}:ro",
            f"--MountPolicy.allowed_mounts={scratch}",
        ],
    )
    name = f"mnt{os.getpid()}"
    runner = make_runner(host, host.runner_token(name), name, backend="docker")
    with host.client() as client:
        wait_node(client, runner.name, "online")

        def run(command: list[str], mounts: list[str]) -> Any:
            result = client.submit(command, image=BUSYBOX, mounts=mounts)
            return wait_for(client, result.task_ids[0], TERMINAL, timeout=30)

        task = run(["cat", "/data/hello.txt"], [f"{data}:/data:ro"])
        assert task.status.value == "completed", task.reason
        assert client.logs(task.task_id).data == "from the node\n"
        assert task.mounts == [f"{data}:/data:ro"]
        task = run(["sh", "-c", "echo x > /data/new"], [f"{data}:/data:ro"])
        assert task.status.value == "failed"  # read-only inside the container
        task = run(["sh", "-c", "echo written > /out/result"], [f"{scratch}:/out"])
        assert task.status.value == "completed"
        assert (scratch / "result").read_text() == "written\n"

        refused = [
            ([f"{data}:/data"], "may only be mounted read-only"),
            ([f"{data}/../../:/data:ro"], "is not allowed"),
            (["/etc:/etc2:ro"], "is not allowed"),
            ([f"{scratch}:/etc"], "cannot mount over /etc"),
            (["relative:/x"], "absolute"),
        ]
        for mounts, message in refused:
            with pytest.raises(InvalidRequest, match=message):
                client.submit(["true"], image=BUSYBOX, mounts=mounts)
        with pytest.raises(InvalidRequest, match="mounts need the docker backend"):
            client.submit(["true"], mounts=[f"{scratch}:/out"])
