"""Python client for the kohakuriver-lab REST API, sync (:class:`Client`) and async (:class:`AsyncClient`).

Both execute the request descriptions in :mod:`kohakuriver_lab._http`, so every endpoint is
written once. With no arguments the host is found from ``KOHAKURIVER_URL`` /
``KOHAKURIVER_TOKEN`` (set in kernels the host starts), else ``~/.config/kohakuriver/client.json``.
For an ``https://`` host with a certificate from a private CA, pass ``ca_file=`` (or set
``KOHAKURIVER_CA_FILE``, or ``"ca_file"`` in the config file); see ``docs/security.md``.

    >>> from kohakuriver_lab.client import Client
    >>> with Client() as kr:
    ...     job = kr.submit(["python", "train.py"], gpus=1, memory="8G")
    ...     info = kr.wait(job.task_ids[0])
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx
from typing_extensions import Self

from kohakuriver_lab import __version__
from kohakuriver_lab import _http as api
from kohakuriver_lab._client_config import ClientConfig, ClientConfigError, resolve_config
from kohakuriver_lab._http import (
    BadResponse,
    Call,
    HostUnreachable,
    StatusFilter,
    TaskRef,
    WaitTimeout,
    check_response,
    unreachable,
)
from kohakuriver_lab._ws import LoopThread, follow
from kohakuriver_lab.models import (
    EnvironmentExecResult,
    EnvironmentInfo,
    EnvironmentVersionInfo,
    LogChunk,
    NodeInfo,
    RunnerTokenInfo,
    SnapshotInfo,
    SubmitResult,
    TaskEventInfo,
    TaskInfo,
    TaskPage,
)

__all__ = [
    "AsyncClient",
    "BadResponse",
    "Client",
    "ClientConfigError",
    "HostUnreachable",
    "WaitTimeout",
]

T = TypeVar("T")


class _ClientBase:
    """Configuration shared by both clients."""

    def __init__(
        self, url: str | None, token: str | None, timeout: float, ca_file: str | None = None
    ) -> None:
        self.config: ClientConfig = resolve_config(url, token, ca_file)
        self.timeout = timeout

    @property
    def _verify(self) -> ssl.SSLContext | bool:
        """httpx's ``verify``: a context trusting the configured CA file, else the defaults."""
        return self.config.ssl_context() or True

    @property
    def url(self) -> str:
        """The host's Jupyter base URL."""
        return self.config.url

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"kohakuriver-lab-client/{__version__}"}
        headers.update(self.config.auth_headers())
        return headers

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.config.url!r})"


# =============================================================================
# Sync
# =============================================================================


class Client(_ClientBase):
    """Blocking client; safe to use in a Jupyter kernel (log following runs in its own thread)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30,
        *,
        ca_file: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, token, timeout, ca_file)
        self._http = httpx.Client(
            base_url=self.config.api_url,
            headers=self._headers(),
            timeout=timeout,
            verify=self._verify,
            transport=transport,
        )
        self._loop = LoopThread()

    def _run(self, call: Call[T]) -> T:
        try:
            response = self._http.request(
                call.method,
                call.path,
                params=call.params or None,
                json=call.json,
                timeout=call.timeout or self.timeout,
            )
        except httpx.TransportError as exc:
            raise unreachable(self.config.url, exc) from exc
        check_response(response)
        return call.parse(response)

    def close(self) -> None:
        """Close the HTTP connections and the log-following thread."""
        self._http.close()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----- tasks -----

    def submit(
        self,
        command: Sequence[str],
        *,
        name: str | None = None,
        cores: int | None = None,
        memory: int | str | None = None,
        gpus: Sequence[int] | int | None = None,
        targets: Sequence[str] | str | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        priority: int | None = None,
        backend: str | None = None,
        task_type: str | None = None,
        image: str | None = None,
        environment: str | None = None,
        mounts: Sequence[str] | None = None,
    ) -> SubmitResult:
        """Submit ``command`` (an argv list); one task per target, all in one batch.
        ``image`` or ``environment`` (``name`` or ``name:tag``) run it in a container."""
        return self._run(api.submit(
            command, name=name, cores=cores, memory=memory, gpus=gpus, targets=targets, env=env,
            workdir=workdir, priority=priority, backend=backend, task_type=task_type,
            image=image, environment=environment, mounts=mounts,
        ))  # fmt: skip

    def list_tasks(
        self,
        *,
        status: StatusFilter = None,
        node: str | None = None,
        owner: str | None = None,
        batch: TaskRef | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of tasks, newest first; pass ``page.next_cursor`` as ``cursor`` for more."""
        return self._run(api.list_tasks(
            status=status, node=node, owner=owner, batch=batch, limit=limit, cursor=cursor
        ))  # fmt: skip

    def iter_tasks(
        self,
        *,
        status: StatusFilter = None,
        node: str | None = None,
        owner: str | None = None,
        batch: TaskRef | None = None,
        limit: int | None = None,
    ) -> Iterator[TaskInfo]:
        """Every matching task, following cursors (``limit`` is the page size)."""
        cursor: str | None = None
        while True:
            page = self.list_tasks(
                status=status, node=node, owner=owner, batch=batch, limit=limit, cursor=cursor
            )
            yield from page.tasks
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def get_task(self, task_id: TaskRef) -> TaskInfo:
        """One task."""
        return self._run(api.get_task(task_id))

    def events(self, task_id: TaskRef) -> list[TaskEventInfo]:
        """A task's recorded status transitions, oldest first."""
        return self._run(api.task_events(task_id))

    def kill(self, task_id: TaskRef) -> TaskInfo:
        """Ask the host to kill a task (returns at once; the task ends shortly)."""
        return self._run(api.task_action(task_id, "kill"))

    def pause(self, task_id: TaskRef) -> TaskInfo:
        """Freeze a running task."""
        return self._run(api.task_action(task_id, "pause"))

    def resume(self, task_id: TaskRef) -> TaskInfo:
        """Thaw a paused task."""
        return self._run(api.task_action(task_id, "resume"))

    def logs(
        self, task_id: TaskRef, stream: str = "stdout", offset: int = 0, limit: int | None = None
    ) -> LogChunk:
        """Stored output from byte ``offset``; continue at ``chunk.next_offset``."""
        return self._run(api.logs(task_id, stream, offset, limit))

    def follow_logs(
        self, task_id: TaskRef, stream: str = "both", offset: int = 0
    ) -> Iterator[tuple[str, str]]:
        """Live output as ``(stream, text)`` until the task ends."""
        return self._loop.iterate(follow(self.config, task_id, stream, offset, self.timeout))

    def wait(self, task_id: TaskRef, timeout: float | None = None, poll: float = 0.5) -> TaskInfo:
        """Poll until the task's status is final; raises :class:`WaitTimeout` after ``timeout``."""
        delays = api.poll_delays(task_id, poll, timeout)
        while True:
            info = self.get_task(task_id)
            if info.status.is_final:
                return info
            time.sleep(next(delays))

    # ----- notebook jobs, artifacts, results -----

    def submit_request(self, body: Mapping[str, Any]) -> SubmitResult:
        """Submit a prepared ``POST /tasks`` body (e.g. with ``image``)."""
        return self._run(api.submit_request(body))

    def submit_notebook(
        self,
        notebook: Mapping[str, Any],
        *,
        parameters: Mapping[str, Any] | None = None,
        parameter_sets: Sequence[Mapping[str, Any]] | None = None,
        **fields: Any,
    ) -> SubmitResult:
        """Submit a notebook job (nbformat v4 dict); ``parameter_sets`` makes a sweep batch."""
        return self._run(api.submit_notebook(
            notebook, parameters=parameters, parameter_sets=parameter_sets, **fields
        ))  # fmt: skip

    def artifact(self, task_id: TaskRef, name: str = "output.ipynb") -> bytes:
        """A stored artifact of a task (e.g. the executed notebook)."""
        return self._run(api.get_artifact(task_id, name))

    def results(self, task_id: TaskRef) -> dict[str, Any]:
        """The results a task recorded with ``kohakuriver_lab.glue``."""
        return self._run(api.get_results(task_id))

    def batch_results(self, batch_id: TaskRef) -> list[dict[str, Any]]:
        """Per-task ``{task_id, status, parameters, results}`` of a batch (a sweep)."""
        return self._run(api.batch_results(batch_id))

    # ----- nodes, tokens, schema -----

    def list_nodes(self) -> list[NodeInfo]:
        """Every node the host knows."""
        return self._run(api.list_nodes())

    def get_node(self, name: str) -> NodeInfo:
        """One node, with its recent metrics history."""
        return self._run(api.get_node(name))

    def create_runner_token(self, name: str, node: str | None = None) -> RunnerTokenInfo:
        """A new runner token; ``.token`` holds the secret and is shown only this once."""
        return self._run(api.create_runner_token(name, node))

    def list_runner_tokens(self) -> list[RunnerTokenInfo]:
        """Runner tokens, without secrets."""
        return self._run(api.list_runner_tokens())

    def revoke_runner_token(self, token_id: TaskRef) -> None:
        """Revoke a runner token."""
        self._run(api.revoke_runner_token(token_id))

    # ----- environments -----

    def create_environment(self, name: str, image: str, node: str | None = None) -> EnvironmentInfo:
        """Start environment ``name``'s container from ``image`` on a docker node."""
        return self._run(api.create_environment(name, image, node))

    def list_environments(self) -> list[EnvironmentInfo]:
        """Every environment with its versions."""
        return self._run(api.list_environments())

    def get_environment(self, name: str) -> EnvironmentInfo:
        """One environment."""
        return self._run(api.get_environment(name))

    def env_exec(
        self,
        name: str,
        command: Sequence[str],
        *,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> EnvironmentExecResult:
        """Run an argv in the environment's container (e.g. ``["pip", "install", "x"]``)."""
        return self._run(api.environment_exec(name, command, workdir, env, timeout))

    def commit_environment(self, name: str, tag: str | None = None) -> EnvironmentVersionInfo:
        """Commit the container as a new version (stored by the host, fetched by nodes)."""
        return self._run(api.commit_environment(name, tag))

    def delete_environment(self, name: str, *, versions: bool = False) -> None:
        """Remove the container (and with ``versions`` every stored version)."""
        self._run(api.delete_environment(name, versions))

    def delete_environment_version(self, name: str, version: int) -> None:
        """Delete one stored version."""
        self._run(api.delete_environment_version(name, version))

    # ----- Docker VPS -----

    def stop_vps(self, task_id: TaskRef, *, snapshot: bool = True) -> TaskInfo:
        """Stop a VPS, committing a snapshot first unless ``snapshot=False``."""
        return self._run(api.stop_vps(task_id, snapshot))

    def start_vps(self, task_id: TaskRef) -> TaskInfo:
        """Start a stopped VPS again from its latest snapshot."""
        return self._run(api.task_action(task_id, "start"))

    def list_snapshots(self, task_id: TaskRef) -> list[SnapshotInfo]:
        """A VPS's snapshots on its node, oldest first."""
        return self._run(api.snapshots(task_id))

    def create_snapshot(self, task_id: TaskRef) -> list[SnapshotInfo]:
        """Snapshot a running VPS; its snapshots afterwards."""
        return self._run(api.snapshots(task_id, "POST"))

    def delete_snapshot(self, task_id: TaskRef, tag: str) -> None:
        """Delete one snapshot."""
        self._run(api.delete_snapshot(task_id, tag))

    def me(self) -> str:
        """Who this client is to the cluster (the owner name of its tasks)."""
        return self._run(api.me())

    def openapi(self) -> dict[str, Any]:
        """The host's OpenAPI document."""
        return self._run(api.openapi())


# =============================================================================
# Async
# =============================================================================


class AsyncClient(_ClientBase):
    """Asyncio client with the same methods as :class:`Client`, as coroutines."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30,
        *,
        ca_file: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, token, timeout, ca_file)
        self._http = httpx.AsyncClient(
            base_url=self.config.api_url,
            headers=self._headers(),
            timeout=timeout,
            verify=self._verify,
            transport=transport,
        )

    async def _run(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method,
                call.path,
                params=call.params or None,
                json=call.json,
                timeout=call.timeout or self.timeout,
            )
        except httpx.TransportError as exc:
            raise unreachable(self.config.url, exc) from exc
        check_response(response)
        return call.parse(response)

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ----- tasks -----

    async def submit(
        self,
        command: Sequence[str],
        *,
        name: str | None = None,
        cores: int | None = None,
        memory: int | str | None = None,
        gpus: Sequence[int] | int | None = None,
        targets: Sequence[str] | str | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        priority: int | None = None,
        backend: str | None = None,
        task_type: str | None = None,
        image: str | None = None,
        environment: str | None = None,
        mounts: Sequence[str] | None = None,
    ) -> SubmitResult:
        """Submit ``command`` (an argv list); one task per target, all in one batch.
        ``image`` or ``environment`` (``name`` or ``name:tag``) run it in a container."""
        return await self._run(api.submit(
            command, name=name, cores=cores, memory=memory, gpus=gpus, targets=targets, env=env,
            workdir=workdir, priority=priority, backend=backend, task_type=task_type,
            image=image, environment=environment, mounts=mounts,
        ))  # fmt: skip

    async def list_tasks(
        self,
        *,
        status: StatusFilter = None,
        node: str | None = None,
        owner: str | None = None,
        batch: TaskRef | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of tasks, newest first; pass ``page.next_cursor`` as ``cursor`` for more."""
        return await self._run(api.list_tasks(
            status=status, node=node, owner=owner, batch=batch, limit=limit, cursor=cursor
        ))  # fmt: skip

    async def iter_tasks(
        self,
        *,
        status: StatusFilter = None,
        node: str | None = None,
        owner: str | None = None,
        batch: TaskRef | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[TaskInfo]:
        """Every matching task, following cursors (``limit`` is the page size)."""
        cursor: str | None = None
        while True:
            page = await self.list_tasks(
                status=status, node=node, owner=owner, batch=batch, limit=limit, cursor=cursor
            )
            for task in page.tasks:
                yield task
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def get_task(self, task_id: TaskRef) -> TaskInfo:
        """One task."""
        return await self._run(api.get_task(task_id))

    async def events(self, task_id: TaskRef) -> list[TaskEventInfo]:
        """A task's recorded status transitions, oldest first."""
        return await self._run(api.task_events(task_id))

    async def kill(self, task_id: TaskRef) -> TaskInfo:
        """Ask the host to kill a task (returns at once; the task ends shortly)."""
        return await self._run(api.task_action(task_id, "kill"))

    async def pause(self, task_id: TaskRef) -> TaskInfo:
        """Freeze a running task."""
        return await self._run(api.task_action(task_id, "pause"))

    async def resume(self, task_id: TaskRef) -> TaskInfo:
        """Thaw a paused task."""
        return await self._run(api.task_action(task_id, "resume"))

    async def logs(
        self, task_id: TaskRef, stream: str = "stdout", offset: int = 0, limit: int | None = None
    ) -> LogChunk:
        """Stored output from byte ``offset``; continue at ``chunk.next_offset``."""
        return await self._run(api.logs(task_id, stream, offset, limit))

    def follow_logs(
        self, task_id: TaskRef, stream: str = "both", offset: int = 0
    ) -> AsyncIterator[tuple[str, str]]:
        """Live output as ``(stream, text)`` until the task ends (``async for``)."""
        return follow(self.config, task_id, stream, offset, self.timeout)

    async def wait(
        self, task_id: TaskRef, timeout: float | None = None, poll: float = 0.5
    ) -> TaskInfo:
        """Poll until the task's status is final; raises :class:`WaitTimeout` after ``timeout``."""
        delays = api.poll_delays(task_id, poll, timeout)
        while True:
            info = await self.get_task(task_id)
            if info.status.is_final:
                return info
            await asyncio.sleep(next(delays))

    # ----- notebook jobs, artifacts, results -----

    async def submit_request(self, body: Mapping[str, Any]) -> SubmitResult:
        """Submit a prepared ``POST /tasks`` body (e.g. with ``image``)."""
        return await self._run(api.submit_request(body))

    async def submit_notebook(
        self,
        notebook: Mapping[str, Any],
        *,
        parameters: Mapping[str, Any] | None = None,
        parameter_sets: Sequence[Mapping[str, Any]] | None = None,
        **fields: Any,
    ) -> SubmitResult:
        """Submit a notebook job (nbformat v4 dict); ``parameter_sets`` makes a sweep batch."""
        return await self._run(api.submit_notebook(
            notebook, parameters=parameters, parameter_sets=parameter_sets, **fields
        ))  # fmt: skip

    async def artifact(self, task_id: TaskRef, name: str = "output.ipynb") -> bytes:
        """A stored artifact of a task (e.g. the executed notebook)."""
        return await self._run(api.get_artifact(task_id, name))

    async def results(self, task_id: TaskRef) -> dict[str, Any]:
        """The results a task recorded with ``kohakuriver_lab.glue``."""
        return await self._run(api.get_results(task_id))

    async def batch_results(self, batch_id: TaskRef) -> list[dict[str, Any]]:
        """Per-task ``{task_id, status, parameters, results}`` of a batch (a sweep)."""
        return await self._run(api.batch_results(batch_id))

    # ----- nodes, tokens, schema -----

    # ----- environments -----

    async def create_environment(
        self, name: str, image: str, node: str | None = None
    ) -> EnvironmentInfo:
        """Start environment ``name``'s container from ``image`` on a docker node."""
        return await self._run(api.create_environment(name, image, node))

    async def list_environments(self) -> list[EnvironmentInfo]:
        """Every environment with its versions."""
        return await self._run(api.list_environments())

    async def get_environment(self, name: str) -> EnvironmentInfo:
        """One environment."""
        return await self._run(api.get_environment(name))

    async def env_exec(
        self,
        name: str,
        command: Sequence[str],
        *,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> EnvironmentExecResult:
        """Run an argv in the environment's container (e.g. ``["pip", "install", "x"]``)."""
        return await self._run(api.environment_exec(name, command, workdir, env, timeout))

    async def commit_environment(self, name: str, tag: str | None = None) -> EnvironmentVersionInfo:
        """Commit the container as a new version (stored by the host, fetched by nodes)."""
        return await self._run(api.commit_environment(name, tag))

    async def delete_environment(self, name: str, *, versions: bool = False) -> None:
        """Remove the container (and with ``versions`` every stored version)."""
        await self._run(api.delete_environment(name, versions))

    async def delete_environment_version(self, name: str, version: int) -> None:
        """Delete one stored version."""
        await self._run(api.delete_environment_version(name, version))

    # ----- Docker VPS -----

    async def stop_vps(self, task_id: TaskRef, *, snapshot: bool = True) -> TaskInfo:
        """Stop a VPS, committing a snapshot first unless ``snapshot=False``."""
        return await self._run(api.stop_vps(task_id, snapshot))

    async def start_vps(self, task_id: TaskRef) -> TaskInfo:
        """Start a stopped VPS again from its latest snapshot."""
        return await self._run(api.task_action(task_id, "start"))

    async def list_snapshots(self, task_id: TaskRef) -> list[SnapshotInfo]:
        """A VPS's snapshots on its node, oldest first."""
        return await self._run(api.snapshots(task_id))

    async def create_snapshot(self, task_id: TaskRef) -> list[SnapshotInfo]:
        """Snapshot a running VPS; its snapshots afterwards."""
        return await self._run(api.snapshots(task_id, "POST"))

    async def delete_snapshot(self, task_id: TaskRef, tag: str) -> None:
        """Delete one snapshot."""
        await self._run(api.delete_snapshot(task_id, tag))

    async def me(self) -> str:
        """Who this client is to the cluster (the owner name of its tasks)."""
        return await self._run(api.me())

    async def list_nodes(self) -> list[NodeInfo]:
        """Every node the host knows."""
        return await self._run(api.list_nodes())

    async def get_node(self, name: str) -> NodeInfo:
        """One node, with its recent metrics history."""
        return await self._run(api.get_node(name))

    async def create_runner_token(self, name: str, node: str | None = None) -> RunnerTokenInfo:
        """A new runner token; ``.token`` holds the secret and is shown only this once."""
        return await self._run(api.create_runner_token(name, node))

    async def list_runner_tokens(self) -> list[RunnerTokenInfo]:
        """Runner tokens, without secrets."""
        return await self._run(api.list_runner_tokens())

    async def revoke_runner_token(self, token_id: TaskRef) -> None:
        """Revoke a runner token."""
        await self._run(api.revoke_runner_token(token_id))

    async def openapi(self) -> dict[str, Any]:
        """The host's OpenAPI document."""
        return await self._run(api.openapi())
