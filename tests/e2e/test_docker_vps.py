"""Docker VPS end to end: a host, a docker runner, a real ``ssh`` client.

create (generated key) → SSH login → write a file → snapshot → stop (with snapshot) → start
again from the snapshot → the file is still there; pause/resume; snapshot delete; bad input.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import HostProcess, RunnerProcess, docker_client, wait_for, wait_node

from kohakuriver_lab.client import Client
from kohakuriver_lab.errors import InvalidRequest
from kohakuriver_lab.testing.integration import missing

pytestmark = [pytest.mark.integration]

IMAGE = "kohakuriver-test/python:latest"  # Debian with openssh-server (see .ci/images.sh)
LOOPBACK_SSH = '--RunnerApp.backend_options={"docker": {"ssh_address": "127.0.0.1"}}'


@pytest.fixture
def docker_api() -> Iterator[Any]:
    api = docker_client(IMAGE, timeout=60)
    if shutil.which("ssh") is None:
        missing("no ssh client (apt-get install openssh-client)")
    yield api
    api.close()


@pytest.fixture
def vps_node(
    make_host: Callable[..., HostProcess],
    make_runner: Callable[..., RunnerProcess],
    docker_api: Any,
) -> tuple[HostProcess, RunnerProcess]:
    host = make_host(heartbeat=0.5)
    name = f"vps{os.getpid()}"
    runner = make_runner(host, host.runner_token(name), name, [LOOPBACK_SSH], backend="docker")
    with host.client() as client:
        wait_node(client, name, "online")
    return host, runner


def ssh(
    key: Path, port: int, command: str, *, password_only: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` over a real ssh connection to the VPS as root (non-interactive)."""
    argv = [
        "ssh",
        "-p",
        str(port),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "LogLevel=ERROR",
    ]
    if password_only:
        argv += ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"]
    else:
        argv += ["-o", "IdentitiesOnly=yes", "-i", str(key)]
    argv += ["root@127.0.0.1", command]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )


def ssh_ready(key: Path, port: int, command: str, timeout: float = 30) -> str:
    """The command's output once sshd in the container accepts the key."""
    deadline = time.monotonic() + timeout
    while True:
        result = ssh(key, port, command)
        if result.returncode == 0:
            return result.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"ssh failed: {result.returncode} {result.stderr}")
        time.sleep(0.5)


def running_vps(client: Client, task_id: int) -> Any:
    task = wait_for(client, task_id, {"running", "failed", "killed", "stopped"}, timeout=60)
    assert task.status.value == "running", task.reason
    assert task.ssh_port, task
    return task


def submit_vps(client: Client, workdir: Path, name: str) -> tuple[int, Path]:
    """Submit a VPS with a generated key pair; its task ID and the private key's file."""
    result = client.submit_request(
        {"task_type": "vps", "image": IMAGE, "generate_ssh_key": True, "name": name}
    )
    assert result.ssh_private_key and "OPENSSH PRIVATE KEY" in result.ssh_private_key
    key = workdir / f"vps_key_{name}"
    key.write_text(result.ssh_private_key)
    key.chmod(0o600)
    return result.task_ids[0], key


def remove_snapshots(api: Any, task_id: int) -> None:
    for row in api.images(name=f"kohakuriver-snapshot/vps-{task_id}"):
        for tag in row.get("RepoTags") or []:
            api.remove_image(tag, force=True)


def test_vps_ssh_snapshot_stop_start(
    vps_node: tuple[HostProcess, RunnerProcess], docker_api: Any, workdir: Path
) -> None:
    host, _ = vps_node
    with host.client() as client:
        task_id, key = submit_vps(client, workdir, "e2e")
        try:
            task = running_vps(client, task_id)
            assert docker_api.inspect_container(f"kohakuriver-vps-{task_id}")["State"]["Running"]

            # key login works; password login is refused (never passwordless)
            out = ssh_ready(key, task.ssh_port, "echo persisted > /root/marker && cat /root/marker")
            assert out == "persisted\n"
            refused = ssh(key, task.ssh_port, "true", password_only=True)
            # the methods sshd offers are listed: publickey only, no password/keyboard-interactive
            assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr

            # pause / resume
            client.pause(task_id)
            wait_for(client, task_id, {"paused"}, timeout=20)
            client.resume(task_id)
            wait_for(client, task_id, {"running"}, timeout=20)

            # explicit snapshot, then stop with the automatic one
            snapshots = client.create_snapshot(task_id)
            assert len(snapshots) == 1
            assert snapshots[0].image.startswith(f"kohakuriver-snapshot/vps-{task_id}:")
            client.stop_vps(task_id)
            stopped = wait_for(client, task_id, {"stopped", "failed", "killed"}, timeout=60)
            assert stopped.status.value == "stopped" and "snapshot" in (stopped.reason or "")
            snapshots = client.list_snapshots(task_id)
            assert len(snapshots) == 2
            assert snapshots[1].image in (stopped.reason or "")

            # start again: from the latest snapshot, the file written before is there
            client.start_vps(task_id)
            again = running_vps(client, task_id)
            assert ssh_ready(key, again.ssh_port, "cat /root/marker") == "persisted\n"
            image = docker_api.inspect_container(f"kohakuriver-vps-{task_id}")["Config"]["Image"]
            assert image == snapshots[1].image

            # delete a snapshot
            client.delete_snapshot(task_id, snapshots[0].tag)
            assert [s.tag for s in client.list_snapshots(task_id)] == [snapshots[1].tag]
            client.kill(task_id)
            wait_for(client, task_id, {"killed"}, timeout=30)
        finally:
            remove_snapshots(docker_api, task_id)


def test_vps_survives_a_runner_restart(
    vps_node: tuple[HostProcess, RunnerProcess], docker_api: Any, workdir: Path
) -> None:
    """SIGKILL the runner under a running VPS: the container keeps serving SSH, the host marks
    the task ``lost``, the restarted runner finds the container by label, the task is
    ``running`` again with the same port, and a stop with snapshot still works."""
    host, runner = vps_node
    with host.client() as client:
        task_id, key = submit_vps(client, workdir, "restart")
        try:
            task = running_vps(client, task_id)
            assert ssh_ready(
                key, task.ssh_port, "echo before > /root/marker; cat /root/marker"
            ) == ("before\n")

            runner.kill()
            wait_node(client, runner.name, "offline")
            assert wait_for(client, task_id, {"lost"}).status.value == "lost"
            # nobody watches it, but the VPS keeps serving its user
            assert ssh(key, task.ssh_port, "cat /root/marker").stdout == "before\n"

            runner.start()
            wait_node(client, runner.name, "online")
            revived = running_vps(client, task_id)
            assert revived.ssh_port == task.ssh_port
            assert ssh_ready(key, revived.ssh_port, "cat /root/marker") == "before\n"

            client.stop_vps(task_id)
            stopped = wait_for(client, task_id, {"stopped", "failed", "killed"}, timeout=60)
            assert stopped.status.value == "stopped", stopped.reason
            snapshots = client.list_snapshots(task_id)
            assert len(snapshots) == 1 and snapshots[0].image in (stopped.reason or "")
            assert not docker_api.containers(filters={"name": f"kohakuriver-vps-{task_id}"})
        finally:
            remove_snapshots(docker_api, task_id)


def test_vps_bad_input_is_refused(vps_node: tuple[HostProcess, RunnerProcess]) -> None:
    host, _ = vps_node
    with host.client() as client:
        cases = [
            ({"task_type": "vps", "image": IMAGE}, "needs a public key"),
            ({"task_type": "vps", "image": IMAGE, "ssh_public_key": "not a key"}, "not an OpenSSH"),
            (
                {"task_type": "vps", "image": IMAGE, "ssh_public_key": "ssh-ed25519 AAAA x\nrm"},
                "not an OpenSSH",
            ),
            ({"task_type": "vps", "generate_ssh_key": True}, "needs an image"),
            (
                {"task_type": "vps", "image": IMAGE, "generate_ssh_key": True, "command": ["sh"]},
                "not a command",
            ),
            ({"command": ["true"], "image": IMAGE, "mounts": ["/etc:/host-etc"]}, "not allowed"),
        ]
        for body, message in cases:
            with pytest.raises(InvalidRequest, match=message):
                client.submit_request(body)
        assert client.list_tasks().tasks == []
