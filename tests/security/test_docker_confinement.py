"""The host never lets a task mount the Docker socket, the daemon's data or its own data dir,
whatever ``MountPolicy.allowed_mounts`` allows (issue 10). The runner re-checks before create
and confines each container: tests/runner/docker/test_docker_confinement.py (real dockerd)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kohakuriver_lab.errors import InvalidRequest
from kohakuriver_lab.protected_paths import exposed
from kohakuriver_lab.server.mounts import MountPolicy

BUSYBOX = "kohakuriver-test/busybox:latest"


@pytest.fixture
def host_config() -> dict[str, Any]:
    """An admin who allowed everything: the protected paths are refused all the same."""
    return {"MountPolicy": {"allowed_mounts": ["/"]}}


@pytest.mark.parametrize(
    "mount",
    [
        "/var/run/docker.sock:/var/run/docker.sock",
        "/run/docker.sock:/d.sock:ro",
        "/run:/hostrun:ro",
        "/var/run/../run/docker.sock:/d.sock",
        "/var/lib/docker:/d:ro",
        "/var/lib:/d:ro",
        "/:/host:ro",
    ],
)
async def test_the_docker_socket_is_never_mounted(api: Any, mount: str) -> None:
    status, body = await api.call(
        "POST", "/tasks", {"command": ["true"], "image": BUSYBOX, "mounts": [mount]}
    )
    assert status == 400, body
    assert "would expose" in body["message"], body


async def test_the_hosts_data_dir_is_never_mounted(api: Any, started_host: Any) -> None:
    data_dir = started_host.config.ClusterHostApp.data_dir
    for source in (data_dir, str(Path(data_dir) / "artifacts"), str(Path(data_dir).parent)):
        status, body = await api.call(
            "POST", "/tasks", {"command": ["true"], "image": BUSYBOX, "mounts": [f"{source}:/x"]}
        )
        assert status == 400 and data_dir in body["message"], body


async def test_other_allowed_mounts_still_pass(api: Any, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    status, body = await api.call(
        "POST", "/tasks", {"command": ["true"], "image": BUSYBOX, "mounts": [f"{scratch}:/x"]}
    )
    assert status != 400 or "mount" not in str(body), body


def test_a_link_to_the_socket_is_resolved(tmp_path: Path) -> None:
    link = tmp_path / "innocent"
    link.symlink_to("/run/docker.sock")
    policy = MountPolicy(allowed_mounts=[str(tmp_path)])
    with pytest.raises(InvalidRequest, match="would expose"):
        policy.check(f"{link}:/x")
    assert exposed(str(tmp_path / "data"), ["/var/run/docker.sock"]) is None


def test_protected_paths_add_to_the_list(tmp_path: Path) -> None:
    policy = MountPolicy(allowed_mounts=["/"], protected_paths=[str(tmp_path / "runner")])
    with pytest.raises(InvalidRequest, match="would expose"):
        policy.check(f"{tmp_path}/runner/tasks:/x")
    assert policy.check(f"{tmp_path}/other:/x") == f"{tmp_path}/other:/x:rw"
