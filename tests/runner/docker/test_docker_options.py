"""Docker backend settings and failure without a daemon (no dockerd needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from runner_helpers import spec

from kohakuriver_lab.runner.backends.docker import DockerBackend
from kohakuriver_lab.runner.backends.docker.options import DockerOptions
from kohakuriver_lab.runner.backends.multi import backend_options, build_backend
from kohakuriver_lab.runner.errors import TaskStartError


def test_options_parse_mounts_and_defaults() -> None:
    opts = DockerOptions.parse({"mounts": {"/data": "/data:ro", "/scratch": "/scratch"}})
    assert opts.binds() == {
        "/data": {"bind": "/data", "mode": "ro"},
        "/scratch": {"bind": "/scratch", "mode": "rw"},
    }
    assert (opts.pull, opts.init, opts.network_mode, opts.log_driver) == (
        False,
        True,
        None,
        "local",
    )
    assert DockerOptions.parse({"use_cgroups": False}).mounts == {}  # other backends' keys


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mounts": {"data": "/data"}}, "absolute"),
        ({"mounts": {"/data": "/data:rx"}}, "ro or rw"),
        ({"mounts": ["/data"]}, "must be a dict"),
        ({"pull": "yes"}, "'pull' must be true or false"),
        ({"network_mode": 3}, "'network_mode' must be a string"),
    ],
)
def test_options_refuse_bad_values(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DockerOptions.parse(options)


def test_backend_options_sections() -> None:
    options = {"use_cgroups": False, "docker": {"network_mode": "none"}}
    names = ["docker", "local"]
    assert backend_options(options, "local", names) == {"use_cgroups": False}
    assert backend_options(options, "docker", names) == {
        "use_cgroups": False,
        "network_mode": "none",
    }


def test_build_backend_single_and_multi(tmp_path: Path) -> None:
    single = build_backend("local", state_dir=tmp_path, node="n")
    assert single.name == "local" and single.state_dir == tmp_path / "local"
    multi = build_backend(" docker , local", state_dir=tmp_path, node="n")
    assert multi.backend_names() == ["docker", "local"]
    with pytest.raises(LookupError):
        build_backend("nope", state_dir=tmp_path, node="n")


def test_unreachable_daemon_fails_the_start_with_a_reason(tmp_path: Path) -> None:
    async def main() -> None:
        backend = DockerBackend(
            state_dir=tmp_path / "state",
            node="n",
            options={"base_url": f"unix://{tmp_path}/no-docker.sock"},
        )
        task = spec(["true"], image="kohakuriver-test/busybox")
        with pytest.raises(TaskStartError, match="Docker daemon unreachable"):
            await asyncio.wait_for(backend.start(task), 30)
        [report] = await backend.list_tasks()
        assert report.state == "failed"
        await backend.recover()  # cannot list containers: logged, not raised
        await backend.close()

    asyncio.run(main())
