"""The docker backend: each command task runs in its own container ``kohakuriver-task-{id}``.

State is split between Docker and ``{state_dir}/tasks/{task_id}/``: the container (found by
its labels) says whether the task runs; the task dir holds ``spec.json``, the ``stdout`` and
``stderr`` files the agent ships from, ``kill.json`` once a kill was asked for, and
``exit.json`` once the task has ended. A new backend on the same state dir (runner restart)
follows running containers again and reports those that ended meanwhile with their real
exit status (see ``watch.py``).
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from kohakuriver_lab.protected_paths import ALWAYS_PROTECTED, exposed
from kohakuriver_lab.protocol import (
    EnvCommit,
    EnvCreate,
    EnvExec,
    EnvRemove,
    Request,
    RunnerTaskState,
    Snapshot,
    TaskSpec,
)
from kohakuriver_lab.runner import taskdir
from kohakuriver_lab.runner.backends.base import HostLink, TaskEvent
from kohakuriver_lab.runner.backends.docker.engine import (
    TASK_ID_LABEL,
    TASK_TYPE_LABEL,
    Engine,
    labels,
    task_container_name,
)
from kohakuriver_lab.runner.backends.docker.environments import EnvironmentContainers
from kohakuriver_lab.runner.backends.docker.errors import (
    ContainerCreationError,
    ContainerNotFoundError,
    DockerError,
    ImageNotFoundError,
)
from kohakuriver_lab.runner.backends.docker.options import DockerOptions
from kohakuriver_lab.runner.backends.docker.relay import JobRelay, is_loopback_url
from kohakuriver_lab.runner.backends.docker.transfer import ImageTransfer
from kohakuriver_lab.runner.backends.docker.vps import (
    AUTHORIZED_KEYS,
    SSH_PORT,
    VPS_COMMAND,
    Snapshots,
    authorized_keys,
)
from kohakuriver_lab.runner.backends.docker.watch import ContainerWatch
from kohakuriver_lab.runner.backends.taskdirs import ALIVE, TaskDirBackend
from kohakuriver_lab.runner.errors import InvalidTaskState, TaskStartError

T = TypeVar("T")


class DockerBackend(TaskDirBackend):
    """Runs tasks in Docker containers with pinned cores, memory limits and GPU requests."""

    name = "docker"
    supported_features = frozenset(
        {"pause", "memory_limit", "cpu_pinning", "gpu", "image", "vps", "environments"}
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.docker_options = DockerOptions.parse(self.options)
        protected = [str(self.state_dir), *self.docker_options.protected_paths]
        for source in self.docker_options.mounts:  # the daemon's own paths: at create
            hit = exposed(source, [*ALWAYS_PROTECTED, *protected])
            if hit is not None:
                raise ValueError(f"docker option 'mounts': {source} would expose {hit}")
        self.engine = Engine(self.docker_options, protected=[str(self.state_dir)])
        self._relay: JobRelay | None = None
        self._host_ssl: Any = None
        self.transfer = ImageTransfer(self.engine, self.state_dir / "tmp", self.log)
        self.environments = EnvironmentContainers(
            self.engine, self.transfer, self.docker_options, self.node
        )
        self.snapshots = Snapshots(self.engine, self.docker_options.snapshot_keep)
        self._names: dict[int, str] = {}
        self._watches: dict[int, ContainerWatch] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="docker-call")

    # =========================================================================
    # Lifecycle
    # =========================================================================

    async def recover(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            rows: list[dict[str, Any]] | None = await self._call(self.engine.managed, self.node)
        except DockerError as exc:
            self.log.error("docker: cannot list containers (%s); watching task dirs anyway", exc)
            rows = None
        states: dict[int, str] = {}
        for row in rows or []:
            task_id = _int(row.get("Labels", {}).get(TASK_ID_LABEL))
            if task_id is None:
                continue
            states[task_id] = str(row.get("State", ""))
            task_type = str(row.get("Labels", {}).get(TASK_TYPE_LABEL, "command"))
            self._names[task_id] = task_container_name(task_id, task_type)
            path = self._dir(task_id)
            if not path.exists():  # a container without a task dir: report it (an orphan)
                path.mkdir(parents=True)
                for stream in taskdir.STREAMS:
                    (path / stream).touch()
        for task_id in self._task_ids():
            path = self._dir(task_id)
            if task_id in self._watches or (path / taskdir.EXIT).exists():
                continue
            state = states.get(task_id)
            if rows is not None and state is None:
                info = {"exit_code": None, "reason": "container gone; exit status unknown"}
                taskdir.write_json_atomic(path / taskdir.EXIT, info)
            elif state == "created":
                info = {"exit_code": None, "start_error": "runner stopped while starting it"}
                taskdir.write_json_atomic(path / taskdir.EXIT, info)
            else:
                self._watch(task_id, paused=state == "paused")
        self.log.info("docker: recovered %d task(s) in %s", len(self._task_ids()), self.tasks_dir)

    async def close(self) -> None:
        if self._relay is not None:
            await self._relay.close()
        for watch in self._watches.values():
            watch.close()
        self._watches.clear()
        self.engine.close()
        self._executor.shutdown(wait=False)

    # =========================================================================
    # Orders
    # =========================================================================

    def link_host(self, host: HostLink) -> None:
        super().link_host(host)
        self.transfer.host = host
        self._host_ssl = host.ssl_context

    async def prepare(self, spec: TaskSpec) -> None:
        """Download the task's environment image from the host when it is missing here."""
        if spec.fetch is None or not spec.image:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.transfer.ensure, spec.image, spec.fetch)
        except DockerError as exc:
            raise TaskStartError(exc.message) from exc

    async def start(self, spec: TaskSpec) -> None:
        task_id = spec.task_id
        path = self._dir(task_id)
        if task_id in self._starting or path.exists():
            return
        self._loop = asyncio.get_running_loop()
        self._starting.add(task_id)
        try:
            host_url = await self._container_host_url()
            await self._call(self._start_sync, spec, path, host_url)
        except (DockerError, OSError) as exc:
            message = exc.message if isinstance(exc, DockerError) else f"cannot start: {exc}"
            exit_code = await self._discard_failed(task_id)
            info = {"exit_code": exit_code, "start_error": message}
            if path.is_dir():
                taskdir.write_json_atomic(path / taskdir.EXIT, info)
            raise TaskStartError(message, exit_code) from exc
        finally:
            self._starting.discard(task_id)
        self._watch(task_id, paused=False)
        self.events.put_nowait(TaskEvent(task_id, "running", ssh_port=self._ssh_port(task_id)))

    async def _container_host_url(self) -> str | None:
        """The host URL as containers reach it: a loopback ``host_url`` through the relay.

        With ``network_mode`` ``host`` (or ``job_relay`` off) it is ``host_url`` itself:
        then the container shares the node's loopback (docs/docker.md says what that
        exposes)."""
        host_url = self.options.get("host_url")
        if not host_url:
            return None
        host_url = str(host_url)
        mode = self.docker_options.network_mode or "bridge"
        if not self.docker_options.job_relay or not is_loopback_url(host_url):
            return host_url
        if mode in ("host", "none") or ":" in mode:  # container:<id>: its network decides
            return host_url
        if self._relay is None:
            self._relay = JobRelay(
                host_url, self.state_dir / "relay.json", self._host_ssl, self.log
            )
        if self._relay.url is None:
            gateway = await self._call(self.engine.network_gateway, mode)
            await self._relay.start(gateway)
        return self._relay.url

    def _start_sync(self, spec: TaskSpec, path: Path, host_url: str | None) -> None:
        path.mkdir(parents=True)
        data = spec.model_dump(mode="json")
        data["node"] = self.node
        taskdir.write_json_atomic(path / taskdir.SPEC, data)
        for stream in taskdir.STREAMS:
            (path / stream).touch()
        image = spec.image or self.docker_options.default_image
        if spec.vps is not None and spec.vps.restore_snapshot:
            image = self.snapshots.latest(spec.task_id) or image
        if not image:
            raise ContainerCreationError("the task names no image (and no default_image is set)")
        if not self.engine.image_present(image):
            if not self.docker_options.pull:
                raise ImageNotFoundError(f"image {image} not found on node {self.node}")
            self.engine.pull(image)
        name = self._names[spec.task_id] = task_container_name(spec.task_id, spec.task_type)
        vps = spec.vps
        self.engine.create(
            name=name,
            image=image,
            command=VPS_COMMAND if vps is not None else list(spec.command),
            labels=labels(spec.task_id, spec.task_type, self.node),
            env=self._env(spec, host_url),
            workdir=spec.workdir,
            cores=list(spec.cores),
            numa=spec.numa,
            memory=spec.memory,
            gpus=list(spec.gpus),
            mounts=[(m.source, m.target, m.read_only) for m in spec.mounts],
            ports={SSH_PORT: (self.docker_options.ssh_address, None)} if vps else None,
            hostname=name if vps else None,
            kind="vps" if vps is not None else "command",
        )
        if vps is not None:
            self.engine.put_file(name, AUTHORIZED_KEYS, authorized_keys(vps.ssh_public_keys))
        self.engine.start(name)
        if vps is not None:
            port = self.engine.host_port(name, SSH_PORT)
            taskdir.write_json_atomic(path / taskdir.VPS, {"ssh_port": port, "image": image})

    def _env(self, spec: TaskSpec, host_url: str | None = None) -> dict[str, str]:
        """User env plus ours; the runner's own environment (token included) never enters."""
        env = dict(spec.env)
        env["KOHAKURIVER_TASK_ID"] = str(spec.task_id)
        env["KOHAKURIVER_NODE"] = self.node
        if host_url:  # the host as the container reaches it (the relay for a loopback one)
            env["KOHAKURIVER_URL"] = host_url
        if spec.gpus:
            # The device request exposes exactly these GPUs, renumbered from 0 inside.
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(len(spec.gpus)))
        else:
            env["CUDA_VISIBLE_DEVICES"] = ""
            env["NVIDIA_VISIBLE_DEVICES"] = "void"  # CUDA images default to "all"
        return env

    async def _discard_failed(self, task_id: int) -> int | None:
        """Remove a container that failed to start; its exit code when Docker set one."""
        name = self._name(task_id)
        exit_code: int | None = None
        try:
            state = (await self._call(self.engine.inspect, name))["State"]
            code = state.get("ExitCode")
            exit_code = code if isinstance(code, int) and code != 0 else None
            await self._call(self.engine.remove, name)
        except DockerError:
            pass
        return exit_code

    async def _send_kill(self, task_id: int, grace: float, paused: bool) -> None:
        name = self._name(task_id)
        if paused:
            await self._ignore_conflict(self.engine.unpause, name)
        if grace <= 0:
            await self._ignore_conflict(self.engine.kill, name)
            return

        def stop() -> None:  # docker stop blocks for up to the grace: not on the agent's path
            try:
                self.engine.stop(name, grace)
            except DockerError as exc:
                self.log.warning("cannot stop task %s: %s", task_id, exc)

        threading.Thread(target=stop, name=f"docker-stop-{task_id}", daemon=True).start()

    async def _apply_paused(self, task_id: int, paused: bool) -> None:
        name = self._name(task_id)
        await self._ignore_conflict(self.engine.pause if paused else self.engine.unpause, name)
        watch = self._watches.get(task_id)
        if watch is not None:
            watch.paused = paused

    async def forget(self, task_id: int) -> None:
        path = self._dir(task_id)
        if not path.exists():
            return
        report = self._report(task_id)
        killing = (path / taskdir.KILL).exists()
        if report is not None and report.state in ALIVE and not killing:
            raise InvalidTaskState(f"task {task_id} is still {report.state}; kill it first")
        watch = self._watches.pop(task_id, None)
        if watch is not None:
            watch.close()  # a task being killed is removed below: no final report follows
        await self._call(self.engine.remove, self._name(task_id))
        await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, path, True)
        self._names.pop(task_id, None)

    async def handle_request(self, request: Request) -> dict[str, Any]:
        """Environment containers and VPS snapshots (in a thread: commits take a while)."""
        loop = asyncio.get_running_loop()
        envs = self.environments
        if isinstance(request, EnvCreate):
            return await loop.run_in_executor(None, envs.create, request)
        if isinstance(request, EnvExec):
            return await loop.run_in_executor(None, envs.exec, request)
        if isinstance(request, EnvCommit):
            return await loop.run_in_executor(None, envs.commit, request)
        if isinstance(request, EnvRemove):
            return await loop.run_in_executor(None, envs.remove, request)
        assert isinstance(request, Snapshot)
        return await loop.run_in_executor(None, self._snapshot, request)

    def _snapshot(self, request: Snapshot) -> dict[str, Any]:
        task_id = request.task_id
        if request.action == "create":
            report = self._report(task_id)
            if report is None or report.state not in ALIVE:
                raise InvalidTaskState(f"VPS {task_id} is not running on node {self.node}")
            self.snapshots.create(task_id, self._name(task_id))
        elif request.action == "delete":
            self.snapshots.delete(task_id, request.tag or "")
        return {"snapshots": self.snapshots.list(task_id)}

    async def images(self) -> list[str]:
        try:
            return await self._call(self.engine.image_tags)
        except DockerError as exc:
            self.log.warning("cannot list images: %s", exc.message)
            return []

    # =========================================================================
    # Internals
    # =========================================================================

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def _ignore_conflict(self, fn: Callable[[str], None], name: str) -> None:
        """Run a container order; "already paused" / "not running" answers are fine."""
        try:
            await self._call(fn, name)
        except ContainerNotFoundError:
            raise
        except DockerError as exc:
            text = exc.message.lower()
            if not any(s in text for s in ("is not running", "is already paused", "not paused")):
                raise

    def _name(self, task_id: int) -> str:
        """The task's container name (a VPS's differs), from memory or its spec."""
        name = self._names.get(task_id)
        if name is None:
            spec = taskdir.read_json(self._dir(task_id) / taskdir.SPEC)
            task_type = spec.get("task_type", "command") if isinstance(spec, dict) else "command"
            name = self._names[task_id] = task_container_name(task_id, str(task_type))
        return name

    def _snapshot_on_stop(self, task_id: int) -> str:
        """Commit a stopped VPS (called by its watcher before the exit is recorded)."""
        return self.snapshots.create(task_id, self._name(task_id))

    def _watch(self, task_id: int, *, paused: bool) -> None:
        watch = ContainerWatch(
            engine=self.engine,
            task_id=task_id,
            name=self._name(task_id),
            path=self._dir(task_id),
            on_exit=self._on_exit_threadsafe,
            log=self.log,
            snapshot=self._snapshot_on_stop,
        )
        watch.paused = paused
        self._watches[task_id] = watch
        watch.start()

    def _on_exit_threadsafe(self, task_id: int) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._on_exit, task_id)
        except RuntimeError:  # the loop is closed: the next runner recovers it
            pass

    def _live_state(self, task_id: int) -> RunnerTaskState | None:
        watch = self._watches.get(task_id)  # its watcher writes the exit record
        return "paused" if watch is not None and watch.paused else "running"

    def _on_exit(self, task_id: int) -> None:
        watch = self._watches.get(task_id)
        if watch is None or watch.closed:
            return  # forgotten or closed meanwhile
        del self._watches[task_id]
        self._emit_final(task_id)


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None
