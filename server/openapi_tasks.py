"""The OpenAPI paths of tasks, nodes, batches, events and runner tokens."""

from __future__ import annotations

from typing import Any

from .openapi_parts import (
    ID_PARAM,
    NAME_PARAM,
    body,
    json_response,
    list_of,
    node_op,
    op,
    path_param,
    ref,
)
from .queryparams import EVENTS, LOG_FOLLOW, LOG_READ, TASK_LIST, parameters


def task_paths() -> dict[str, Any]:
    """Tasks, nodes, batches, events, runner tokens and the document itself."""
    actions = {
        "kill": ("Kill a task (queued: at once; placed: when its runner confirms)", None),
        "pause": ("Pause a running task (the status follows the runner)", None),
        "resume": ("Resume a paused task (the status follows the runner)", None),
        "stop": ("Stop a VPS, with a snapshot unless snapshot=false", "VpsStop"),
        "start": ("Start a stopped VPS again from its latest snapshot", None),
        "approve": ("Queue a task waiting for approval (operators)", None),
        "reject": ("Reject a task waiting for approval (operators)", "TaskReject"),
    }
    task_actions: dict[str, Any] = {}
    for action, (summary, model) in actions.items():
        extra: dict[str, Any] = {"parameters": [ID_PARAM]}
        if model:
            extra["requestBody"] = body(model)
        path = "/kohakuriver/api/tasks/{task_id}/" + action
        task_actions[path] = {"post": op(summary, {"202": json_response(ref("TaskInfo"))}, **extra)}
    return {
        "/kohakuriver/api/tasks/{task_id}/snapshots": {
            "get": node_op(
                "A VPS's snapshots on its node",
                {"200": json_response(list_of("snapshots", "SnapshotInfo"))},
                parameters=[ID_PARAM],
            ),
            "post": node_op(
                "Snapshot a running VPS (docker commit)",
                {"201": json_response(list_of("snapshots", "SnapshotInfo"), "Created")},
                parameters=[ID_PARAM],
            ),
        },
        "/kohakuriver/api/tasks/{task_id}/snapshots/{tag}": {
            "delete": node_op(
                "Delete one snapshot of a VPS",
                {"204": {"description": "Deleted"}},
                parameters=[ID_PARAM, path_param("tag")],
            )
        },
        "/kohakuriver/api/tasks": {
            "get": op(
                "List tasks, newest first, with cursor pagination",
                {"200": json_response(ref("TaskPage"))},
                parameters=parameters(TASK_LIST),
            ),
            "post": op(
                "Submit a task (one per target, in one batch)",
                {"201": json_response(ref("SubmitResult"), "Created")},
                requestBody=body("TaskSubmit"),
            ),
        },
        "/kohakuriver/api/tasks/{task_id}": {
            "get": op("Get a task", {"200": json_response(ref("TaskInfo"))}, parameters=[ID_PARAM])
        },
        "/kohakuriver/api/tasks/{task_id}/events": {
            "get": op(
                "A task's status transitions",
                {"200": json_response(list_of("events", "TaskEventInfo"))},
                parameters=[ID_PARAM],
            )
        },
        **task_actions,
        "/kohakuriver/api/tasks/{task_id}/logs": {
            "get": op(
                "Bytes of a task's output from an offset",
                {"200": json_response(ref("LogChunk"))},
                parameters=[ID_PARAM, *parameters(LOG_READ)],
            )
        },
        "/kohakuriver/api/tasks/{task_id}/logs/follow": {
            "get": op(
                "WebSocket: follow a task's output live",
                {"101": {"description": "Switching protocols; JSON frames {type: log|end}"}},
                parameters=[ID_PARAM, *parameters(LOG_FOLLOW)],
            )
        },
        "/kohakuriver/api/nodes": {
            "get": op(
                "Every node with usage and latest metrics",
                {"200": json_response(list_of("nodes", "NodeInfo"))},
            )
        },
        "/kohakuriver/api/nodes/{name}": {
            "get": op(
                "One node with its metrics history",
                {"200": json_response(ref("NodeInfo"))},
                parameters=[path_param("name")],
            ),
            "delete": op(
                "Remove an offline node without active or waiting tasks (admins; audited); "
                "its runner tokens are revoked (409 while online or busy)",
                {"204": {"description": "Removed"}},
                parameters=[path_param("name")],
            ),
        },
        "/kohakuriver/api/me": {
            "get": op(
                "Who the caller is to the cluster: name, role, groups, token scopes",
                {"200": json_response(ref("Me"))},
            )
        },
        "/kohakuriver/api/cluster": {
            "get": op("Cluster summary", {"200": json_response(ref("ClusterSummary"))})
        },
        "/kohakuriver/api/tasks/{task_id}/job": {
            "get": op(
                "A job's parameters (task token or Jupyter auth)",
                {"200": json_response({"type": "object"})},
                parameters=[ID_PARAM],
            )
        },
        "/kohakuriver/api/tasks/{task_id}/progress": {
            "post": op(
                "A running job reports its progress (task token)",
                {"204": {"description": "Stored"}},
                parameters=[ID_PARAM],
                requestBody=body("JobProgress"),
            )
        },
        "/kohakuriver/api/tasks/{task_id}/results": {
            "get": op(
                "A task's glued results",
                {
                    "200": json_response(
                        {"type": "object", "properties": {"results": {"type": "object"}}}
                    )
                },
                parameters=[ID_PARAM],
            ),
            "post": op(
                "Glue one result (task token)",
                {"204": {"description": "Stored"}},
                parameters=[ID_PARAM],
                requestBody=body("JobResult"),
            ),
        },
        "/kohakuriver/api/tasks/{task_id}/artifacts/{name}": {
            "get": op(
                "A file of a task (input.ipynb, output.ipynb, ...)",
                {"200": {"description": "The bytes", "content": {"application/octet-stream": {}}}},
                parameters=[ID_PARAM, NAME_PARAM],
            ),
            "put": op(
                "Store a file of a task (task token); output.ipynb is also saved to the contents",
                {"204": {"description": "Stored"}},
                parameters=[ID_PARAM, NAME_PARAM],
                requestBody={"required": False, "content": {"application/octet-stream": {}}},
            ),
        },
        "/kohakuriver/api/batches/{batch_id}/results": {
            "get": op(
                "Every task of a batch (sweep) with parameters, status and results",
                {
                    "200": json_response(
                        {"type": "object", "properties": {"results": {"type": "array"}}}
                    )
                },
                parameters=[path_param("batch_id")],
            )
        },
        "/kohakuriver/api/events": {
            "get": op(
                "WebSocket: live task and node changes",
                {"101": {"description": "JSON frames {type: subscribed|task|node|metrics}"}},
                parameters=parameters(EVENTS),
            )
        },
        "/kohakuriver/api/runner-tokens": {
            "get": op(
                "List runner tokens (no secrets)",
                {"200": json_response(list_of("tokens", "RunnerTokenInfo"))},
            ),
            "post": op(
                "Create a runner token (the secret is shown once)",
                {"201": json_response(ref("RunnerTokenInfo"), "Created")},
                requestBody=body("RunnerTokenCreate"),
            ),
        },
        "/kohakuriver/api/runner-tokens/{token_id}": {
            "delete": op(
                "Revoke a runner token and disconnect its runner",
                {"204": {"description": "Revoked"}},
                parameters=[path_param("token_id")],
            )
        },
        "/kohakuriver/api/runners/connect": {
            "get": op(
                "WebSocket for runners (Authorization: Bearer <runner token>); see kohakuriver_lab.protocol",
                {"101": {"description": "Switching protocols"}},
            )
        },
        "/kohakuriver/api/openapi.json": {
            "get": op("This document", {"200": {"description": "OpenAPI 3 document"}})
        },
    }
