"""The OpenAPI document says what the handlers enforce (issue 19): query parameters, bodies,
path parameters and statuses come from the same declarations the handlers use."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kohakuriver_lab.server.openapi import openapi_document
from kohakuriver_lab.server.routes import ROUTES

DOC = openapi_document("/")
PATHS: dict[str, Any] = DOC["paths"]


def _param(path: str, method: str, name: str) -> dict[str, Any]:
    params = PATHS["/kohakuriver/api" + path][method]["parameters"]
    return next(p for p in params if p["name"] == name)


@pytest.mark.parametrize(
    "path",
    ["audit?actor=&action=&before=", "tasks?status=&node=&owner=&batch=&cursor="],
)
async def test_empty_text_and_id_filters_are_left_out(api: Any, path: str) -> None:
    route, _, query = path.partition("?")
    params = dict(part.split("=") for part in query.split("&")) if query else {}
    status, body = await api.call("GET", route, **params)
    assert status == 200, body
    for name in params:
        schema = _param("/" + route, "get", name)["schema"]
        assert re.fullmatch(schema.get("pattern", ".*"), ""), (name, schema)  # "" is allowed


@pytest.mark.parametrize(
    "path", ["tokens?all=", "tokens?all=yes", "tasks?count=1", "tasks?limit=", "tasks?status=x,"]
)
async def test_values_outside_the_schema_are_400(api: Any, path: str) -> None:
    route, _, query = path.partition("?")
    name, _, value = query.partition("=")
    status, body = await api.call("GET", route, **{name: value})
    assert status == 400, body
    assert name in body["message"], body


async def test_a_body_the_document_refuses_is_refused(api: Any) -> None:
    """pydantic would take ``false`` as 0; the document says integer."""
    status, body = await api.call("PUT", "quotas", {"subject": "user:u", "max_vps": False})
    assert status == 400 and "max_vps" in body["message"], body
    status, body = await api.call("POST", "invitations", {"max_uses": True})
    assert status == 400 and "max_uses" in body["message"], body


async def test_optional_bodies_are_documented_optional(api: Any) -> None:
    for method, path in [("patch", "/settings"), ("post", "/invitations")]:
        assert PATHS["/kohakuriver/api" + path][method]["requestBody"]["required"] is False
    status, body = await api.call("PATCH", "settings")
    assert status == 200, body
    assert PATHS["/kohakuriver/api/tasks"]["post"]["requestBody"]["required"] is True


def test_path_parameters_carry_their_route_pattern() -> None:
    """Each documented path parameter is the route's own group, anchored, ASCII digits."""
    names = {
        "/environments/{name}": r"[a-z0-9][a-z0-9_.-]{0,62}",
        "/tasks/{task_id}": r"[0-9]{1,20}",
        "/nodes/{name}": r"[A-Za-z0-9._-]{1,63}",
    }
    for path, group in names.items():
        param = PATHS["/kohakuriver/api" + path]["get"]["parameters"][0]
        assert param["schema"]["pattern"] == f"^(?:{group})$"
    routes = {p for p, _ in ROUTES}
    assert r"/nodes/([A-Za-z0-9._-]{1,63})" in routes


def test_every_operation_declares_its_error_statuses() -> None:
    for path, item in PATHS.items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert {"400", "404"} <= codes, (method, path)
            if operation.get("security") != []:
                assert {"401", "403"} <= codes, (method, path)
            if "requestBody" in operation:
                assert "413" in codes, (method, path)
    actions = [p for p in PATHS if re.fullmatch(r"/kohakuriver/api/tasks/\{task_id\}/[a-z]+", p)]
    reject = PATHS["/kohakuriver/api/tasks/{task_id}/reject"]["post"]["requestBody"]
    assert reject["content"]["application/json"]["schema"]["$ref"].endswith("/TaskReject")
    assert len(actions) >= 7
