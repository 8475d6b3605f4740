"""Request descriptions shared by the sync and async clients.

Every endpoint is a function returning a :class:`Call`: method, path, query, body, and how to
read the response. :class:`~kohakuriver_lab.client.Client` and
:class:`~kohakuriver_lab.client.AsyncClient` only execute calls, so no endpoint is written twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from kohakuriver_lab.errors import ERRORS_BY_STATUS, InvalidRequest, KohakuRiverError
from kohakuriver_lab.models import (
    ENV_NAME_RE,
    IMAGE_TAG_RE,
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
    TaskStatus,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

TaskRef = int | str
"""A task (or token) ID as an int or a string of digits."""


# =============================================================================
# Errors
# =============================================================================


class HostUnreachable(KohakuRiverError):
    """The host could not be reached (connection refused, DNS, timeout, dropped stream)."""

    status_code = 503


class BadResponse(KohakuRiverError):
    """The host answered something that is not the expected JSON (wrong URL or version?)."""

    status_code = 502


class WaitTimeout(KohakuRiverError, TimeoutError):
    """``wait()`` gave up before the task ended."""

    status_code = 408


def error_for_status(status: int, message: str) -> KohakuRiverError:
    """The :mod:`kohakuriver_lab.errors` exception for an HTTP error status."""
    cls = ERRORS_BY_STATUS.get(status)
    if cls is not None:
        return cls(message)
    error = KohakuRiverError(f"HTTP {status}: {message}")
    error.status_code = status
    return error


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        return str(body["message"])
    text = response.text.strip()
    if text and len(text) < 500 and "<" not in text:
        return text
    return response.reason_phrase or f"HTTP {response.status_code}"


def check_response(response: httpx.Response) -> None:
    """Raise the matching :class:`KohakuRiverError` for a 4xx/5xx response."""
    if response.status_code >= 400:
        raise error_for_status(response.status_code, _error_message(response))


def unreachable(url: str, exc: Exception) -> HostUnreachable:
    """Translate a transport failure into :class:`HostUnreachable`."""
    what = "timed out" if isinstance(exc, httpx.TimeoutException | TimeoutError) else "failed"
    detail = str(exc) or type(exc).__name__
    return HostUnreachable(f"request to kohakuriver host {url} {what}: {detail}")


# =============================================================================
# Calls
# =============================================================================


@dataclass(frozen=True)
class Call(Generic[T]):
    """One REST request and the parser of its successful response."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    timeout: float | None = None
    """Seconds for this request when it may take longer than the client's default."""


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise BadResponse(
            f"{response.request.url} answered {response.status_code} without JSON"
        ) from exc


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        try:
            return model.model_validate(_json(response))
        except ValidationError as exc:
            raise BadResponse(f"unexpected {model.__name__} from host: {exc}") from exc

    return parse


def _model_list(model: type[M], key: str) -> Callable[[httpx.Response], list[M]]:
    def parse(response: httpx.Response) -> list[M]:
        body = _json(response)
        items = body.get(key) if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise BadResponse(f"expected {{{key!r}: [...]}} from host")
        try:
            return [model.model_validate(item) for item in items]
        except ValidationError as exc:
            raise BadResponse(f"unexpected {model.__name__} from host: {exc}") from exc

    return parse


def _nothing(response: httpx.Response) -> None:
    return None


def _dict(response: httpx.Response) -> dict[str, Any]:
    body = _json(response)
    if not isinstance(body, dict):
        raise BadResponse("expected a JSON object from host")
    return body


def path_id(value: TaskRef) -> str:
    """An ID as a path segment; refuses anything but digits."""
    text = str(value)
    if not text.isdigit():
        raise InvalidRequest(f"an ID is a string of digits, got {value!r}")
    return text


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# =============================================================================
# Endpoints
# =============================================================================


def submit(
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
) -> Call[SubmitResult]:
    """``POST /tasks``; only the given fields are sent, so the host's defaults apply."""
    if isinstance(command, str):
        raise TypeError("command is an argv list such as ['python', 'train.py']; see shlex.split")
    body = _given(
        name=name,
        cores=cores,
        memory=memory,
        gpus=gpus if gpus is None or isinstance(gpus, int) else list(gpus),
        targets=[targets] if isinstance(targets, str) else _list_or_none(targets),
        env=None if env is None else dict(env),
        workdir=workdir,
        priority=priority,
        backend=backend,
        task_type=getattr(task_type, "value", task_type),
        image=image,
        environment=environment,
        mounts=_list_or_none(mounts),
    )
    body = {"command": list(command), **body}
    return Call("POST", "tasks", _model(SubmitResult), json=body)


def _list_or_none(values: Sequence[str] | None) -> list[str] | None:
    return None if values is None else list(values)


StatusFilter = str | TaskStatus | Iterable[str | TaskStatus] | None


def list_tasks(
    *,
    status: StatusFilter = None,
    node: str | None = None,
    owner: str | None = None,
    batch: TaskRef | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[TaskPage]:
    """``GET /tasks`` with filters; ``status`` may be one status or several."""
    if status is not None and not isinstance(status, str):
        status = ",".join(TaskStatus(s).value for s in status)
    elif isinstance(status, TaskStatus):
        status = status.value
    params = _given(
        status=status,
        node=node,
        owner=owner,
        batch=None if batch is None else path_id(batch),
        limit=None if limit is None else str(limit),
        cursor=cursor,
    )
    return Call("GET", "tasks", _model(TaskPage), params=params)


def get_task(task_id: TaskRef) -> Call[TaskInfo]:
    """``GET /tasks/{id}``."""
    return Call("GET", f"tasks/{path_id(task_id)}", _model(TaskInfo))


def task_events(task_id: TaskRef) -> Call[list[TaskEventInfo]]:
    """``GET /tasks/{id}/events``."""
    return Call("GET", f"tasks/{path_id(task_id)}/events", _model_list(TaskEventInfo, "events"))


def task_action(task_id: TaskRef, action: str) -> Call[TaskInfo]:
    """``POST /tasks/{id}/{kill|pause|resume}``."""
    return Call("POST", f"tasks/{path_id(task_id)}/{action}", _model(TaskInfo))


def logs(task_id: TaskRef, stream: str, offset: int, limit: int | None) -> Call[LogChunk]:
    """``GET /tasks/{id}/logs``."""
    params = _given(stream=str(stream), offset=str(offset), limit=_str_or_none(limit))
    return Call("GET", f"tasks/{path_id(task_id)}/logs", _model(LogChunk), params=params)


def _str_or_none(value: int | None) -> str | None:
    return None if value is None else str(value)


def list_nodes() -> Call[list[NodeInfo]]:
    """``GET /nodes``."""
    return Call("GET", "nodes", _model_list(NodeInfo, "nodes"))


def get_node(name: str) -> Call[NodeInfo]:
    """``GET /nodes/{name}`` (includes the metrics history)."""
    return Call("GET", f"nodes/{quote(name, safe='')}", _model(NodeInfo))


def create_runner_token(name: str, node: str | None) -> Call[RunnerTokenInfo]:
    """``POST /runner-tokens``; the response carries the secret, once."""
    return Call("POST", "runner-tokens", _model(RunnerTokenInfo), json=_given(name=name, node=node))


def list_runner_tokens() -> Call[list[RunnerTokenInfo]]:
    """``GET /runner-tokens``."""
    return Call("GET", "runner-tokens", _model_list(RunnerTokenInfo, "tokens"))


def revoke_runner_token(token_id: TaskRef) -> Call[None]:
    """``DELETE /runner-tokens/{id}``."""
    return Call("DELETE", f"runner-tokens/{path_id(token_id)}", _nothing)


def me() -> Call[str]:
    """``GET /me``: the caller's name to the cluster (the owner of their tasks)."""
    return Call("GET", "me", lambda data: str(_dict(data)["username"]))


def openapi() -> Call[dict[str, Any]]:
    """``GET /openapi.json``."""
    return Call("GET", "openapi.json", _dict)


# =============================================================================
# Polling
# =============================================================================


def poll_delays(task_id: TaskRef, poll: float, timeout: float | None) -> Iterator[float]:
    """Sleep lengths for ``wait()``: ``poll`` growing 1.5x up to 5 s; raises at the deadline."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = max(poll, 0.01)
    cap = max(delay, 5.0)
    while True:
        if deadline is None:
            yield delay
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"task {task_id} did not finish within {timeout} s")
            yield min(delay, remaining)
        delay = min(delay * 1.5, cap)


# =============================================================================
# Notebook jobs, artifacts and results
# =============================================================================


def submit_request(body: Mapping[str, Any]) -> Call[SubmitResult]:
    """``POST /tasks`` with a prepared body (any task type, e.g. ``image`` or a notebook)."""
    return Call("POST", "tasks", _model(SubmitResult), json=dict(body))


def submit_notebook(
    notebook: Mapping[str, Any],
    *,
    parameters: Mapping[str, Any] | None = None,
    parameter_sets: Sequence[Mapping[str, Any]] | None = None,
    **fields: Any,
) -> Call[SubmitResult]:
    """``POST /tasks`` with ``task_type: notebook``: one task, or one per parameter set."""
    if parameters is not None and parameter_sets is not None:
        raise InvalidRequest("give either parameters or parameter_sets, not both")
    body = _given(**fields)
    if isinstance(body.get("targets"), str):
        body["targets"] = [body["targets"]]
    body.update(task_type="notebook", notebook=dict(notebook))
    if parameters is not None:
        body["parameters"] = dict(parameters)
    if parameter_sets is not None:
        body["parameter_sets"] = [dict(p) for p in parameter_sets]
    return submit_request(body)


def _content(response: httpx.Response) -> bytes:
    return response.content


def get_artifact(task_id: TaskRef, name: str) -> Call[bytes]:
    """``GET /tasks/{id}/artifacts/{name}`` (e.g. ``output.ipynb``) as bytes."""
    return Call("GET", f"tasks/{path_id(task_id)}/artifacts/{quote(name, safe='')}", _content)


def get_job(task_id: TaskRef) -> Call[dict[str, Any]]:
    """``GET /tasks/{id}/job``: ``{"parameters": {...}, "notebook_name": ...}``."""
    return Call("GET", f"tasks/{path_id(task_id)}/job", _dict)


def post_progress(
    task_id: TaskRef, done: int, total: int, cell: int | None, error: str | None = None
) -> Call[None]:
    """``POST /tasks/{id}/progress`` (task token)."""
    body = {"done": done, "total": total, "cell": cell, "error": error}
    return Call("POST", f"tasks/{path_id(task_id)}/progress", _nothing, json=body)


def post_result(task_id: TaskRef, name: str, value: Any) -> Call[None]:
    """``POST /tasks/{id}/results`` (task token): record one named JSON result."""
    return Call(
        "POST", f"tasks/{path_id(task_id)}/results", _nothing, json={"name": name, "value": value}
    )


def _results(response: httpx.Response) -> Any:
    body = _json(response)
    if not isinstance(body, dict) or "results" not in body:
        raise BadResponse("expected {'results': ...} from host")
    return body["results"]


def get_results(task_id: TaskRef) -> Call[dict[str, Any]]:
    """``GET /tasks/{id}/results`` → ``{name: value}``."""
    return Call("GET", f"tasks/{path_id(task_id)}/results", _results)


def batch_results(batch_id: TaskRef) -> Call[list[dict[str, Any]]]:
    """``GET /batches/{id}/results`` → ``[{"task_id", "status", "parameters", "results"}]``."""
    return Call("GET", f"batches/{path_id(batch_id)}/results", _results)


# ----- environments -----

LONG = 3600.0
"""Timeout of the calls a node carries out (create, exec, commit): they wait for it."""


def _env(name: str) -> str:
    if not ENV_NAME_RE.match(name):
        raise InvalidRequest(f"invalid environment name {name!r}")
    return f"environments/{name}"


def list_environments() -> Call[list[EnvironmentInfo]]:
    """``GET /environments``."""
    return Call("GET", "environments", _model_list(EnvironmentInfo, "environments"))


def get_environment(name: str) -> Call[EnvironmentInfo]:
    """``GET /environments/{name}``."""
    return Call("GET", _env(name), _model(EnvironmentInfo))


def create_environment(name: str, image: str, node: str | None) -> Call[EnvironmentInfo]:
    """``POST /environments``: start the environment's container on a node."""
    body = _given(name=name, image=image, node=node)
    return Call("POST", "environments", _model(EnvironmentInfo), json=body, timeout=LONG)


def environment_exec(
    name: str,
    command: Sequence[str],
    workdir: str | None,
    env: Mapping[str, str] | None,
    timeout: float | None,
) -> Call[EnvironmentExecResult]:
    """``POST /environments/{name}/exec``: run an argv in the container."""
    if isinstance(command, str):
        raise TypeError("command is an argv list such as ['pip', 'install', 'torch']")
    body = _given(
        command=list(command),
        workdir=workdir,
        env=None if env is None else dict(env),
        timeout=timeout,
    )
    wait = (timeout or 600) + 60
    return Call(
        "POST", f"{_env(name)}/exec", _model(EnvironmentExecResult), json=body, timeout=wait
    )


def commit_environment(name: str, tag: str | None) -> Call[EnvironmentVersionInfo]:
    """``POST /environments/{name}/versions``: commit, export, store a new version."""
    return Call(
        "POST",
        f"{_env(name)}/versions",
        _model(EnvironmentVersionInfo),
        json=_given(tag=tag),
        timeout=LONG,
    )


def delete_environment(name: str, versions: bool) -> Call[None]:
    """``DELETE /environments/{name}``."""
    params = {"versions": "true"} if versions else {}
    return Call("DELETE", _env(name), _nothing, params=params, timeout=LONG)


def delete_environment_version(name: str, version: int) -> Call[None]:
    """``DELETE /environments/{name}/versions/{version}``."""
    return Call("DELETE", f"{_env(name)}/versions/{path_id(version)}", _nothing)


# ----- Docker VPS -----


def stop_vps(task_id: TaskRef, snapshot: bool) -> Call[TaskInfo]:
    """``POST /tasks/{id}/stop``."""
    path = f"tasks/{path_id(task_id)}/stop"
    return Call("POST", path, _model(TaskInfo), json={"snapshot": snapshot})


def snapshots(task_id: TaskRef, method: str = "GET") -> Call[list[SnapshotInfo]]:
    """``GET`` (list) or ``POST`` (create) ``/tasks/{id}/snapshots``."""
    path = f"tasks/{path_id(task_id)}/snapshots"
    return Call(method, path, _model_list(SnapshotInfo, "snapshots"), timeout=LONG)


def delete_snapshot(task_id: TaskRef, tag: str) -> Call[None]:
    """``DELETE /tasks/{id}/snapshots/{tag}``."""
    if not IMAGE_TAG_RE.match(tag):
        raise InvalidRequest(f"invalid snapshot tag {tag!r}")
    return Call("DELETE", f"tasks/{path_id(task_id)}/snapshots/{tag}", _nothing, timeout=LONG)
