"""The authorization matrix: every route x {anonymous, runner token, viewer, user (own task),
user (another's task), operator, admin by API token, admin by the server token}.

The expected status is derived from each handler's declared access (``@requires``: role and
token scope) plus the task rules (details: owner/operator/admin; control: owner with the user
role, operators, admins). Allowed calls must not answer 401/403 (they may well answer 400,
404 or 409: the point is the authorization decision); refused ones must answer 401/403.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import websockets

from kohakuriver_lab.models import ApiTokenCreate, Role, Scope, UserCreate
from kohakuriver_lab.server.routes import API_PREFIX, PUBLIC_ROUTES, ROUTES
from kohakuriver_lab.server.users import host_owner
from kohakuriver_lab.testing.api import api_call

METHODS = ("get", "post", "put", "patch", "delete")
SOCKETS = ("/runners/connect", "/logs/follow", "/events")
ACTIONS = ("kill", "pause", "resume", "stop", "start", "approve", "reject")
OWNER = "ursula"
PEOPLE = {
    "viewer": ("vera", Role.VIEWER),
    "user_own": (OWNER, Role.USER),
    "user_other": ("ulrich", Role.USER),
    "operator": ("otto", Role.OPERATOR),
    "admin_token": ("ada", Role.ADMIN),
}
# Routes about one task (the ID is a task owned by OWNER): what the caller needs of it.
TASK_RULES: list[tuple[str, str, str]] = [
    (r"^/tasks/\d+$", "get", "none"),  # others' tasks are shown redacted
    (r"^/tasks/\d+/events$", "get", "details"),
    (r"^/tasks/\d+/(approve|reject)$", "post", "operator"),
    (r"^/tasks/\d+/\w+$", "post", "control"),  # kill, pause, resume, stop, start
    (r"^/tasks/\d+/snapshots$", "get", "details"),
    (r"^/tasks/\d+/snapshots", "*", "control"),
    (r"^/tasks/\d+/logs$", "get", "details"),
    (r"^/tasks/\d+/(job|results|artifacts/[\w.]+)$", "get", "details"),
    (r"^/tasks/\d+/(progress|results|artifacts/[\w.]+)$", "*", "control"),
    (r"^/batches/\d+/results$", "get", "details"),
]
# Handlers that authorize inside (no @requires): their minimum role for users.
INNER_RULES = {
    "TaskJobHandler": Role.VIEWER,
    "TaskProgressHandler": Role.USER,
    "TaskResultsHandler": Role.VIEWER,
    "TaskArtifactHandler": Role.VIEWER,
    "EnvironmentImageHandler": Role.OPERATOR,
}
NOT_FOR_USERS = {"EnvironmentUploadHandler"}  # a node's one-time upload token only
# Calls whose answer depends on the body the matrix sends (``{}``): the role that needs.
BODY_RULES = [(r"^/invitations$", "post", Role.ADMIN)]  # {} invites a `user`; operators: viewers
# Routes outside the API that need no credentials at all (the invitation is the credential).
PUBLIC = {"RegisterHandler"}


def route_cases() -> list[tuple[str, str, str]]:
    """(handler name, method, path template with {task}) for every plain HTTP route."""
    cases = []
    for pattern, handler in ROUTES:
        if pattern.endswith(SOCKETS):
            continue
        for method in METHODS:
            if method not in vars(handler):
                continue
            paths = [pattern]
            if "(kill|" in pattern:
                paths = [pattern.replace("(" + "|".join(ACTIONS) + ")", a) for a in ACTIONS]
            for path in paths:
                path = re.sub(r"\(\\d\{1,20\}\)", "{task}", path)
                path = re.sub(
                    r"\(\[A-Za-z0-9\]\[A-Za-z0-9\._-\]\{\{?0,99\}?\}\)", "output.ipynb", path
                )
                path = re.sub(r"\([^)]*\)", "node-a", path)
                cases.append((handler.__name__, method.upper(), path))
    return cases


def expected_allowed(handler_name: str, method: str, path: str, who: str) -> bool:
    """Whether ``who`` may make this call (the matrix)."""
    from kohakuriver_lab.server import routes

    handler = dict((h.__name__, h) for _, h in routes.ROUTES)[handler_name]
    if who == "admin_jupyter":
        return handler_name not in NOT_FOR_USERS
    username, role = PEOPLE[who]
    if handler_name in NOT_FOR_USERS:
        return False
    access = getattr(getattr(handler, method.lower()), "__kohakuriver_access__", None)
    # KeyError: a handler with neither @requires nor an inner rule
    minimum = INNER_RULES[handler_name] if access is None else access[0]
    if not role.at_least(minimum):
        return False
    concrete = path.replace("{task}", "1")
    for regex, rule_method, needed in BODY_RULES:
        if re.match(regex, concrete) and rule_method == method.lower():
            return role.at_least(needed)
    for regex, rule_method, rule in TASK_RULES:
        if re.match(regex, concrete) and rule_method in ("*", method.lower()):
            own = username == OWNER
            if rule == "details":
                return own or role.at_least(Role.OPERATOR)
            if rule == "control":
                return role.at_least(Role.USER) and (own or role.at_least(Role.OPERATOR))
            if rule == "operator":
                return role.at_least(Role.OPERATOR)
            return True
    return True


@pytest.fixture
def people(services: Any, started_host: Any) -> dict[str, dict[str, str]]:
    """Users of each role with an API token each; headers per identity."""
    admin = services.users.caller(host_owner())
    headers: dict[str, dict[str, str]] = {
        "anonymous": {"Authorization": ""},
        "admin_jupyter": {},  # jp_fetch sends the server token
    }
    for who, (name, role) in PEOPLE.items():
        services.users.create(UserCreate(username=name, role=role), admin)
        token = services.api_tokens.create(admin, ApiTokenCreate(name="matrix", username=name))
        headers[who] = {"Authorization": f"Bearer {token.token}"}
    return headers


call = api_call


async def own_task(fetch: Callable[..., Awaitable[Any]], people: dict[str, dict[str, str]]) -> str:
    status, body = await call(
        fetch, "POST", "/tasks", people["user_own"], {"command": ["env"], "env": {"SECRET": "s3"}}
    )
    assert status == 201, body
    return str(body["task_ids"][0])


@pytest.mark.parametrize(("handler", "method", "path"), route_cases())
async def test_authorization_matrix(
    jp_fetch: Callable[..., Awaitable[Any]],
    people: dict[str, dict[str, str]],
    runner_token: str,
    handler: str,
    method: str,
    path: str,
) -> None:
    identities = [*PEOPLE, "admin_jupyter", "anonymous", "runner"]
    for who in identities:
        task = await own_task(jp_fetch, people) if "{task}" in path else ""
        concrete = path.replace("{task}", task)
        headers = {"Authorization": f"Bearer {runner_token}"} if who == "runner" else people[who]
        status, body = await call(jp_fetch, method, concrete, headers)
        if who in ("anonymous", "runner"):
            allowed = who == "runner" and handler == "EnvironmentImageHandler"
            if allowed:
                assert status == 404, (who, method, concrete, status, body)  # past auth
            else:
                assert status in (401, 403), (who, method, concrete, status, body)
            continue
        if expected_allowed(handler, method, path, who):
            assert status not in (401, 403), (who, method, concrete, status, body)
            assert status < 500, (who, method, concrete, status, body)
        else:
            assert status in (401, 403), (who, method, concrete, status, body)


async def test_public_routes_are_open_to_everyone(
    jp_fetch: Callable[..., Awaitable[Any]], people: dict[str, dict[str, str]], runner_token: str
) -> None:
    """Exactly the registration page skips authentication, for every caller alike."""
    from tornado.httpclient import HTTPClientError

    assert {handler.__name__ for _, handler in PUBLIC_ROUTES} == PUBLIC
    runner = {"Authorization": f"Bearer {runner_token}"}
    for pattern, handler in PUBLIC_ROUTES:
        for method in METHODS:
            if method not in vars(handler):
                continue
            assert getattr(getattr(handler, method), "__allow_unauthenticated", False)
            for headers in [*people.values(), runner]:
                body = b"{}" if method != "get" else None
                try:
                    response = await jp_fetch(
                        *pattern.strip("/").split("/"),
                        method=method.upper(),
                        headers=headers,
                        body=body,
                    )
                    status = response.code
                except HTTPClientError as exc:
                    status = exc.code
                # GET: the form; POST {}: refused for what it lacks, never for who asks
                assert status not in (401, 403) and status < 500, (method, pattern, headers)


async def test_every_user_route_declares_its_access() -> None:
    """A new handler without @requires (or an inner rule) fails here, not silently."""
    from kohakuriver_lab.server import routes

    for name, method, _path in route_cases():
        handler = dict((h.__name__, h) for _, h in routes.ROUTES)[name]
        access = getattr(getattr(handler, method.lower()), "__kohakuriver_access__", None)
        assert access is not None or name in INNER_RULES or name in NOT_FOR_USERS, (name, method)
        if access is not None:
            assert isinstance(access[0], Role) and isinstance(access[1], Scope)


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
