"""The OpenAPI 3 document of the REST API, built from the shared pydantic models."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from kohakuriver_lab import __version__
from kohakuriver_lab.models import (
    ApiTokenCreate,
    ApiTokenInfo,
    AuditEventInfo,
    ClusterSettings,
    EnvironmentCommit,
    EnvironmentCreate,
    EnvironmentExec,
    EnvironmentExecResult,
    EnvironmentInfo,
    EnvironmentVersionInfo,
    InvitationCreate,
    InvitationInfo,
    JobProgress,
    JobResult,
    LogChunk,
    Me,
    NodeInfo,
    QuotaInfo,
    Registration,
    RunnerTokenCreate,
    RunnerTokenInfo,
    SnapshotInfo,
    SubmitResult,
    TaskEventInfo,
    TaskInfo,
    TaskPage,
    TaskReject,
    TaskSubmit,
    UserCreate,
    UserInfo,
    UserUpdate,
    VpsStop,
)

MODELS: list[type[BaseModel]] = [
    TaskSubmit,
    SubmitResult,
    TaskInfo,
    TaskPage,
    TaskEventInfo,
    LogChunk,
    NodeInfo,
    RunnerTokenCreate,
    RunnerTokenInfo,
    JobProgress,
    JobResult,
    EnvironmentCreate,
    EnvironmentExec,
    EnvironmentExecResult,
    EnvironmentCommit,
    EnvironmentInfo,
    EnvironmentVersionInfo,
    VpsStop,
    SnapshotInfo,
    Me,
    QuotaInfo,
    UserInfo,
    UserCreate,
    UserUpdate,
    ApiTokenCreate,
    ApiTokenInfo,
    ClusterSettings,
    TaskReject,
    AuditEventInfo,
    InvitationCreate,
    InvitationInfo,
    Registration,
]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _list_of(key: str, item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [key],
        "properties": {key: {"type": "array", "items": _ref(item)}},
    }


_ERROR = _json(_ref("Error"), "Error")
_ID_PARAM = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": r"^\d+$"},
}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_NAME_PARAM = _path_param("name")


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    errors = {"400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR, "409": _ERROR}
    return {"summary": summary, "responses": {**responses, **errors}, **extra}


def _node_op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An operation a node carries out: 422 when it cannot (e.g. a missing image)."""
    op = _op(summary, responses, **extra)
    op["responses"]["422"] = _ERROR
    return op


_ENV_PARAM = _path_param("name")
_VERSION_PARAM = _path_param("version")


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _paths() -> dict[str, Any]:
    task_action = {
        "post": _op(
            "Kill, pause or resume a task; stop (body VpsStop, optional) or start a VPS; "
            "approve or reject (body TaskReject) a task waiting for approval (operators)",
            {"202": _json(_ref("TaskInfo"))},
            parameters=[
                _ID_PARAM,
                {
                    "name": "action",
                    "in": "path",
                    "required": True,
                    "schema": {
                        "type": "string",
                        "enum": [
                            "kill",
                            "pause",
                            "resume",
                            "stop",
                            "start",
                            "approve",
                            "reject",
                        ],
                    },
                },
            ],
            requestBody={
                "required": False,
                "content": {"application/json": {"schema": _ref("VpsStop")}},
            },
        )
    }
    return {
        **_environment_paths(),
        **_invitation_paths(),
        "/kohakuriver/api/tasks/{task_id}/snapshots": {
            "get": _node_op(
                "A VPS's snapshots on its node",
                {"200": _json(_list_of("snapshots", "SnapshotInfo"))},
                parameters=[_ID_PARAM],
            ),
            "post": _node_op(
                "Snapshot a running VPS (docker commit)",
                {"201": _json(_list_of("snapshots", "SnapshotInfo"), "Created")},
                parameters=[_ID_PARAM],
            ),
        },
        "/kohakuriver/api/tasks/{task_id}/snapshots/{tag}": {
            "delete": _node_op(
                "Delete one snapshot of a VPS",
                {"204": {"description": "Deleted"}},
                parameters=[_ID_PARAM, _path_param("tag")],
            )
        },
        "/kohakuriver/api/tasks": {
            "get": _op(
                "List tasks, newest first, with cursor pagination",
                {"200": _json(_ref("TaskPage"))},
                parameters=[
                    _query("status", {"type": "string"}, "comma-separated statuses"),
                    _query("node", {"type": "string"}, "node name"),
                    _query("owner", {"type": "string"}, "owner user name"),
                    _query("batch", {"type": "string"}, "batch ID"),
                    _query(
                        "type",
                        {"type": "string", "enum": ["command", "vps", "notebook"]},
                        "task type",
                    ),
                    _query("count", {"type": "boolean"}, "add the total of matching tasks"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size"),
                    _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
                ],
            ),
            "post": _op(
                "Submit a task (one per target, in one batch)",
                {"201": _json(_ref("SubmitResult"), "Created")},
                requestBody=_body("TaskSubmit"),
            ),
        },
        "/kohakuriver/api/tasks/{task_id}": {
            "get": _op("Get a task", {"200": _json(_ref("TaskInfo"))}, parameters=[_ID_PARAM])
        },
        "/kohakuriver/api/tasks/{task_id}/events": {
            "get": _op(
                "A task's status transitions",
                {"200": _json(_list_of("events", "TaskEventInfo"))},
                parameters=[_ID_PARAM],
            )
        },
        "/kohakuriver/api/tasks/{task_id}/{action}": task_action,
        "/kohakuriver/api/tasks/{task_id}/logs": {
            "get": _op(
                "Bytes of a task's output from an offset",
                {"200": _json(_ref("LogChunk"))},
                parameters=[
                    _ID_PARAM,
                    _query(
                        "stream", {"type": "string", "enum": ["stdout", "stderr"]}, "which stream"
                    ),
                    _query("offset", {"type": "integer", "minimum": 0}, "byte offset"),
                    _query("limit", {"type": "integer", "minimum": 1}, "most bytes to return"),
                ],
            )
        },
        "/kohakuriver/api/tasks/{task_id}/logs/follow": {
            "get": _op(
                "WebSocket: follow a task's output live",
                {"101": {"description": "Switching protocols; JSON frames {type: log|end}"}},
                parameters=[
                    _ID_PARAM,
                    _query(
                        "stream",
                        {"type": "string", "enum": ["stdout", "stderr", "both"]},
                        "which streams",
                    ),
                    _query("offset", {"type": "integer", "minimum": 0}, "start offset"),
                ],
            )
        },
        "/kohakuriver/api/nodes": {
            "get": _op(
                "Every node with usage and latest metrics",
                {"200": _json(_list_of("nodes", "NodeInfo"))},
            )
        },
        "/kohakuriver/api/nodes/{name}": {
            "get": _op(
                "One node with its metrics history",
                {"200": _json(_ref("NodeInfo"))},
                parameters=[_path_param("name")],
            ),
            "delete": _op(
                "Remove an offline node without active or waiting tasks (admins; audited); "
                "its runner tokens are revoked (409 while online or busy)",
                {"204": {"description": "Removed"}},
                parameters=[_path_param("name")],
            ),
        },
        "/kohakuriver/api/me": {
            "get": _op(
                "Who the caller is to the cluster: name, role, groups, token scopes",
                {"200": _json(_ref("Me"))},
            )
        },
        **_people_paths(),
        "/kohakuriver/api/cluster": {
            "get": _op("Cluster summary", {"200": _json(_ref("ClusterSummary"))})
        },
        "/kohakuriver/api/tasks/{task_id}/job": {
            "get": _op(
                "A job's parameters (task token or Jupyter auth)",
                {"200": _json({"type": "object"})},
                parameters=[_ID_PARAM],
            )
        },
        "/kohakuriver/api/tasks/{task_id}/progress": {
            "post": _op(
                "A running job reports its progress (task token)",
                {"204": {"description": "Stored"}},
                parameters=[_ID_PARAM],
                requestBody=_body("JobProgress"),
            )
        },
        "/kohakuriver/api/tasks/{task_id}/results": {
            "get": _op(
                "A task's glued results",
                {"200": _json({"type": "object", "properties": {"results": {"type": "object"}}})},
                parameters=[_ID_PARAM],
            ),
            "post": _op(
                "Glue one result (task token)",
                {"204": {"description": "Stored"}},
                parameters=[_ID_PARAM],
                requestBody=_body("JobResult"),
            ),
        },
        "/kohakuriver/api/tasks/{task_id}/artifacts/{name}": {
            "get": _op(
                "A file of a task (input.ipynb, output.ipynb, ...)",
                {"200": {"description": "The bytes", "content": {"application/octet-stream": {}}}},
                parameters=[_ID_PARAM, _NAME_PARAM],
            ),
            "put": _op(
                "Store a file of a task (task token); output.ipynb is also saved to the contents",
                {"204": {"description": "Stored"}},
                parameters=[_ID_PARAM, _NAME_PARAM],
                requestBody={"required": True, "content": {"application/octet-stream": {}}},
            ),
        },
        "/kohakuriver/api/batches/{batch_id}/results": {
            "get": _op(
                "Every task of a batch (sweep) with parameters, status and results",
                {"200": _json({"type": "object", "properties": {"results": {"type": "array"}}})},
                parameters=[_path_param("batch_id")],
            )
        },
        "/kohakuriver/api/events": {
            "get": _op(
                "WebSocket: live task and node changes",
                {"101": {"description": "JSON frames {type: subscribed|task|node|metrics}"}},
                parameters=[
                    _query("topics", {"type": "string"}, "comma-separated subset of tasks,nodes"),
                    _query("tasks", {"type": "string"}, "only these task IDs (comma-separated)"),
                    _query("batch", {"type": "string"}, "only tasks of this batch"),
                ],
            )
        },
        "/kohakuriver/api/runner-tokens": {
            "get": _op(
                "List runner tokens (no secrets)",
                {"200": _json(_list_of("tokens", "RunnerTokenInfo"))},
            ),
            "post": _op(
                "Create a runner token (the secret is shown once)",
                {"201": _json(_ref("RunnerTokenInfo"), "Created")},
                requestBody=_body("RunnerTokenCreate"),
            ),
        },
        "/kohakuriver/api/runner-tokens/{token_id}": {
            "delete": _op(
                "Revoke a runner token and disconnect its runner",
                {"204": {"description": "Revoked"}},
                parameters=[_path_param("token_id")],
            )
        },
        "/kohakuriver/api/runners/connect": {
            "get": _op(
                "WebSocket for runners (Authorization: Bearer <runner token>); see kohakuriver_lab.protocol",
                {"101": {"description": "Switching protocols"}},
            )
        },
        "/kohakuriver/api/openapi.json": {
            "get": _op("This document", {"200": {"description": "OpenAPI 3 document"}})
        },
    }


def _people_paths() -> dict[str, Any]:
    base = "/kohakuriver/api"
    return {
        base + "/users": {
            "get": _op(
                "Every cluster user (operators)", {"200": _json(_list_of("users", "UserInfo"))}
            ),
            "post": _op(
                "Add a member before their first login (admins; audited)",
                {"201": _json(_ref("UserInfo"), "Created")},
                requestBody=_body("UserCreate"),
            ),
        },
        base + "/users/{name}": {
            "get": _op(
                "One user (operators)", {"200": _json(_ref("UserInfo"))}, parameters=[_NAME_PARAM]
            ),
            "patch": _op(
                "Change a user's role, groups or active flag (admins; audited)",
                {"200": _json(_ref("UserInfo"))},
                parameters=[_NAME_PARAM],
                requestBody=_body("UserUpdate"),
            ),
        },
        base + "/tokens": {
            "get": _op(
                "Your API tokens (admins: all=true for everyone's), without secrets",
                {"200": _json(_list_of("tokens", "ApiTokenInfo"))},
                parameters=[_query("all", {"type": "boolean"}, "everyone's (admins)")],
            ),
            "post": _op(
                "Create an API token (the secret is shown once)",
                {"201": _json(_ref("ApiTokenInfo"), "Created")},
                requestBody=_body("ApiTokenCreate"),
            ),
        },
        base + "/tokens/{token_id}": {
            "delete": _op(
                "Revoke one of your API tokens (admins: anyone's)",
                {"204": {"description": "Revoked"}},
                parameters=[_path_param("token_id")],
            )
        },
        base + "/settings": {
            "get": _op("Cluster settings", {"200": _json(_ref("ClusterSettings"))}),
            "patch": _op(
                "Change cluster settings (admins; audited)",
                {"200": _json(_ref("ClusterSettings"))},
                requestBody=_body("ClusterSettings"),
            ),
        },
        base + "/quotas": {
            "get": _op("Every quota (operators)", {"200": _json(_list_of("quotas", "QuotaInfo"))}),
            "put": _op(
                "Set the quota of user:NAME or group:NAME (admins; audited)",
                {"200": _json(_ref("QuotaInfo"))},
                requestBody=_body("QuotaInfo"),
            ),
        },
        base + "/quotas/{subject}": {
            "delete": _op(
                "Drop a quota (admins; audited)",
                {"204": {"description": "Deleted"}},
                parameters=[_path_param("subject")],
            )
        },
        base + "/audit": {
            "get": _op(
                "The audit log, newest first (admins)",
                {"200": _json(_list_of("events", "AuditEventInfo"))},
                parameters=[
                    _query("actor", {"type": "string"}, "only this actor"),
                    _query("action", {"type": "string"}, "only this action"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size"),
                    _query("before", {"type": "string"}, "event ID: older events only"),
                ],
            )
        },
    }


def _invitation_paths() -> dict[str, Any]:
    base = "/kohakuriver/api/invitations"
    html = {"content": {"text/html": {"schema": {"type": "string"}}}}
    return {
        base: {
            "post": _op(
                "Invite a member: the token and registration URL are shown once (admins: any "
                "role; operators: viewers only; audited)",
                {"201": _json(_ref("InvitationInfo"), "Created")},
                requestBody=_body("InvitationCreate"),
            ),
            "get": _op(
                "Every invitation, without secrets (admins)",
                {"200": _json(_list_of("invitations", "InvitationInfo"))},
            ),
        },
        base + "/{invitation_id}": {
            "delete": _op(
                "Revoke an invitation (admins; audited)",
                {"204": {"description": "Revoked"}},
                parameters=[_path_param("invitation_id")],
            )
        },
        "/kohakuriver/register": {
            "get": {
                "summary": "The registration form (no credentials: the invitation is one)",
                "security": [],
                "parameters": [_query("token", {"type": "string"}, "the invitation token")],
                "responses": {"200": {"description": "HTML page", **html}},
            },
            "post": {
                "summary": "Create an account with an invitation (JSON or the HTML form; "
                "rate-limited; audited)",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref("Registration")},
                        "application/x-www-form-urlencoded": {"schema": _ref("Registration")},
                    },
                },
                "responses": {
                    "201": _json(_ref("UserInfo"), "Created (HTML for the form)"),
                    **{code: _ERROR for code in ("400", "403", "409", "429")},
                },
            },
        },
    }


def _environment_paths() -> dict[str, Any]:
    base = "/kohakuriver/api/environments"
    return {
        base: {
            "get": _op(
                "Every environment with its versions",
                {"200": _json(_list_of("environments", "EnvironmentInfo"))},
            ),
            "post": _node_op(
                "Create an environment: its container starts on a docker node",
                {"201": _json(_ref("EnvironmentInfo"), "Created")},
                requestBody=_body("EnvironmentCreate"),
            ),
        },
        base + "/{name}": {
            "get": _op(
                "One environment", {"200": _json(_ref("EnvironmentInfo"))}, parameters=[_ENV_PARAM]
            ),
            "delete": _node_op(
                "Remove the environment's container (versions=true: and its stored versions)",
                {"204": {"description": "Removed"}},
                parameters=[
                    _ENV_PARAM,
                    _query("versions", {"type": "boolean"}, "also delete every stored version"),
                ],
            ),
        },
        base + "/{name}/exec": {
            "post": _node_op(
                "Run an argv in the environment's container",
                {"200": _json(_ref("EnvironmentExecResult"))},
                parameters=[_ENV_PARAM],
                requestBody=_body("EnvironmentExec"),
            )
        },
        base + "/{name}/versions": {
            "get": _op(
                "The stored versions",
                {"200": _json(_list_of("versions", "EnvironmentVersionInfo"))},
                parameters=[_ENV_PARAM],
            ),
            "post": _node_op(
                "Commit the container as kohakuriver/{name}:{tag} and store its tarball",
                {"201": _json(_ref("EnvironmentVersionInfo"), "Created")},
                parameters=[_ENV_PARAM],
                requestBody=_body("EnvironmentCommit"),
            ),
        },
        base + "/{name}/versions/{version}": {
            "delete": _op(
                "Delete a stored version",
                {"204": {"description": "Deleted"}},
                parameters=[_ENV_PARAM, _VERSION_PARAM],
            )
        },
        base + "/{name}/versions/{version}/image": {
            "get": _op(
                "The version's docker-save tarball (runner token or Jupyter auth); "
                "X-Content-SHA256 carries its checksum",
                {"200": {"description": "The tarball", "content": {"application/x-tar": {}}}},
                parameters=[_ENV_PARAM, _VERSION_PARAM],
            )
        },
        base + "/{name}/versions/{version}/upload": {
            "put": _op(
                "A node uploads a committed version (Authorization: Upload <one-time token>)",
                {"200": _json({"type": "object"})},
                parameters=[_ENV_PARAM, _VERSION_PARAM],
                requestBody={"required": True, "content": {"application/x-tar": {}}},
            )
        },
    }


CLUSTER_SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "nodes_total",
        "nodes_online",
        "cores_total",
        "cores_used",
        "memory_total",
        "memory_reserved",
        "gpus_total",
        "gpus_used",
        "queued",
        "running",
    ],
    "properties": {
        k: {"type": "integer"}
        for k in [
            "nodes_total",
            "nodes_online",
            "cores_total",
            "cores_used",
            "memory_total",
            "memory_reserved",
            "gpus_total",
            "gpus_used",
            "queued",
            "running",
        ]
    },
}


@functools.cache
def _document() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(m, "serialization") for m in MODELS], ref_template="#/components/schemas/{model}"
    )
    schemas = dict(defs.get("$defs", {}))
    schemas["Error"] = {
        "type": "object",
        "description": "Every refusal under /kohakuriver/api (docs/api.md, Errors): 401 "
        "carries WWW-Authenticate, 405 carries Allow",
        "required": ["message"],
        "properties": {"message": {"type": "string"}},
    }
    schemas["ClusterSummary"] = CLUSTER_SUMMARY_SCHEMA
    return {
        "openapi": "3.1.0",
        "info": {"title": "kohakuriver-lab host API", "version": __version__},
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "jupyterToken": {"type": "apiKey", "in": "header", "name": "Authorization"}
            },
        },
        "security": [{"jupyterToken": []}],
    }


def openapi_document(base_url: str = "/") -> dict[str, Any]:
    """The document, with the server's base URL as its server."""
    return {**_document(), "servers": [{"url": base_url}]}
