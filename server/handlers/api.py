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
from ..queryparams import LOG_READ, TASK_LIST
from ..scheduler import current_loads
from .base import ClusterAPIHandler, parse_id, requires

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
        q = TASK_LIST
        statuses = None
        raw = q["status"].text(self)
        if raw:
            try:
                statuses = [TaskStatus(s) for s in raw.split(",")]
            except ValueError:
                valid = ", ".join(s.value for s in TaskStatus)
                raise InvalidRequest(f"unknown status in {raw!r} (valid: {valid})") from None
        kind = q["type"].raw(self)
        page = self.services.tasks.list_tasks(
            statuses=statuses,
            node=q["node"].text(self),
            owner=q["owner"].text(self),
            batch=q["batch"].ident(self),
            task_type=TaskType(q["type"].choice(self)) if kind is not None else None,
            limit=q["limit"].integer(self),
            cursor=q["cursor"].ident(self),
            count=q["count"].boolean(self),
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
        stream = LogStream(LOG_READ["stream"].choice(self))
        offset = LOG_READ["offset"].integer(self)
        limit = LOG_READ["limit"].integer(self)
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
