"""Containers are confined (issue 10): no Docker socket or runner state mounted, reduced
capabilities, ``no_new_privs``, a pids limit; notebook jobs on a loopback host reach it only
through the job relay, never the node's other loopback services. Real dockerd."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest
from docker_helpers import BUSYBOX, PYTHON, MakeBackend
from runner_helpers import final_event, spec

from kohakuriver_lab.models import LogStream
from kohakuriver_lab.protocol import Mount
from kohakuriver_lab.runner.backends.docker.confine import CAPABILITIES
from kohakuriver_lab.runner.backends.docker.engine import labels, task_container_name
from kohakuriver_lab.runner.errors import TaskStartError

pytestmark = [pytest.mark.integration]

CAP_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6}
CAP_BITS |= {"SETUID": 7, "NET_BIND_SERVICE": 10, "NET_RAW": 13, "SYS_CHROOT": 18}
CAP_BITS |= {"MKNOD": 27, "AUDIT_WRITE": 29, "SETFCAP": 31}


def capeff(names: tuple[str, ...]) -> str:
    return format(sum(1 << CAP_BITS[n] for n in names), "016x")


async def run(backend: Any, command: list[str], **kwargs: Any) -> tuple[str, str]:
    task = spec(command, backend="docker", **kwargs)
    await backend.start(task)
    event = await final_event(backend, task.task_id, timeout=60)
    out = backend.read_log(task.task_id, LogStream.STDOUT, 0, 100_000).decode()
    err = backend.read_log(task.task_id, LogStream.STDERR, 0, 100_000).decode()
    assert event.state == "completed", (event, out, err)
    return out, err


def test_a_command_container_has_reduced_caps_and_no_new_privs(
    make_backend: MakeBackend, docker_api: Any
) -> None:
    async def main() -> None:
        backend = make_backend()
        out, _ = await run(
            backend, ["sh", "-c", "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status"],
            image=BUSYBOX,
        )  # fmt: skip
        status = dict(line.split(":\t") for line in out.splitlines())
        assert status["NoNewPrivs"] == "1"
        assert status["CapEff"] == capeff(CAPABILITIES["command"]), out
        assert status["CapBnd"] == status["CapEff"]  # nothing left to regain
        assert int(status["CapEff"], 16) & (1 << CAP_BITS["NET_RAW"]) == 0
        await backend.close()

    asyncio.run(main())


def test_host_config_of_each_kind(make_backend: MakeBackend, docker_api: Any, node: str) -> None:
    backend = make_backend(pids_limit=321)
    for kind in ("command", "vps", "environment"):
        name = task_container_name(9_000_000 + len(kind))
        backend.engine.create(
            name=name, image=BUSYBOX, command=["true"], labels=labels(1, "command", node),
            env={}, workdir=None, cores=[], numa=None, memory=None, gpus=[], kind=kind,  # type: ignore[arg-type]
        )  # fmt: skip
        config = docker_api.inspect_container(name)["HostConfig"]
        assert config["SecurityOpt"] == ["no-new-privileges"]
        assert config["CapDrop"] == ["ALL"] and config["CapAdd"] == list(CAPABILITIES[kind])
        assert config["PidsLimit"] == 321 and config["Privileged"] is False
        assert config["IpcMode"] == "private" and config["PidMode"] == ""
        assert config["NetworkMode"] in ("default", "bridge")
        docker_api.remove_container(name, force=True)
    assert {"SYS_CHROOT", "NET_BIND_SERVICE"} <= set(CAPABILITIES["vps"])  # sshd
    assert "NET_RAW" not in {c for caps in CAPABILITIES.values() for c in caps}
    backend.engine.close()


def test_the_pids_limit_holds_inside(make_backend: MakeBackend, docker_api: Any) -> None:
    async def main() -> None:
        backend = make_backend(pids_limit=20)
        script = "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"
        out, _ = await run(backend, ["sh", "-c", script], image=BUSYBOX)
        assert out.strip() == "20", out
        await backend.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    "source", ["/var/run/docker.sock", "/run/docker.sock", "/var/run", "/", "/var/lib/docker"]
)
def test_a_docker_socket_mount_is_refused_by_the_runner(
    make_backend: MakeBackend, docker_api: Any, source: str
) -> None:
    """Re-checked before create, whatever the host let through."""

    async def main() -> None:
        backend = make_backend()
        task = spec(
            ["true"], image=BUSYBOX, backend="docker",
            mounts=[Mount(source=source, target="/mnt/x", read_only=False)],
        )  # fmt: skip
        with pytest.raises(TaskStartError, match="refused: it would expose"):
            await backend.start(task)
        assert not docker_api.containers(all=True, filters={"name": f"-{task.task_id}$"})
        await backend.close()

    asyncio.run(main())


def test_links_and_the_state_dir_are_refused(
    make_backend: MakeBackend, docker_api: Any, tmp_path: Path, state_dir: Path
) -> None:
    link = tmp_path / "innocent"
    link.symlink_to("/var/run/docker.sock")
    state_dir.mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        backend = make_backend()
        for source in (str(link), str(state_dir), str(state_dir / "tasks")):
            task = spec(
                ["true"], image=BUSYBOX, backend="docker",
                mounts=[Mount(source=source, target="/mnt/x", read_only=True)],
            )  # fmt: skip
            with pytest.raises(TaskStartError, match="refused"):
                await backend.start(task)
        await backend.close()

    asyncio.run(main())


def test_the_runners_own_mounts_option_is_checked(
    make_backend: MakeBackend, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"would expose /var/run/docker\.sock"):
        make_backend(mounts={"/var/run": "/host-run:ro"})
    with pytest.raises(ValueError, match="would expose"):
        make_backend(mounts={str(tmp_path / "x"): "/x"}, protected_paths=[str(tmp_path)])


# =============================================================================
# The job relay
# =============================================================================


async def fake_host() -> tuple[asyncio.Server, int, list[str]]:
    """An HTTP server on 127.0.0.1 that answers 200 and records each request head."""
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        length = next(
            (int(v) for k, _, v in (h.partition(": ") for h in head.split("\r\n"))
             if k.lower() == "content-length"), 0,
        )  # fmt: skip
        body = await reader.readexactly(length)
        seen.append(head + body.decode())
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nupstream")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


CLIENT = textwrap.dedent(
    """
    import os, socket, urllib.request, urllib.error
    base = os.environ["KOHAKURIVER_URL"]
    def call(method, path, auth="Task t0k", data=None):
        req = urllib.request.Request(base + path, method=method, data=data)
        if auth:
            req.add_header("Authorization", auth)
        req.add_header("Cookie", "_xsrf=steal")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
    print("base", base)
    print("job", call("GET", "kohakuriver/api/tasks/7/job"))
    print("put", call("PUT", "kohakuriver/api/tasks/7/artifacts/output.ipynb", data=b"{}"))
    print("me", call("GET", "kohakuriver/api/me"))
    print("contents", call("GET", "api/contents"))
    print("noauth", call("GET", "kohakuriver/api/tasks/7/job", auth=None))
    print("bearer", call("GET", "kohakuriver/api/tasks/7/job", auth="Bearer kra_x"))
    print("dotdot", call("GET", "kohakuriver/api/tasks/7/artifacts/../../../me"))
    gw = base.split("//")[1].split(":")[0]
    try:
        socket.create_connection((gw, int(os.environ["UPSTREAM_PORT"])), timeout=3)
        print("loopback reachable")
    except OSError as e:
        print("loopback unreachable", type(e).__name__)
    """
)


def test_a_container_reaches_a_loopback_host_only_through_the_relay(
    make_backend: MakeBackend, docker_api: Any
) -> None:
    async def main() -> None:
        server, port, seen = await fake_host()
        backend = make_backend(host_url=f"http://127.0.0.1:{port}/")
        out, err = await run(
            backend, ["python3", "-c", CLIENT], image=PYTHON, env={"UPSTREAM_PORT": str(port)}
        )
        lines = dict(line.split(" ", 1) for line in out.splitlines())
        assert not lines["base"].startswith("http://127."), out
        assert (lines["job"], lines["put"]) == ("200", "200"), (out, err)
        for refused in ("me", "contents", "noauth", "bearer", "dotdot"):
            assert lines[refused] == "403", (refused, out)
        assert lines["loopback"].startswith("unreachable"), out
        assert len(seen) == 2  # the refused calls never reached the host
        job, put = seen
        assert job.startswith("GET /kohakuriver/api/tasks/7/job HTTP/1.1\r\n")
        assert f"Host: 127.0.0.1:{port}\r\n" in job and "Authorization: Task t0k" in job
        assert "Cookie" not in job and put.endswith("\r\n\r\n{}")
        await backend.close()
        server.close()

    asyncio.run(main())


def test_host_network_or_a_remote_host_means_no_relay(make_backend: MakeBackend) -> None:
    async def main() -> None:
        local = make_backend(host_url="http://127.0.0.1:1/", network_mode="host")
        assert await local._container_host_url() == "http://127.0.0.1:1/"
        remote = make_backend(host_url="https://host.example:8888/lab/")
        assert await remote._container_host_url() == "https://host.example:8888/lab/"
        off = make_backend(host_url="http://localhost:1/", job_relay=False)
        assert await off._container_host_url() == "http://localhost:1/"

    asyncio.run(main())
