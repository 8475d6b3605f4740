"""Users, roles, API tokens, approvals and the audit log through the REST API."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kohakuriver_lab.models import ApiTokenCreate, Role, UserCreate
from kohakuriver_lab.server.users import host_owner
from kohakuriver_lab.testing.api import api_call as call

Fetch = Callable[..., Awaitable[Any]]


@pytest.fixture
def token_of(services: Any, started_host: Any) -> Callable[[str, Role], dict[str, str]]:
    admin = services.users.caller(host_owner())

    def make(name: str, role: Role) -> dict[str, str]:
        services.users.create(UserCreate(username=name, role=role), admin)
        token = services.api_tokens.create(admin, ApiTokenCreate(name="t", username=name))
        return {"Authorization": f"Bearer {token.token}"}

    return make


async def test_roles_deactivation_and_audit(jp_fetch: Fetch, token_of: Any) -> None:
    bob = token_of("bob", Role.VIEWER)
    status, body = await call(jp_fetch, "POST", "/tasks", bob, {"command": ["true"]})
    assert status == 403 and "user role" in body["message"]
    status, user = await call(jp_fetch, "PATCH", "/users/bob", {}, {"role": "user"})
    assert status == 200 and user["role"] == "user"
    status, _ = await call(jp_fetch, "POST", "/tasks", bob, {"command": ["true"]})
    assert status == 201
    status, _ = await call(jp_fetch, "PATCH", "/users/bob", bob, {"role": "admin"})
    assert status == 403  # no self-promotion
    status, _ = await call(jp_fetch, "PATCH", "/users/bob", {}, {"active": False})
    assert status == 200
    status, body = await call(jp_fetch, "GET", "/tasks", bob)
    assert status == 403 and "deactivated" in body["message"]
    status, _ = await call(jp_fetch, "PATCH", "/users/bob", {}, {"role": "wizard"})
    assert status == 400
    owner = host_owner()
    status, _ = await call(jp_fetch, "PATCH", f"/users/{owner}", {}, {"role": "viewer"})
    assert status == 409  # the host's owner stays admin

    status, audit = await call(jp_fetch, "GET", "/audit", {})
    actions = [(e["action"], e["target"]) for e in audit["events"]]
    assert ("user.updated", "bob") in actions and ("user.created", "bob") in actions
    assert any(action == "token.created" for action, _ in actions)
    changes = [e["detail"] for e in audit["events"] if e["action"] == "user.updated"]
    assert {"active": [True, False]} in changes and {"role": ["viewer", "user"]} in changes
    assert all("kra_" not in json.dumps(e) for e in audit["events"])  # no secrets
    status, _ = await call(jp_fetch, "GET", "/audit", token_of("olga", Role.OPERATOR))
    assert status == 403


async def test_api_tokens_are_shown_once_and_listed_without_secrets(
    jp_fetch: Fetch, token_of: Any, services: Any
) -> None:
    carol = token_of("carol", Role.USER)
    status, created = await call(
        jp_fetch, "POST", "/tokens", carol, {"name": "laptop", "scopes": ["read", "submit"]}
    )
    assert status == 201 and created["token"].startswith("kra_")
    assert created["expires_at"] > created["created_at"]  # 90 days by default
    fresh = {"Authorization": f"Bearer {created['token']}"}
    assert (await call(jp_fetch, "GET", "/me", fresh))[1]["scopes"] == ["read", "submit"]
    services.api_tokens.flush_last_used()
    status, listing = await call(jp_fetch, "GET", "/tokens", carol)
    assert {t["name"] for t in listing["tokens"]} == {"t", "laptop"}
    assert all(t["token"] is None for t in listing["tokens"])
    laptop = next(t for t in listing["tokens"] if t["name"] == "laptop")
    assert laptop["last_used_at"] is not None  # recorded without a write per request
    # a token may not mint tokens without the admin scope; others' tokens are not visible
    assert (await call(jp_fetch, "POST", "/tokens", fresh, {"name": "x"}))[0] == 403
    dave = token_of("dave", Role.USER)
    assert (await call(jp_fetch, "DELETE", f"/tokens/{laptop['token_id']}", dave))[0] == 404
    assert (await call(jp_fetch, "GET", "/tokens", dave, None))[1]["tokens"][0]["name"] == "t"
    status, _ = await call(jp_fetch, "DELETE", f"/tokens/{laptop['token_id']}", carol)
    assert status == 204
    assert (await call(jp_fetch, "GET", "/me", fresh))[0] == 401


async def test_approval_flow(jp_fetch: Fetch, token_of: Any) -> None:
    erin = token_of("erin", Role.USER)
    oscar = token_of("oscar", Role.OPERATOR)
    status, settings = await call(
        jp_fetch, "PATCH", "/settings", erin, {"approvals_required": True}
    )
    assert status == 403
    status, settings = await call(jp_fetch, "PATCH", "/settings", {}, {"approvals_required": True})
    assert status == 200 and settings == {"approvals_required": True}

    _, first = await call(jp_fetch, "POST", "/tasks", erin, {"command": ["true"]})
    _, second = await call(jp_fetch, "POST", "/tasks", erin, {"command": ["true"]})
    one, two = first["task_ids"][0], second["task_ids"][0]
    _, task = await call(jp_fetch, "GET", f"/tasks/{one}", erin)
    assert task["status"] == "pending_approval"
    _, by_operator = await call(jp_fetch, "POST", "/tasks", oscar, {"command": ["true"]})
    _, task = await call(jp_fetch, "GET", f"/tasks/{by_operator['task_ids'][0]}", oscar)
    assert task["status"] == "pending"  # operators are not held

    assert (await call(jp_fetch, "POST", f"/tasks/{one}/approve", erin))[0] == 403
    status, task = await call(jp_fetch, "POST", f"/tasks/{one}/approve", oscar)
    assert status == 202 and task["status"] == "pending"
    assert (await call(jp_fetch, "POST", f"/tasks/{one}/approve", oscar))[0] == 409
    status, body = await call(jp_fetch, "POST", f"/tasks/{two}/reject", oscar, {})
    assert status == 400 and "reason" in body["message"]
    status, task = await call(
        jp_fetch, "POST", f"/tasks/{two}/reject", oscar, {"reason": "use fewer GPUs"}
    )
    assert status == 202 and task["status"] == "rejected"
    assert task["reason"] == "rejected by oscar: use fewer GPUs"
    _, audit = await call(jp_fetch, "GET", "/audit", {}, None)
    actions = {(e["action"], e["actor"]) for e in audit["events"]}
    assert {
        ("task.approved", "oscar"),
        ("task.rejected", "oscar"),
        ("settings.updated", host_owner()),
    } <= actions


async def test_killing_anothers_task_is_audited(jp_fetch: Fetch, token_of: Any) -> None:
    fay = token_of("fay", Role.USER)
    olga = token_of("olga2", Role.OPERATOR)
    _, submitted = await call(jp_fetch, "POST", "/tasks", fay, {"command": ["sleep", "1"]})
    task_id = submitted["task_ids"][0]
    assert (await call(jp_fetch, "POST", f"/tasks/{task_id}/kill", olga))[0] == 202
    _, audit = await call(jp_fetch, "GET", "/audit", {}, None)
    kills = [e for e in audit["events"] if e["action"] == "task.killed"]
    assert kills and kills[0]["actor"] == "olga2" and kills[0]["detail"] == {"owner": "fay"}


async def test_unknown_identities_get_the_configured_role(services: Any, started_host: Any) -> None:
    caller = services.users.caller("stranger")
    assert caller.role is Role.VIEWER  # UserDirectory.new_user_role default
    services.users.new_user_role = "none"
    from kohakuriver_lab.errors import Forbidden

    with pytest.raises(Forbidden, match="not a member"):
        services.users.caller("another-stranger")
