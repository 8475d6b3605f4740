"""The notebook-facing API: :class:`Cluster` (blocking) and :class:`AsyncCluster` (asyncio).

    >>> from kohakuriver_lab import Cluster
    >>> cluster = Cluster()                      # host from KOHAKURIVER_URL / _TOKEN
    >>> task = cluster.submit(["python", "train.py"], gpus=1, memory="8G")
    >>> task.wait().status, task.logs()
    >>> job = cluster.run_notebook("train.ipynb", {"lr": 0.1})
    >>> job.wait(); job.result()                 # what the notebook glued
    >>> sweep = cluster.sweep("train.ipynb", {"lr": [0.1, 0.01], "seed": [0, 1]})
    >>> sweep.results()                          # DataFrame (pandas) or list of dicts

In a notebook a :class:`Task` or :class:`Sweep` displays as a live widget. Waiting uses the
shared live-events socket (with a slow poll as a safety net), not a poll per task.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import os
import shlex
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kohakuriver_lab._events import EventHub, get_hub
from kohakuriver_lab._http import TaskRef, WaitTimeout
from kohakuriver_lab.client import AsyncClient, Client
from kohakuriver_lab.errors import InvalidRequest, NotFound
from kohakuriver_lab.models import MAX_ARGV_BYTES, NodeInfo, SubmitResult, TaskInfo

__all__ = ["AsyncCluster", "AsyncSweep", "AsyncTask", "Cluster", "Sweep", "Task"]

PYTHON_ENV = "KOHAKURIVER_PYTHON"
FALLBACK_POLL = 5.0
RESOURCE_FIELDS = (
    "name",
    "cores",
    "memory",
    "gpus",
    "targets",
    "env",
    "image",
    "environment",
    "mounts",
    "workdir",
    "priority",
    "backend",
)


# =============================================================================
# Shared helpers
# =============================================================================


def _resources(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(RESOURCE_FIELDS)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    body = {k: v for k, v in fields.items() if v is not None}
    if isinstance(body.get("targets"), str):
        body["targets"] = [body["targets"]]
    if "gpus" in body and not isinstance(body["gpus"], int):
        body["gpus"] = list(body["gpus"])
    if "env" in body:
        body["env"] = dict(body["env"])
    return body


def command_body(
    command: Sequence[str] | str, *, shell: bool = False, **fields: Any
) -> dict[str, Any]:
    """The ``POST /tasks`` body for a command (a string is split like a shell would,
    or run by ``bash -c`` with ``shell=True``)."""
    if isinstance(command, str):
        argv = ["bash", "-c", command] if shell else shlex.split(command)
    else:
        argv = list(command)
        if shell:
            argv = ["bash", "-c", shlex.join(argv)]
    if not argv:
        raise InvalidRequest("empty command: give the program and its arguments")
    return {"command": argv, **_resources(fields)}


def code_body(
    source: str, *, shell: bool = False, python: str | None = None, **fields: Any
) -> dict[str, Any]:
    """The body that runs ``source`` as a Python script (``python -c``) or a bash script."""
    if not source.strip():
        raise InvalidRequest("the cell is empty: nothing to run")
    interpreter = python or os.environ.get(PYTHON_ENV) or "python3"
    argv = ["bash", "-c", source] if shell else [interpreter, "-c", source]
    if len(source.encode()) > MAX_ARGV_BYTES - 64:
        raise InvalidRequest(
            f"the script is {len(source.encode()) // 1024} KiB; commands are limited to 128 KiB "
            "(put the code in a file on shared storage and submit `python file.py`)"
        )
    return {"command": argv, **_resources(fields)}


def load_notebook(notebook: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """A notebook as an nbformat v4 dict, from a path or a dict."""
    if isinstance(notebook, Mapping):
        nb = dict(notebook)
    else:
        path = Path(notebook).expanduser()
        if not path.is_file():
            raise InvalidRequest(f"notebook {str(path)!r} not found")
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InvalidRequest(f"{path} is not a notebook (invalid JSON: {exc})") from None
    if not isinstance(nb, dict) or nb.get("nbformat") != 4 or not isinstance(nb.get("cells"), list):
        raise InvalidRequest("a notebook must be nbformat v4 JSON (with 'cells' and 'nbformat': 4)")
    return nb


def _notebook_name(notebook: Any) -> str | None:
    if isinstance(notebook, str | os.PathLike):
        return Path(notebook).name
    return None


def _named(resources: dict[str, Any], notebook: Any) -> dict[str, Any]:
    """A notebook job is named after its file (``train.ipynb``) unless a name is given."""
    if not resources.get("name"):
        resources["name"] = _notebook_name(notebook)
    return resources


def as_notebook(raw: bytes | str) -> Any:
    """An executed notebook's JSON as an ``nbformat`` NotebookNode (a dict without nbformat)."""
    data = json.loads(raw)
    try:
        nbformat: Any = importlib.import_module("nbformat")
    except ImportError:
        return data
    return nbformat.from_dict(data)


def grid_sets(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of a parameter grid, in order: ``{"a": [1, 2], "b": [3]}`` → 2 sets."""
    names = list(grid)
    for name in names:
        values = grid[name]
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
            raise InvalidRequest(f"sweep parameter {name!r} needs a non-empty list of values")
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


def results_table(rows: list[dict[str, Any]]) -> Any:
    """Flatten per-task results into a table: a pandas DataFrame if pandas is installed."""
    flat = []
    for row in rows:
        record: dict[str, Any] = {"task_id": str(row.get("task_id")), "status": row.get("status")}
        record.update(row.get("parameters") or {})
        record.update(row.get("results") or {})
        flat.append(record)
    try:
        pandas: Any = importlib.import_module("pandas")
    except ImportError:
        return flat
    return pandas.DataFrame(flat)


def sweep_sets(
    grid: Mapping[str, Sequence[Any]] | None,
    parameter_sets: Sequence[Mapping[str, Any]] | None,
) -> list[dict[str, Any]]:
    """A sweep's parameter sets: ``parameter_sets``, ``grid``'s combinations, or every set
    crossed with every combination when both are given."""
    sets = [dict(p) for p in parameter_sets] if parameter_sets is not None else []
    if grid:
        combos = grid_sets(grid)
        sets = combos if not sets else [{**s, **g} for s in sets for g in combos]
    if not sets:
        raise InvalidRequest("a sweep needs a grid or parameter_sets")
    return sets


def _final(info: TaskInfo) -> bool:
    return info.status.is_final


def _in_kernel() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()  # type: ignore[attr-defined]
    return ip is not None and getattr(ip, "kernel", None) is not None


# =============================================================================
# Sync
# =============================================================================


class Task:
    """A handle on one task; displays as a live widget in a notebook."""

    def __init__(self, cluster: Cluster, task_id: TaskRef, info: TaskInfo | None = None) -> None:
        self.cluster = cluster
        self.task_id = int(task_id)
        self._info = info
        self._widget: Any = None

    @property
    def id(self) -> int:
        """Deprecated alias of :attr:`task_id`."""
        warnings.warn("Task.id is deprecated: use Task.task_id", DeprecationWarning, stacklevel=2)
        return self.task_id

    @property
    def info(self) -> TaskInfo:
        """The last known state (fetched once if never seen)."""
        if self._info is None:
            self.refresh()
        assert self._info is not None
        return self._info

    def refresh(self) -> TaskInfo:
        """Re-read the task from the host."""
        self._info = self.cluster.client.get_task(self.task_id)
        return self._info

    @property
    def status(self) -> str:
        """The current status (re-read from the host)."""
        return self.refresh().status.value

    def wait(self, timeout: float | None = None) -> TaskInfo:
        """Block until the task ends (live events; a slow poll as a safety net)."""
        done = threading.Event()

        def on_event(frame: dict[str, Any]) -> None:
            if frame.get("type") == "task":
                info = TaskInfo.model_validate(frame["task"])
                self._info = info
                if _final(info):
                    done.set()
            elif frame.get("type") == "resync":
                done.set()  # re-read below

        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cluster.hub.watch_task(self.task_id, on_event):
            while True:
                info = self.refresh()
                if _final(info):
                    return info
                remaining = FALLBACK_POLL
                if deadline is not None:
                    remaining = min(remaining, deadline - time.monotonic())
                    if remaining <= 0:
                        raise WaitTimeout(f"task {self.task_id} did not finish within {timeout} s")
                done.wait(remaining)
                if done.is_set() and self._info is not None and _final(self._info):
                    return self._info
                done.clear()

    def logs(self, stream: str = "stdout") -> str:
        """All stored output of one stream so far."""
        parts: list[str] = []
        offset = 0
        while True:
            chunk = self.cluster.client.logs(self.task_id, stream, offset)
            parts.append(chunk.data)
            if chunk.next_offset == offset or not chunk.data:
                break
            offset = chunk.next_offset
        return "".join(parts)

    def follow(self, stream: str = "both", offset: int = 0) -> Iterator[tuple[str, str]]:
        """Live ``(stream, text)`` pairs until the task ends."""
        return self.cluster.client.follow_logs(self.task_id, stream, offset)

    def stream(self, out: Any = None, err: Any = None) -> TaskInfo:
        """Print the live output (stdout/stderr) until the task ends; returns the final state."""
        out = out or sys.stdout
        err = err or sys.stderr
        for name, text in self.follow():
            target = err if name == "stderr" else out
            target.write(text)
            target.flush()
        return self.wait()

    def kill(self) -> TaskInfo:
        """Ask the host to kill the task."""
        self._info = self.cluster.client.kill(self.task_id)
        return self._info

    def result(self, name: str | None = None) -> Any:
        """What the task glued: all results as a dict, or the one called ``name``."""
        results = self.cluster.client.results(self.task_id)
        if name is None:
            return results
        if name not in results:
            raise KeyError(
                f"task {self.task_id} recorded no result {name!r} (has: {sorted(results)})"
            )
        return results[name]

    def output_notebook(self) -> Any:
        """The executed notebook of a notebook job: an ``nbformat`` NotebookNode (``.cells``),
        or a dict without nbformat."""
        return as_notebook(self.cluster.client.artifact(self.task_id, "output.ipynb"))

    def widget(self) -> Any:
        """The live :class:`~kohakuriver_lab.widgets.TaskWidget` (one per handle)."""
        if self._widget is None:
            from kohakuriver_lab.widgets import TaskWidget

            self._widget = TaskWidget(self)
        return self._widget

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if _in_kernel():
            return self.widget()._repr_mimebundle_(**kwargs)
        return {"text/plain": repr(self)}

    def __repr__(self) -> str:
        info = self._info
        if info is None:
            return f"<Task {self.task_id} (state not read yet)>"
        name = f" {info.name!r}" if info.name else ""
        node = f" on {info.node}" if info.node else ""
        return f"<Task {self.task_id}{name} {info.status}{node}>"


class Sweep:
    """The tasks of a parameter sweep (one batch)."""

    def __init__(
        self, cluster: Cluster, result: SubmitResult, parameter_sets: list[dict[str, Any]]
    ) -> None:
        self.cluster = cluster
        self.batch_id = int(result.batch_id)
        self.tasks = [Task(cluster, t) for t in result.task_ids]
        self.parameter_sets = parameter_sets
        self._widget: Any = None

    def wait(self, timeout: float | None = None) -> list[TaskInfo]:
        """Block until every task ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        infos = []
        for task in self.tasks:
            left = None if deadline is None else max(0.001, deadline - time.monotonic())
            infos.append(task.wait(left))
        return infos

    def statuses(self) -> dict[str, int]:
        """How many tasks are in each status."""
        counts: dict[str, int] = {}
        for info in self.cluster.client.iter_tasks(batch=self.batch_id, limit=500):
            counts[info.status.value] = counts.get(info.status.value, 0) + 1
        return counts

    def results(self) -> Any:
        """One row per task: ``task_id``, ``status``, the parameters and the glued results."""
        try:
            rows = self.cluster.client.batch_results(self.batch_id)
        except NotFound:
            rows = [
                {
                    "task_id": t.task_id,
                    "status": t.refresh().status.value,
                    "parameters": p,
                    "results": t.result(),
                }
                for t, p in zip(self.tasks, self.parameter_sets, strict=False)
            ]
        return results_table(rows)

    def widget(self) -> Any:
        """The live :class:`~kohakuriver_lab.widgets.SweepWidget`."""
        if self._widget is None:
            from kohakuriver_lab.widgets import SweepWidget

            self._widget = SweepWidget(self)
        return self._widget

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if _in_kernel():
            return self.widget()._repr_mimebundle_(**kwargs)
        return {"text/plain": repr(self)}

    def __len__(self) -> int:
        return len(self.tasks)

    def __repr__(self) -> str:
        return f"<Sweep batch {self.batch_id}: {len(self.tasks)} tasks>"


class Cluster:
    """The cluster, from a notebook or a script (blocking calls)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        client: Client | None = None,
        python: str | None = None,
    ) -> None:
        self.client = client or Client(url, token)
        self.python = python
        self._username: str | None = None

    @property
    def hub(self) -> EventHub:
        """The process-wide live-events connection for this host."""
        return get_hub(self.client.config)

    # ----- submitting -----

    def submit(
        self, command: Sequence[str] | str, *, shell: bool = False, **resources: Any
    ) -> Task:
        """Run a command (argv list, or a string split like a shell; ``shell=True``: bash -c).

        Resources: ``name, cores, memory ("8G"), gpus (count or indices), targets, env (dict),
        image, workdir, priority, backend``.
        """
        return self._one(
            self.client.submit_request(command_body(command, shell=shell, **resources))
        )

    def submit_code(
        self, source: str, *, shell: bool = False, python: str | None = None, **resources: Any
    ) -> Task:
        """Run ``source`` as a Python script on the cluster (bash with ``shell=True``)."""
        body = code_body(source, shell=shell, python=python or self.python, **resources)
        return self._one(self.client.submit_request(body))

    def run_notebook(
        self,
        notebook: str | os.PathLike[str] | Mapping[str, Any],
        parameters: Mapping[str, Any] | None = None,
        **resources: Any,
    ) -> Task:
        """Execute a notebook with papermill on a node; ``task.output_notebook()`` afterwards."""
        _named(resources, notebook)
        result = self.client.submit_notebook(
            load_notebook(notebook), parameters=dict(parameters or {}), **_resources(resources)
        )
        return self._one(result)

    def sweep(
        self,
        notebook: str | os.PathLike[str] | Mapping[str, Any],
        grid: Mapping[str, Sequence[Any]] | None = None,
        *,
        parameter_sets: Sequence[Mapping[str, Any]] | None = None,
        **resources: Any,
    ) -> Sweep:
        """One notebook job per combination of ``grid`` (or per ``parameter_sets``), one batch."""
        sets = sweep_sets(grid, parameter_sets)
        _named(resources, notebook)
        result = self.client.submit_notebook(
            load_notebook(notebook), parameter_sets=sets, **_resources(resources)
        )
        return Sweep(self, result, sets)

    def _one(self, result: SubmitResult) -> Task:
        if len(result.task_ids) != 1:
            raise InvalidRequest(
                f"expected one task, the host created {len(result.task_ids)} (several targets?); "
                "use cluster.client.submit for multi-target batches"
            )
        task = Task(self, result.task_ids[0])
        task.refresh()  # so that its repr (and widget) start from the real state
        return task

    # ----- looking -----

    def task(self, task_id: TaskRef) -> Task:
        """A handle on an existing task."""
        task = Task(self, task_id)
        task.refresh()
        return task

    def tasks(
        self, *, mine: bool = False, status: str | None = None, limit: int = 50
    ) -> list[TaskInfo]:
        """Recent tasks, newest first."""
        owner = self.username() if mine else None
        page = self.client.list_tasks(status=status, owner=owner, limit=limit)
        return page.tasks

    def nodes(self) -> list[NodeInfo]:
        """Every node with its latest metrics."""
        return self.client.list_nodes()

    def username(self) -> str:
        """Who this client is to the cluster: the owner name of its tasks (``GET /me``)."""
        if self._username is None:
            self._username = self.client.me()
        return self._username

    def widget(self) -> Any:
        """A live :class:`~kohakuriver_lab.widgets.ClusterWidget` (nodes, CPU/memory/GPU bars)."""
        from kohakuriver_lab.widgets import ClusterWidget

        return ClusterWidget(self)

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"Cluster({self.client.url!r})"


# =============================================================================
# Async
# =============================================================================


class AsyncTask:
    """Async handle on one task."""

    def __init__(self, cluster: AsyncCluster, task_id: TaskRef) -> None:
        self.cluster = cluster
        self.task_id = int(task_id)
        self.info: TaskInfo | None = None

    @property
    def id(self) -> int:
        """Deprecated alias of :attr:`task_id`."""
        warnings.warn(
            "AsyncTask.id is deprecated: use AsyncTask.task_id", DeprecationWarning, stacklevel=2
        )
        return self.task_id

    async def refresh(self) -> TaskInfo:
        self.info = await self.cluster.client.get_task(self.task_id)
        return self.info

    async def wait(self, timeout: float | None = None) -> TaskInfo:
        """Until the task ends (live events, slow poll as a safety net)."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def on_event(frame: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(changed.set)

        deadline = None if timeout is None else loop.time() + timeout
        with self.cluster.hub.watch_task(self.task_id, on_event):
            while True:
                info = await self.refresh()
                if _final(info):
                    return info
                remaining = FALLBACK_POLL
                if deadline is not None:
                    remaining = min(remaining, deadline - loop.time())
                    if remaining <= 0:
                        raise WaitTimeout(f"task {self.task_id} did not finish within {timeout} s")
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
                changed.clear()

    async def logs(self, stream: str = "stdout") -> str:
        parts: list[str] = []
        offset = 0
        while True:
            chunk = await self.cluster.client.logs(self.task_id, stream, offset)
            parts.append(chunk.data)
            if chunk.next_offset == offset or not chunk.data:
                break
            offset = chunk.next_offset
        return "".join(parts)

    def follow(self, stream: str = "both", offset: int = 0) -> AsyncIterator[tuple[str, str]]:
        return self.cluster.client.follow_logs(self.task_id, stream, offset)

    async def kill(self) -> TaskInfo:
        self.info = await self.cluster.client.kill(self.task_id)
        return self.info

    async def result(self, name: str | None = None) -> Any:
        results = await self.cluster.client.results(self.task_id)
        return results if name is None else results[name]

    async def output_notebook(self) -> Any:
        """As :meth:`Task.output_notebook`."""
        return as_notebook(await self.cluster.client.artifact(self.task_id, "output.ipynb"))

    def __repr__(self) -> str:
        state = self.info.status if self.info else "(state not read yet: await refresh())"
        return f"<AsyncTask {self.task_id} {state}>"


class AsyncSweep:
    """Async handle on a sweep batch."""

    def __init__(
        self, cluster: AsyncCluster, result: SubmitResult, parameter_sets: list[dict[str, Any]]
    ) -> None:
        self.cluster = cluster
        self.batch_id = int(result.batch_id)
        self.tasks = [AsyncTask(cluster, t) for t in result.task_ids]
        self.parameter_sets = parameter_sets

    async def wait(self, timeout: float | None = None) -> list[TaskInfo]:
        return list(
            await asyncio.wait_for(asyncio.gather(*(t.wait() for t in self.tasks)), timeout)
        )

    async def results(self) -> Any:
        return results_table(await self.cluster.client.batch_results(self.batch_id))


class AsyncCluster:
    """The cluster for asyncio code (``await cluster.submit(...)``)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        client: AsyncClient | None = None,
        python: str | None = None,
    ) -> None:
        self.client = client or AsyncClient(url, token)
        self.python = python

    @property
    def hub(self) -> EventHub:
        return get_hub(self.client.config)

    async def submit(
        self, command: Sequence[str] | str, *, shell: bool = False, **resources: Any
    ) -> AsyncTask:
        result = await self.client.submit_request(command_body(command, shell=shell, **resources))
        return AsyncTask(self, result.task_ids[0])

    async def submit_code(self, source: str, *, shell: bool = False, **resources: Any) -> AsyncTask:
        body = code_body(source, shell=shell, python=self.python, **resources)
        return AsyncTask(self, (await self.client.submit_request(body)).task_ids[0])

    async def run_notebook(
        self,
        notebook: str | os.PathLike[str] | Mapping[str, Any],
        parameters: Mapping[str, Any] | None = None,
        **resources: Any,
    ) -> AsyncTask:
        _named(resources, notebook)
        result = await self.client.submit_notebook(
            load_notebook(notebook), parameters=dict(parameters or {}), **_resources(resources)
        )
        return AsyncTask(self, result.task_ids[0])

    async def sweep(
        self,
        notebook: str | os.PathLike[str] | Mapping[str, Any],
        grid: Mapping[str, Sequence[Any]] | None = None,
        *,
        parameter_sets: Sequence[Mapping[str, Any]] | None = None,
        **resources: Any,
    ) -> AsyncSweep:
        sets = sweep_sets(grid, parameter_sets)
        _named(resources, notebook)
        result = await self.client.submit_notebook(
            load_notebook(notebook), parameter_sets=sets, **_resources(resources)
        )
        return AsyncSweep(self, result, sets)

    async def task(self, task_id: TaskRef) -> AsyncTask:
        task = AsyncTask(self, task_id)
        await task.refresh()
        return task

    async def nodes(self) -> list[NodeInfo]:
        return await self.client.list_nodes()

    async def aclose(self) -> None:
        await self.client.aclose()
