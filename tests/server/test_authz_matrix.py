"""The authorization matrix: every route x {anonymous, runner token, viewer, user (own task),
user (another's task), operator, admin by API token, admin by the server token}.

The expected answer of each call comes from the hand-written table in ``authz_expected.py``
(role x route, runner-token routes, owner rules), never from the handlers' own ``@requires``:
a wrong declaration fails here. Allowed calls must not answer 401/403 (they may well answer
400, 404 or 409: the point is the authorization decision) nor 5xx; refused ones must answer
401/403. WebSockets are walked with a real upgrade.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import websockets

from kohakuriver_lab.models import ApiTokenCreate, Role, Scope, UserCreate
from kohakuriver_lab.server.routes import API_PREFIX, PUBLIC_ROUTES, ROUTES
from kohakuriver_lab.server.users import host_owner
from kohakuriver_lab.testing.api import api_call

TABLE_FILE = Path(__file__).with_name("authz_expected.py")


def _load_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("authz_expected", TABLE_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses looks its module up
    spec.loader.exec_module(module)
    return module


expected = _load_table()
Rule = Any  # expected.Rule (a module loaded by path)

METHODS = ("get", "post", "put", "patch", "delete")
OWNER = "ursula"
PEOPLE = {
    "viewer": ("vera", Role.VIEWER),
    "user_own": (OWNER, Role.USER),
    "user_other": ("ulrich", Role.USER),
    "operator": ("otto", Role.OPERATOR),
    "admin_token": ("ada", Role.ADMIN),
}
IDENTITIES = (*PEOPLE, "admin_jupyter", "anonymous", "runner")
PLACEHOLDER = re.compile(r"\{[a-z]+\}")
ALTERNATION = re.compile(r"\(([a-z]+(?:\|[a-z]+)+)\)")
GROUP = re.compile(r"\([^()]*\)")


# =============================================================================
# The registered routes, and the table's coverage of them
# =============================================================================


def _shapes(pattern: str) -> list[str]:
    """A URL pattern as path shapes: word alternations expanded, other groups ``{}``."""
    found = ALTERNATION.search(pattern)
    if found is not None:
        head, tail = pattern[: found.start()], pattern[found.end() :]
        return [s for word in found.group(1).split("|") for s in _shapes(head + word + tail)]
    return [GROUP.sub("{}", pattern)]


def registered() -> set[tuple[str, str]]:
    """(METHOD, shape) of every route the host serves (API shapes without the prefix)."""
    routes = [(p, h) for p, h in ROUTES] + [(p, h) for p, h in PUBLIC_ROUTES]
    return {
        (method.upper(), shape)
        for pattern, handler in routes
        for method in METHODS
        if method in vars(handler)
        for shape in _shapes(pattern)
    }


def _shape(path: str) -> str:
    return PLACEHOLDER.sub("{}", path)


def table() -> dict[tuple[str, str], Any]:
    return {**expected.API, **expected.PUBLIC}


def walked() -> list[tuple[str, str]]:
    """Table rows whose route is registered now (pending ones join once they land)."""
    served = registered()
    return sorted(key for key in table() if (key[0], _shape(key[1])) in served)


def test_the_table_covers_every_route() -> None:
    """A new route without a row fails; so does a row for no route (unless pending)."""
    rows = {(method, _shape(path)): (method, path) for method, path in table()}
    served = registered()
    missing = sorted(served - rows.keys())
    assert not missing, f"routes with no row in authz_expected.py: {missing}"
    pending = {(m, _shape(p)) for m, p in expected.PENDING_ROUTES}
    stale = sorted(rows[key] for key in rows.keys() - served - pending)
    assert not stale, f"rows for routes the host does not serve: {stale}"
    assert all(key in table() for key in expected.PENDING_ROUTES)


def test_the_table_is_not_derived_from_the_handlers() -> None:
    """The table module imports no project code and names no handler attribute."""
    source = TABLE_FILE.read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
            assert set(names) <= {"dataclasses", "typing"}, names
        elif isinstance(node, ast.ImportFrom):
            assert node.module in ("__future__", "dataclasses", "typing"), node.module
    for word in ("kohakuriver_lab", "__kohakuriver_access__", "getattr", "vars("):
        assert word not in source, word


# =============================================================================
# The walk
# =============================================================================


def allowed(rule: Any, who: str) -> bool:
    """The table's answer for one identity."""
    if who == "runner":
        return bool(rule.runner) or rule.role == "anonymous"
    if who == "anonymous":
        return bool(expected.passes(rule, None, False))
    if who == "admin_jupyter":  # the server token: the host's owner, an admin
        return bool(expected.passes(rule, "admin", False))
    username, role = PEOPLE[who]
    return bool(expected.passes(rule, role.value, username == OWNER))


@pytest.fixture
def people(services: Any, started_host: Any) -> dict[str, dict[str, str]]:
    """Users of each role with an API token each; headers per identity."""
    admin = services.users.caller(host_owner())
    token = started_host.identity_provider.token
    headers: dict[str, dict[str, str]] = {
        "anonymous": {"Authorization": ""},
        "admin_jupyter": {},  # jp_fetch sends the server token
        "admin_jupyter_ws": {"Authorization": f"token {token}"},
    }
    for who, (name, role) in PEOPLE.items():
        services.users.create(UserCreate(username=name, role=role), admin)
        created = services.api_tokens.create(admin, ApiTokenCreate(name="matrix", username=name))
        headers[who] = {"Authorization": f"Bearer {created.token}"}
    return headers


call = api_call


async def own_task(fetch: Callable[..., Awaitable[Any]], people: dict[str, dict[str, str]]) -> str:
    status, body = await call(
        fetch, "POST", "/tasks", people["user_own"], {"command": ["env"], "env": {"SECRET": "s3"}}
    )
    assert status == 201, body
    return str(body["task_ids"][0])


async def _http(fetch: Callable[..., Awaitable[Any]], method: str, path: str, headers: Any) -> Any:
    """``(status, body)`` of a call to a full path (outside the API)."""
    from tornado.httpclient import HTTPClientError

    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    try:
        response = await fetch(
            *path.strip("/").split("/"), method=method, headers=headers, body=body
        )
    except HTTPClientError as exc:
        return exc.code, exc.response.body if exc.response else b""
    return response.code, response.body


async def _socket(url: str, headers: dict[str, str]) -> tuple[int, str]:
    """101 when the upgrade is accepted (then closed), else the refusal's status."""
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=10):
            return 101, ""
    except websockets.InvalidStatus as exc:
        return exc.response.status_code, exc.response.body.decode(errors="replace")


@pytest.mark.parametrize(("method", "path"), walked())
async def test_authorization_matrix(
    jp_fetch: Callable[..., Awaitable[Any]],
    people: dict[str, dict[str, str]],
    runner_token: str,
    host_url: str,
    method: str,
    path: str,
) -> None:
    rule = table()[(method, path)]
    for who in IDENTITIES:
        task = await own_task(jp_fetch, people) if "{task}" in path else ""
        concrete = path.replace("{task}", task).replace("{id}", "999999")
        concrete = concrete.replace("{name}", "node-a")
        if who == "runner":
            headers = {"Authorization": f"Bearer {runner_token}"}
        elif who == "admin_jupyter" and rule.socket:
            headers = people["admin_jupyter_ws"]
        else:
            headers = people[who]
        if rule.socket:
            url = host_url.replace("http", "ws", 1).rstrip("/") + API_PREFIX + concrete
            status, body = await _socket(url, headers)
        elif (method, path) in expected.PUBLIC:
            status, body = await _http(jp_fetch, method, concrete, headers)
        else:
            status, body = await call(jp_fetch, method, concrete, headers)
        context = (who, method, concrete, status, body)
        if allowed(rule, who):
            assert status not in (401, 403), context
            assert status < 500, context
        else:
            assert status in (401, 403), context


async def test_a_user_never_sees_another_users_env_or_logs(
    jp_fetch: Callable[..., Awaitable[Any]], people: dict[str, dict[str, str]], host_url: str
) -> None:
    task = await own_task(jp_fetch, people)
    other = people["user_other"]
    status, info = await call(jp_fetch, "GET", f"/tasks/{task}", other)
    assert status == 200 and info["env"] == {} and info["command"] == [] and info["redacted"]
    status, page = await call(jp_fetch, "GET", "/tasks", other)
    mine = [t for t in page["tasks"] if t["task_id"] == task]
    assert mine and mine[0]["env"] == {} and mine[0]["redacted"]
    status, info = await call(jp_fetch, "GET", f"/tasks/{task}", people["user_own"])
    assert info["env"] == {"SECRET": "s3"} and "redacted" not in info
    status, info = await call(jp_fetch, "GET", f"/tasks/{task}", people["operator"])
    assert info["env"] == {"SECRET": "s3"}

    base = host_url.replace("http", "ws", 1).rstrip("/") + API_PREFIX
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{base}/tasks/{task}/logs/follow", additional_headers=other)
    assert refused.value.response.status_code == 403
    async with websockets.connect(f"{base}/events?tasks={task}", additional_headers=other) as ws:
        assert json.loads(await ws.recv())["type"] == "subscribed"
        await call(jp_fetch, "POST", f"/tasks/{task}/kill", people["user_own"])
        frame = json.loads(await ws.recv())
        assert frame["type"] == "task" and frame["task"]["status"] == "killed"
        assert frame["task"]["env"] == {} and frame["task"]["redacted"]


async def test_scopes_narrow_a_token(
    jp_fetch: Callable[..., Awaitable[Any]], services: Any, started_host: Any
) -> None:
    admin = services.users.caller(host_owner())
    services.users.create(UserCreate(username="rita", role=Role.USER), admin)
    read_only = services.api_tokens.create(
        admin, ApiTokenCreate(name="ro", username="rita", scopes=[Scope.READ])
    )
    headers = {"Authorization": f"Bearer {read_only.token}"}
    status, _ = await call(jp_fetch, "GET", "/tasks", headers)
    assert status == 200
    status, body = await call(jp_fetch, "POST", "/tasks", headers, {"command": ["true"]})
    assert status == 403 and "scope" in body["message"]
    status, me = await call(jp_fetch, "GET", "/me", headers)
    assert me["scopes"] == ["read"] and me["via"] == "api-token" and me["role"] == "user"
    # revoked and unknown tokens are refused
    services.api_tokens.revoke(read_only.token_id, admin)
    assert (await call(jp_fetch, "GET", "/tasks", headers))[0] == 401
    bogus = {"Authorization": "Bearer kra_not-a-token"}
    assert (await call(jp_fetch, "GET", "/tasks", bogus))[0] == 401
