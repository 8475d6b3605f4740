"""The OpenAPI 3 document of the REST API, built from the shared pydantic models."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel

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

from .openapi_contract import (
    body_models,
    body_modes,
    path_parameters,
    route_groups,
    schemas_by_mode,
    statuses,
)
from .openapi_people import environment_paths, invitation_paths, people_paths
from .openapi_tasks import task_paths

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
    from .routes import API_PREFIX, PUBLIC_ROUTES, ROUTES  # routes import the handlers

    paths = {**environment_paths(), **invitation_paths(), **task_paths(), **people_paths()}
    schemas, refs = schemas_by_mode(MODELS, body_models(paths))
    schemas["Error"] = {
        "type": "object",
        "description": "Every refusal under /kohakuriver/api (docs/api.md, Errors): 401 "
        "carries WWW-Authenticate, 405 carries Allow",
        "required": ["message"],
        "properties": {"message": {"type": "string"}},
    }
    schemas["ClusterSummary"] = CLUSTER_SUMMARY_SCHEMA
    groups = {**route_groups(API_PREFIX, ROUTES), **route_groups("", PUBLIC_ROUTES)}
    path_parameters(paths, groups)
    body_modes(paths, refs, {m.__name__: m for m in MODELS})
    statuses(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "kohakuriver-lab host API", "version": __version__},
        "paths": paths,
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
