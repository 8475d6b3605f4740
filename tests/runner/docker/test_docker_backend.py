"""The docker backend against a real dockerd: limits, exit codes, OOM, orders, logs, naming."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from docker_helpers import BUSYBOX, PYTHON, MakeBackend, until
from runner_helpers import final_event, next_event, spec

from kohakuriver_lab.models import LogStream
from kohakuriver_lab.runner.backends.base import load_backend_class
from kohakuriver_lab.runner.backends.docker import DockerBackend
from kohakuriver_lab.runner.backends.docker.engine import labels, task_container_name
from kohakuriver_lab.runner.backends.local import LocalBackend
from kohakuriver_lab.runner.backends.multi import MultiBackend
from kohakuriver_lab.runner.errors import InvalidTaskState, TaskStartError

pytestmark = [pytest.mark.integration]


def test_entry_point() -> None:
    assert load_backend_class("docker") is DockerBackend


def test_exit_codes_output_names_labels_env(
    make_backend: MakeBackend, docker_api: Any, node: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOHAKURIVER_RUNNER_TOKEN", "secret-token")

    async def main() -> None:
        backend = make_backend()
        ok = spec(
            ["sh", "-c", 'echo out; echo err >&2; pwd; env | grep -E "^(KOHAKU|MY_|CUDA)" | sort'],
            image=BUSYBOX,
            env={"MY_VAR": "a b"},
            workdir="/tmp",
            backend="docker",
        )
        await backend.start(ok)
        assert (await next_event(backend)).state == "running"
        event = await final_event(backend, ok.task_id)
        assert (event.state, event.exit_code, event.reason) == ("completed", 0, None)
        out = backend.read_log(ok.task_id, LogStream.STDOUT, 0, 10_000).decode()
        assert out.splitlines() == [
            "out",
            "/tmp",
            "CUDA_VISIBLE_DEVICES=",
            f"KOHAKURIVER_NODE={node}",
            f"KOHAKURIVER_TASK_ID={ok.task_id}",
            "MY_VAR=a b",
        ]
        assert backend.read_log(ok.task_id, LogStream.STDERR, 0, 100) == b"err\n"

        info = docker_api.inspect_container(f"kohakuriver-task-{ok.task_id}")
        assert info["Config"]["Labels"] == {
            "kohakuriver.managed": "true",
            "kohakuriver.task_id": str(ok.task_id),
            "kohakuriver.task_type": "command",
            "kohakuriver.node": node,
        }
        assert not any("secret-token" in e for e in info["Config"]["Env"])

        for code in (3, 137):
            bad = spec(["sh", "-c", f"echo before; exit {code}"], image=BUSYBOX)
            await backend.start(bad)
            event = await final_event(backend, bad.task_id)
            assert (event.state, event.exit_code) == ("failed", code)
            assert event.reason == f"exit code {code}"  # 137 by exit() is not an OOM
        reports = {r.task_id: r for r in await backend.list_tasks()}
        assert reports[bad.task_id].exit_code == 137
        assert reports[bad.task_id].log_sizes == {LogStream.STDOUT: 7, LogStream.STDERR: 0}
        await backend.forget(bad.task_id)
        assert not backend.knows(bad.task_id)
        assert not docker_api.containers(
            all=True, filters={"name": f"kohakuriver-task-{bad.task_id}"}
        )
        await backend.close()

    asyncio.run(main())


def test_pinned_cores_and_memory_limit_visible_inside(make_backend: MakeBackend) -> None:
    async def main() -> None:
        backend = make_backend()
        cgroup = "/sys/fs/cgroup"
        task = spec(
            [
                "sh",
                "-c",
                f"cat {cgroup}/cpuset/cpuset.cpus {cgroup}/cpuset/cpuset.mems "
                f"{cgroup}/memory/memory.limit_in_bytes "
                f"{cgroup}/memory/memory.memsw.limit_in_bytes 2>/dev/null; "
                f"cat {cgroup}/cpu/cpu.cfs_quota_us {cgroup}/cpu/cpu.cfs_period_us; "
                "grep Cpus_allowed_list /proc/self/status",
            ],
            image=BUSYBOX,
            cores=[1],
            numa=0,
            memory=64 << 20,
        )
        await backend.start(task)
        event = await final_event(backend, task.task_id)
        assert event.state == "completed"
        lines = backend.read_log(task.task_id, LogStream.STDOUT, 0, 10_000).decode().split()
        if not Path(cgroup, "cpuset").is_dir():
            pytest.skip("cgroup v1 files expected (this host is not cgroup v1)")
        assert lines[:3] == ["1", "0", str(64 << 20)]
        assert lines[-1] == "1"  # Cpus_allowed_list
        assert lines[-2] == "Cpus_allowed_list:"
        assert int(lines[-4]) == int(lines[-3]) > 0  # CFS quota = one period: one core's worth
        await backend.close()

    asyncio.run(main())


def test_oom_is_killed_oom(make_backend: MakeBackend) -> None:
    async def main() -> None:
        backend = make_backend()
        task = spec(
            ["python3", "-c", "print('start', flush=True); b = bytearray(256 << 20)"],
            image=PYTHON,
            memory=32 << 20,
        )
        await backend.start(task)
        event = await final_event(backend, task.task_id, timeout=30)
        assert (event.state, event.exit_code) == ("killed_oom", 137)
        assert "out of memory" in (event.reason or "")
        assert backend.read_log(task.task_id, LogStream.STDOUT, 0, 100) == b"start\n"
        await backend.close()

    asyncio.run(main())


def test_live_logs_pause_resume_and_kill_with_grace(
    make_backend: MakeBackend, docker_api: Any
) -> None:
    async def main() -> None:
        backend = make_backend()
        script = 'trap "echo term; exit 5" TERM; i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.05; done'
        task = spec(["sh", "-c", script], image=BUSYBOX)
        tid = task.task_id
        await backend.start(task)
        assert (await next_event(backend)).state == "running"

        def size() -> int:
            return backend.log_sizes(tid)[LogStream.STDOUT]

        await until(lambda: b"tick3\n" in backend.read_log(tid, LogStream.STDOUT, 0, 10_000))
        # live: output is in the task's file while the container still runs
        assert docker_api.inspect_container(f"kohakuriver-task-{tid}")["State"]["Running"]

        await backend.pause(tid)
        assert (await next_event(backend)).state == "paused"
        assert [r.state for r in await backend.list_tasks()] == ["paused"]
        assert docker_api.inspect_container(f"kohakuriver-task-{tid}")["State"]["Paused"]
        await asyncio.sleep(0.2)
        frozen = size()
        await asyncio.sleep(0.4)
        assert size() == frozen  # nothing runs while paused
        await backend.pause(tid)  # idempotent
        with pytest.raises(InvalidTaskState):
            await backend.forget(tid)

        await backend.resume(tid)
        assert (await next_event(backend)).state == "running"
        await until(lambda: size() > frozen + 20)

        await backend.kill(tid, grace=5)
        event = await final_event(backend, tid)
        assert (event.state, event.exit_code, event.reason) == ("killed", 5, "killed on request")
        assert backend.read_log(tid, LogStream.STDOUT, 0, 1 << 20).endswith(b"term\n")
        await backend.kill(tid, grace=5)  # a finished task: nothing to do
        with pytest.raises(InvalidTaskState):
            await backend.pause(tid)
        await backend.close()

    asyncio.run(main())


def test_kill_without_grace_and_of_a_paused_task(make_backend: MakeBackend) -> None:
    async def main() -> None:
        backend = make_backend()
        stubborn = spec(
            ["sh", "-c", "trap '' TERM; echo up; while true; do sleep 1; done"], image=BUSYBOX
        )
        paused = spec(["sleep", "60"], image=BUSYBOX)
        for task in (stubborn, paused):
            await backend.start(task)
        await backend.pause(paused.task_id)
        await until(lambda: backend.log_sizes(stubborn.task_id)[LogStream.STDOUT] > 0)
        started = time.monotonic()
        await backend.kill(stubborn.task_id, grace=0)
        await backend.kill(paused.task_id, grace=1)
        done = {}
        while len(done) < 2:
            event = await next_event(backend)
            if event.final:
                done[event.task_id] = event
        assert time.monotonic() - started < 5
        # SIGKILL at once; the paused one is thawed and its TERM ends sleep (128 + 15)
        assert (done[stubborn.task_id].state, done[stubborn.task_id].exit_code) == ("killed", 137)
        assert (done[paused.task_id].state, done[paused.task_id].exit_code) == ("killed", 143)
        await backend.close()

    asyncio.run(main())


def test_missing_image_and_bad_command_fail_with_reason(
    make_backend: MakeBackend, docker_api: Any
) -> None:
    async def main() -> None:
        backend = make_backend()
        task = spec(["true"], image="kohakuriver-test/no-such-image:1")
        with pytest.raises(TaskStartError) as info:
            await backend.start(task)
        reason = f"image kohakuriver-test/no-such-image:1 not found on node {backend.node}"
        assert info.value.message == reason
        [report] = await backend.list_tasks()
        assert (report.state, report.reason) == ("failed", reason)
        assert backend.knows(task.task_id)
        await backend.start(task)  # idempotent: known, not retried
        assert not docker_api.containers(
            all=True, filters={"name": f"kohakuriver-task-{task.task_id}"}
        )

        # Docker's init (PID 1) reports a missing program as exit 127 with a message.
        no_exe = spec(["/no/such/program"], image=BUSYBOX)
        await backend.start(no_exe)
        event = await final_event(backend, no_exe.task_id)
        assert (event.state, event.exit_code) == ("failed", 127)
        assert b"/no/such/program" in backend.read_log(no_exe.task_id, LogStream.STDERR, 0, 1000)

        # Without it, Docker refuses to start the container: a start error, container removed.
        plain = make_backend(state=backend.state_dir / "plain", init=False)
        no_exe = spec(["/no/such/program"], image=BUSYBOX)
        with pytest.raises(TaskStartError, match="no/such/program") as info:
            await plain.start(no_exe)
        assert info.value.exit_code in (126, 127)
        name = f"kohakuriver-task-{no_exe.task_id}"
        assert not docker_api.containers(all=True, filters={"name": name})
        await plain.close()

        no_image = spec(["true"])
        with pytest.raises(TaskStartError, match="names no image"):
            await backend.start(no_image)
        await backend.close()

    asyncio.run(main())


def test_gpu_request_without_gpus_fails_cleanly(make_backend: MakeBackend, docker_api: Any) -> None:
    """No NVIDIA runtime here: the device request is refused, and the task fails (never hangs)."""
    if "nvidia" in docker_api.info().get("Runtimes", {}):
        pytest.skip("this daemon has the NVIDIA runtime")

    async def main() -> None:
        backend = make_backend()
        task = spec(["true"], image=BUSYBOX, gpus=[0])
        with pytest.raises(TaskStartError, match="device driver"):
            await backend.start(task)
        await backend.close()

    asyncio.run(main())


def test_gpu_device_request_names_exactly_the_assigned_gpus(
    make_backend: MakeBackend, docker_api: Any, node: str
) -> None:
    """The container asks Docker for exactly the assigned GPU indices (by ID, not a count),
    and CUDA inside numbers them from 0. Checked on the created container's HostConfig: a
    daemon without the NVIDIA runtime refuses only at start."""
    backend = make_backend()
    task = spec(["true"], image=BUSYBOX, gpus=[1, 3], cores=[0])
    name = task_container_name(task.task_id)
    env = backend._env(task)
    backend.engine.create(
        name=name, image=BUSYBOX, command=["true"], labels=labels(task.task_id, "command", node),
        env=env, workdir=None, cores=task.cores, numa=None, memory=None, gpus=task.gpus,
    )  # fmt: skip
    host_config = docker_api.inspect_container(name)["HostConfig"]
    [request] = host_config["DeviceRequests"]
    assert request["DeviceIDs"] == ["1", "3"] and request["Capabilities"] == [["gpu"]]
    assert request["Count"] == 0  # IDs only: never "all" or a count
    assert host_config["CpusetCpus"] == "0" and host_config["NanoCpus"] == 1_000_000_000
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert "NVIDIA_VISIBLE_DEVICES" not in env

    none = backend._env(spec(["true"], image=BUSYBOX))  # no GPUs: none visible, even in CUDA images
    assert (none["CUDA_VISIBLE_DEVICES"], none["NVIDIA_VISIBLE_DEVICES"]) == ("", "void")
    backend.engine.close()


def test_configured_mounts_and_network_mode(make_backend: MakeBackend, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "hello.txt").write_text("shared\n")

    async def main() -> None:
        backend = make_backend(mounts={str(data): "/data:ro"}, network_mode="none")
        task = spec(
            ["sh", "-c", "cat /data/hello.txt; touch /data/x || echo read-only; ls /sys/class/net"],
            image=BUSYBOX,
        )
        await backend.start(task)
        assert (await final_event(backend, task.task_id)).state == "completed"
        out = backend.read_log(task.task_id, LogStream.STDOUT, 0, 1000).decode().split()
        assert out == ["shared", "read-only", "lo"]
        await backend.close()

    asyncio.run(main())


def test_multi_backend_routes_by_spec_backend(
    make_backend: MakeBackend, state_dir: Path, node: str
) -> None:
    async def main() -> None:
        docker = make_backend(state=state_dir / "docker")
        local = LocalBackend(
            state_dir=state_dir / "local", node=node, options={"use_cgroups": False}
        )
        multi = MultiBackend([docker, local], state_dir=state_dir, node=node)
        assert multi.backend_names() == ["docker", "local"]
        images = await multi.images()  # reported in hello so placement can prefer this node
        assert f"{BUSYBOX}:latest" in images and f"{PYTHON}:latest" in images
        in_docker = spec(["cat", "/etc/passwd"], image=BUSYBOX, backend="docker")
        on_host = spec(["echo", "host"], backend="local")
        for task in (in_docker, on_host):
            await multi.start(task)
            assert (await final_event(multi, task.task_id)).state == "completed"
        assert docker.knows(in_docker.task_id) and not local.knows(in_docker.task_id)
        assert local.knows(on_host.task_id) and not docker.knows(on_host.task_id)
        assert multi.read_log(in_docker.task_id, LogStream.STDOUT, 0, 100).startswith(b"root:x:0")
        assert multi.read_log(on_host.task_id, LogStream.STDOUT, 0, 100) == b"host\n"
        assert {r.task_id for r in await multi.list_tasks()} == {in_docker.task_id, on_host.task_id}
        with pytest.raises(TaskStartError, match="no 'vm' backend"):
            await multi.start(spec(["true"], backend="vm"))
        for task in (in_docker, on_host):
            await multi.forget(task.task_id)
        assert await multi.list_tasks() == []
        await multi.close()

    asyncio.run(main())
