"""REST handlers: tasks, nodes, runner tokens, cluster summary, OpenAPI document."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from kohakuriver_lab.errors import InvalidRequest, NotFound
from kohakuriver_lab.models import (
    LogChunk,
    LogStream,
    Me,
    Role,
    RunnerTokenCreate,
    Scope,
    TaskReject,
    TaskStatus,
    TaskSubmit,
    TaskType,
    VpsStop,
)

from ..node_removal import remove_node
from ..openapi import openapi_document
from ..policy import task_view
from ..scheduler import current_loads
from .base import ClusterAPIHandler, is_id, parse_id, requires

MAX_LOG_READ = 1024 * 1024


def _int_arg(handler: ClusterAPIHandler, name: str, default: int, low: int, high: int) -> int:
    raw = handler.get_query_argument(name, None)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"query parameter '{name}' must be an integer") from None
    if not low <= value <= high:
        raise InvalidRequest(f"query parameter '{name}' must be between {low} and {high}")
    return value


def _task_type_arg(handler: ClusterAPIHandler) -> TaskType | None:
    raw = handler.get_query_argument("type", None)
    if not raw:
        return None
    try:
        return TaskType(raw)
    except ValueError:
        valid = ", ".join(t.value for t in TaskType)
        raise InvalidRequest(f"unknown task type {raw!r} (valid: {valid})") from None


# =============================================================================
# Tasks
# =============================================================================


class TasksHandler(ClusterAPIHandler):
    """``GET`` lists tasks; ``POST`` submits."""

    def body_limit(self) -> tuple[int, str]:
        """A submit may carry a notebook."""
        limit = self.services.costs.submit_body_bytes()
        return limit, "CostLimits.max_notebook_bytes + CostLimits.max_body_bytes"

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    def get(self) -> None:
        statuses = None
        raw = self.get_query_argument("status", None)
        if raw:
            try:
                statuses = [TaskStatus(s.strip()) for s in raw.split(",") if s.strip()]
            except ValueError:
                valid = ", ".join(s.value for s in TaskStatus)
                raise InvalidRequest(f"unknown status in {raw!r} (valid: {valid})") from None
        cursor_raw = self.get_query_argument("cursor", None)
        batch_raw = self.get_query_argument("batch", None)
        if cursor_raw is not None and not is_id(cursor_raw):
            raise InvalidRequest("cursor must be the next_cursor of a previous page")
        if batch_raw is not None and not is_id(batch_raw):
            raise InvalidRequest("batch must be a batch ID")
        page = self.services.tasks.list_tasks(
            statuses=statuses,
            node=self.get_query_argument("node", None),
            owner=self.get_query_argument("owner", None),
            batch=int(batch_raw) if batch_raw else None,
            task_type=_task_type_arg(self),
            limit=_int_arg(self, "limit", 100, 1, 500),
            cursor=int(cursor_raw) if cursor_raw else None,
            count=self.get_query_argument("count", "false").lower() in ("1", "true", "yes"),
        )
        data = page.model_dump(mode="json")
        data["tasks"] = [task_view(self.caller, t) for t in data["tasks"]]
        self.write_json(data)

    @web.authenticated
    @authorized
    @requires(Role.USER, Scope.SUBMIT)
    def post(self) -> None:
        body = self.parse_body(TaskSubmit)
        caller = self.caller
        approval = (
            caller.role is Role.USER and self.services.cluster_settings.get().approvals_required
        )
        result = self.services.tasks.submit(body, owner=caller.username, approval=approval)
        self.write_json(result, status=201)


class TaskHandler(ClusterAPIHandler):
    """One task."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    def get(self, task_id: str) -> None:
        info = self.services.tasks.get(parse_id(task_id))
        self.write_json(task_view(self.caller, info.model_dump(mode="json")))


class TaskEventsHandler(ClusterAPIHandler):
    """A task's recorded transitions."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    def get(self, task_id: str) -> None:
        events = self.services.tasks.events(self.task_with_details(task_id).task_id)
        self.write_json({"events": [e.model_dump(mode="json") for e in events]})


class TaskActionHandler(ClusterAPIHandler):
    """``POST .../kill``, ``.../pause``, ``.../resume``; for a VPS also ``.../stop`` (body
    ``{"snapshot": true}`` by default) and ``.../start`` (a stopped one, from its snapshot)."""

    @web.authenticated
    @authorized
    @requires(Role.USER, Scope.SUBMIT)
    def post(self, task_id: str, action: str) -> None:
        tasks = self.services.tasks
        if action in ("approve", "reject"):
            self.caller.require(Role.OPERATOR, Scope.SUBMIT, f"to {action} a task")
            ident = parse_id(task_id)
            if action == "approve":
                info = tasks.approve(ident, actor=self.caller.username)
            else:
                info = tasks.reject(ident, self.parse_body(TaskReject).reason, self.caller.username)
            self.services.audit.record(
                self.caller.username,
                "task.approved" if action == "approve" else "task.rejected",
                f"task:{ident}",
                address=self.request.remote_ip,
            )
            self.write_json(info, status=202)
            return
        owner = self.task_for_control(task_id, action).owner
        ident = parse_id(task_id)
        if action == "kill":
            info = tasks.kill(ident, actor=self.username)
            if owner != self.caller.username:
                self.services.audit.record(
                    self.caller.username,
                    "task.killed",
                    f"task:{ident}",
                    {"owner": owner},
                    address=self.request.remote_ip,
                )
        elif action == "pause":
            info = tasks.pause(ident)
        elif action == "resume":
            info = tasks.resume(ident)
        elif action == "stop":
            body = self.parse_body(VpsStop)
            info = tasks.stop(ident, body.snapshot, actor=self.username)
        else:
            info = tasks.start(ident, actor=self.username)
        self.write_json(info, status=202)


class TaskSnapshotsHandler(ClusterAPIHandler):
    """A VPS's snapshots on its node: ``GET`` lists, ``POST`` commits the running container."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    async def get(self, task_id: str) -> None:
        ident = self.task_with_details(task_id).task_id
        snapshots = await self.services.tasks.snapshot(ident, "list")
        self.write_json({"snapshots": [s.model_dump(mode="json") for s in snapshots]})

    @web.authenticated
    @authorized
    @requires(Role.USER, Scope.SUBMIT)
    async def post(self, task_id: str) -> None:
        ident = self.task_for_control(task_id, "snapshot").task_id
        snapshots = await self.services.tasks.snapshot(ident, "create")
        self.write_json({"snapshots": [s.model_dump(mode="json") for s in snapshots]}, 201)


class TaskSnapshotHandler(ClusterAPIHandler):
    """``DELETE`` one snapshot of a VPS."""

    @web.authenticated
    @authorized
    @requires(Role.USER, Scope.SUBMIT)
    async def delete(self, task_id: str, tag: str) -> None:
        ident = self.task_for_control(task_id, "delete a snapshot of").task_id
        await self.services.tasks.snapshot(ident, "delete", tag)
        self.set_status(204)
        self.finish()


class TaskLogsHandler(ClusterAPIHandler):
    """Bytes of a task's output from an offset."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    def get(self, task_id: str) -> None:
        ident = self.task_with_details(task_id).task_id
        stream_raw = self.get_query_argument("stream", "stdout")
        try:
            stream = LogStream(stream_raw)
        except ValueError:
            raise InvalidRequest("stream must be 'stdout' or 'stderr'") from None
        offset = _int_arg(self, "offset", 0, 0, 2**62)
        limit = _int_arg(self, "limit", MAX_LOG_READ, 1, MAX_LOG_READ)
        status = self.services.tasks.status_of(ident)
        logs = self.services.logs
        data = logs.read(ident, stream, offset, limit)
        next_offset = offset + len(data)
        done = status.is_final and not self.services.gateway.waiting_for_logs(ident)
        chunk = LogChunk(
            task_id=ident,
            stream=stream,
            offset=offset,
            next_offset=next_offset,
            data=data.decode("utf-8", errors="replace"),
            eof=done and next_offset >= logs.size(ident, stream),
        )
        self.write_json(chunk)


# =============================================================================
# Nodes and cluster
# =============================================================================


class NodesHandler(ClusterAPIHandler):
    """Every node with its usage."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    def get(self) -> None:
        registry = self.services.registry
        with self.services.db() as session:
            loads = current_loads(session)
        nodes = [registry.info(n, loads.get(n), with_history=False) for n in registry.names()]
        self.write_json({"nodes": [n.model_dump(mode="json") for n in nodes]})


class NodeHandler(ClusterAPIHandler):
    """One node, with its metrics history; ``DELETE`` removes it (admins)."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    def get(self, name: str) -> None:
        registry = self.services.registry
        if registry.get(name) is None:
            raise NotFound(f"node {name!r} not found")
        with self.services.db() as session:
            loads = current_loads(session)
        self.write_json(registry.info(name, loads.get(name), with_history=True))

    @web.authenticated
    @authorized
    @requires(Role.ADMIN, Scope.ADMIN)
    def delete(self, name: str) -> None:
        """Remove an offline, idle node (409 otherwise); its runner tokens are revoked."""
        remove_node(self.services, name, self.username, self.request.remote_ip)
        self.set_status(204)
        self.finish()


class MeHandler(ClusterAPIHandler):
    """Who the caller is to the cluster (the name tasks are owned by)."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    def get(self) -> None:
        caller = self.caller
        scopes = sorted(caller.scopes, key=lambda s: s.value) if caller.scopes is not None else None
        me = Me(
            username=caller.username,
            role=caller.role,
            groups=list(caller.groups),
            scopes=scopes,
            via=caller.via,
        )
        self.write_json(me)


class ClusterHandler(ClusterAPIHandler):
    """A summary for dashboards: nodes online, capacity and use, queue length."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    def get(self) -> None:
        self.write_json(self.services.summary())


# =============================================================================
# Runner tokens
# =============================================================================


class RunnerTokensHandler(ClusterAPIHandler):
    """List and create runner tokens (admin)."""

    @web.authenticated
    @authorized
    @requires(Role.ADMIN, Scope.READ)
    def get(self) -> None:
        tokens = self.services.tokens.list_tokens()
        self.write_json({"tokens": [t.model_dump(mode="json") for t in tokens]})

    @web.authenticated
    @authorized
    @requires(Role.ADMIN, Scope.ADMIN)
    def post(self) -> None:
        body = self.parse_body(RunnerTokenCreate)
        info = self.services.tokens.create(body, created_by=self.username)
        self.services.audit.record(
            self.username,
            "runner_token.created",
            f"runner_token:{info.token_id}",
            {"name": body.name, "node": body.node},
            address=self.request.remote_ip,
        )
        self.write_json(info, status=201)


class RunnerTokenHandler(ClusterAPIHandler):
    """Revoke a runner token; its runner is disconnected."""

    @web.authenticated
    @authorized
    @requires(Role.ADMIN, Scope.ADMIN)
    def delete(self, token_id: str) -> None:
        ident = parse_id(token_id, "runner token")
        self.services.tokens.revoke(ident)
        self.services.audit.record(
            self.username,
            "runner_token.revoked",
            f"runner_token:{ident}",
            address=self.request.remote_ip,
        )
        self.services.gateway.disconnect_token(ident)
        self.set_status(204)
        self.finish()


class OpenAPIHandler(ClusterAPIHandler):
    """The OpenAPI 3 document of this API."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    def get(self) -> None:
        self.write_json(openapi_document(self.base_url))
