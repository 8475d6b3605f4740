"""The OpenAPI paths of people (users, tokens, invitations, quotas, settings, audit) and
environments."""

from __future__ import annotations

from typing import Any

from .openapi_parts import (
    ENV_PARAM,
    NAME_PARAM,
    VERSION_PARAM,
    body,
    json_response,
    list_of,
    node_op,
    op,
    path_param,
    query,
    ref,
)
from .queryparams import AUDIT, ENVIRONMENT_DELETE, TOKEN_LIST, parameters


def people_paths() -> dict[str, Any]:
    base = "/kohakuriver/api"
    return {
        base + "/users": {
            "get": op(
                "Every cluster user (operators)",
                {"200": json_response(list_of("users", "UserInfo"))},
            ),
            "post": op(
                "Add a member before their first login (admins; audited)",
                {"201": json_response(ref("UserInfo"), "Created")},
                requestBody=body("UserCreate"),
            ),
        },
        base + "/users/{name}": {
            "get": op(
                "One user (operators)",
                {"200": json_response(ref("UserInfo"))},
                parameters=[NAME_PARAM],
            ),
            "patch": op(
                "Change a user's role, groups or active flag (admins; audited)",
                {"200": json_response(ref("UserInfo"))},
                parameters=[NAME_PARAM],
                requestBody=body("UserUpdate"),
            ),
        },
        base + "/tokens": {
            "get": op(
                "Your API tokens (admins: all=true for everyone's), without secrets",
                {"200": json_response(list_of("tokens", "ApiTokenInfo"))},
                parameters=parameters(TOKEN_LIST),
            ),
            "post": op(
                "Create an API token (the secret is shown once)",
                {"201": json_response(ref("ApiTokenInfo"), "Created")},
                requestBody=body("ApiTokenCreate"),
            ),
        },
        base + "/tokens/{token_id}": {
            "delete": op(
                "Revoke one of your API tokens (admins: anyone's)",
                {"204": {"description": "Revoked"}},
                parameters=[path_param("token_id")],
            )
        },
        base + "/settings": {
            "get": op("Cluster settings", {"200": json_response(ref("ClusterSettings"))}),
            "patch": op(
                "Change cluster settings (admins; audited)",
                {"200": json_response(ref("ClusterSettings"))},
                requestBody=body("ClusterSettings"),
            ),
        },
        base + "/quotas": {
            "get": op(
                "Every quota (operators)", {"200": json_response(list_of("quotas", "QuotaInfo"))}
            ),
            "put": op(
                "Set the quota of user:NAME or group:NAME (admins; audited)",
                {"200": json_response(ref("QuotaInfo"))},
                requestBody=body("QuotaInfo"),
            ),
        },
        base + "/quotas/{subject}": {
            "delete": op(
                "Drop a quota (admins; audited)",
                {"204": {"description": "Deleted"}},
                parameters=[path_param("subject")],
            )
        },
        base + "/audit": {
            "get": op(
                "The audit log, newest first (admins)",
                {"200": json_response(list_of("events", "AuditEventInfo"))},
                parameters=parameters(AUDIT),
            )
        },
    }


def invitation_paths() -> dict[str, Any]:
    base = "/kohakuriver/api/invitations"
    html = {"text/html": {"schema": {"type": "string"}}}
    error_or_page = {
        "description": "Error (JSON request) or the form again with the error (the form)",
        "content": {"application/json": {"schema": ref("Error")}, **html},
    }
    return {
        base: {
            "post": op(
                "Invite a member: the token and registration URL are shown once (admins: any "
                "role; operators: viewers only; audited)",
                {"201": json_response(ref("InvitationInfo"), "Created")},
                requestBody=body("InvitationCreate"),
            ),
            "get": op(
                "Every invitation, without secrets (admins)",
                {"200": json_response(list_of("invitations", "InvitationInfo"))},
            ),
        },
        base + "/{invitation_id}": {
            "delete": op(
                "Revoke an invitation (admins; audited)",
                {"204": {"description": "Revoked"}},
                parameters=[path_param("invitation_id")],
            )
        },
        "/kohakuriver/register": {
            "get": {
                "summary": "The registration form (no credentials: the invitation is one)",
                "security": [],
                "parameters": [query("token", {"type": "string"}, "the invitation token")],
                "responses": {"200": {"description": "HTML page", "content": html}},
            },
            "post": {
                "summary": "Create an account with an invitation (JSON or the HTML form; "
                "rate-limited; audited)",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": ref("Registration")},
                        "application/x-www-form-urlencoded": {"schema": ref("Registration")},
                    },
                },
                "responses": {
                    "201": {
                        "description": "Created: UserInfo (JSON request) or a page (the form)",
                        "content": {"application/json": {"schema": ref("UserInfo")}, **html},
                    },
                    **{code: error_or_page for code in ("400", "403", "409", "413", "429")},
                },
            },
        },
    }


def environment_paths() -> dict[str, Any]:
    base = "/kohakuriver/api/environments"
    return {
        base: {
            "get": op(
                "Every environment with its versions",
                {"200": json_response(list_of("environments", "EnvironmentInfo"))},
            ),
            "post": node_op(
                "Create an environment: its container starts on a docker node",
                {"201": json_response(ref("EnvironmentInfo"), "Created")},
                requestBody=body("EnvironmentCreate"),
            ),
        },
        base + "/{name}": {
            "get": op(
                "One environment",
                {"200": json_response(ref("EnvironmentInfo"))},
                parameters=[ENV_PARAM],
            ),
            "delete": node_op(
                "Remove the environment's container (versions=true: and its stored versions)",
                {"204": {"description": "Removed"}},
                parameters=[ENV_PARAM, *parameters(ENVIRONMENT_DELETE)],
            ),
        },
        base + "/{name}/exec": {
            "post": node_op(
                "Run an argv in the environment's container",
                {"200": json_response(ref("EnvironmentExecResult"))},
                parameters=[ENV_PARAM],
                requestBody=body("EnvironmentExec"),
            )
        },
        base + "/{name}/versions": {
            "get": op(
                "The stored versions",
                {"200": json_response(list_of("versions", "EnvironmentVersionInfo"))},
                parameters=[ENV_PARAM],
            ),
            "post": node_op(
                "Commit the container as kohakuriver/{name}:{tag} and store its tarball",
                {"201": json_response(ref("EnvironmentVersionInfo"), "Created")},
                parameters=[ENV_PARAM],
                requestBody=body("EnvironmentCommit"),
            ),
        },
        base + "/{name}/versions/{version}": {
            "delete": op(
                "Delete a stored version",
                {"204": {"description": "Deleted"}},
                parameters=[ENV_PARAM, VERSION_PARAM],
            )
        },
        base + "/{name}/versions/{version}/image": {
            "get": op(
                "The version's docker-save tarball (runner token or Jupyter auth); "
                "X-Content-SHA256 carries its checksum",
                {"200": {"description": "The tarball", "content": {"application/x-tar": {}}}},
                parameters=[ENV_PARAM, VERSION_PARAM],
            )
        },
        base + "/{name}/versions/{version}/upload": {
            "put": op(
                "A node uploads a committed version (Authorization: Upload <one-time token>)",
                {"200": json_response({"type": "object"})},
                parameters=[ENV_PARAM, VERSION_PARAM],
                requestBody={"required": True, "content": {"application/x-tar": {}}},
            )
        },
    }
