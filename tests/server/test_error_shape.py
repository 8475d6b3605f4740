"""Every answer under /kohakuriver/api that is not a success is the document's ``Error``:
JSON ``{"message": ...}``, 401 with ``WWW-Authenticate``, 405 with ``Allow`` (issue 19)."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest

from kohakuriver_lab.models import ApiTokenCreate, Role, UserCreate
from kohakuriver_lab.server.openapi import openapi_document
from kohakuriver_lab.server.users import host_owner

ERROR_SCHEMA = openapi_document("/")["components"]["schemas"]["Error"]


def error_of(response: httpx.Response, status: int) -> str:
    """The message of an error answer with ``status``, once it fits the Error schema."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:300]
    body = response.json()
    jsonschema.validate(body, ERROR_SCHEMA)
    return str(body["message"])


@pytest.fixture
def jupyter_auth(started_host: Any) -> dict[str, str]:
    return {"Authorization": f"token {started_host.identity_provider.token}"}


def make_token(services: Any, username: str, role: Role) -> str:
    admin = services.users.caller(host_owner())
    services.users.create(UserCreate(username=username, role=role), admin)
    created = services.api_tokens.create(admin, ApiTokenCreate(name="t", username=username))
    return str(created.token)


@pytest.mark.parametrize(
    "path",
    [
        "tasks/abc/logs",
        "environments/%22%C2%96",
        "tokens/O%C3%B1x",
        "tasks/0/snapshots/%5Ex",
        "nodes/%5BW",
        "no-such-route",
        "",
    ],
)
async def test_unmatched_paths_are_json_404(
    host_url: str, jupyter_auth: dict[str, str], path: str
) -> None:
    async with httpx.AsyncClient(headers=jupyter_auth) as client:
        for method in ("GET", "POST", "DELETE"):
            response = await client.request(method, f"{host_url}kohakuriver/api/{path}")
            assert "no route" in error_of(response, 404)


async def test_an_undeclared_method_is_405_with_allow(
    host_url: str, jupyter_auth: dict[str, str]
) -> None:
    async with httpx.AsyncClient(headers=jupyter_auth) as client:
        response = await client.put(f"{host_url}kohakuriver/api/tasks", content=b"{}")
        error_of(response, 405)
        assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}
        assert "PUT" not in response.headers["Allow"]
        response = await client.request("TRACE", f"{host_url}kohakuriver/api/me")
        error_of(response, 405)
        assert "GET" in response.headers["Allow"]


async def test_no_credentials_401_with_a_challenge_no_right_403(
    host_url: str, services: Any
) -> None:
    url = f"{host_url}kohakuriver/api/tasks"
    viewer = make_token(services, "vic", Role.VIEWER)
    async with httpx.AsyncClient() as client:
        response = await client.post(
            url, headers={"Authorization": f"Bearer {viewer}"}, json={"command": ["a"]}
        )
        assert "user" in error_of(response, 403)
        assert "WWW-Authenticate" not in response.headers
        for headers in ({}, {"Authorization": "Bearer kra_not-a-token"}):
            for response in (
                await client.get(url, headers=headers),
                await client.post(url, headers=headers, content=b'{"command": ["true"]}'),
                await client.get(f"{host_url}kohakuriver/api/events", headers=headers),
            ):
                error_of(response, 401)
                assert "Bearer" in response.headers["WWW-Authenticate"]


async def test_api_token_in_jupyters_header_form_submits(host_url: str, services: Any) -> None:
    """``Authorization: token kra_...`` is the API token, for POST as for GET (no XSRF)."""
    token = make_token(services, "tom", Role.USER)
    async with httpx.AsyncClient(headers={"Authorization": f"token {token}"}) as client:
        response = await client.post(f"{host_url}kohakuriver/api/tasks", json={"command": ["a"]})
        assert response.status_code == 201, response.text
        me = await client.get(f"{host_url}kohakuriver/api/me")
        assert me.json()["username"] == "tom" and me.json()["via"] == "api-token"


async def test_a_websocket_route_without_upgrade_is_json_426(
    host_url: str, jupyter_auth: dict[str, str]
) -> None:
    async with httpx.AsyncClient(headers=jupyter_auth) as client:
        response = await client.get(f"{host_url}kohakuriver/api/events")
        assert "WebSocket" in error_of(response, 426)
        assert response.headers["Upgrade"] == "websocket"
