"""Open sockets follow the rights of their identity (issue 10, attack 5).

A member opens the events and log-follow sockets with a personal API token; revoking the
token, deactivating the account, demoting the user or the token expiring must close (or
narrow) them within 1 s of the call that changed the rights. Real host, real WebSockets.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from kohakuriver_lab.models import ApiTokenCreate, Role, UserCreate
from kohakuriver_lab.server.db.orm import ApiToken
from kohakuriver_lab.server.routes import API_PREFIX
from kohakuriver_lab.server.users import host_owner
from kohakuriver_lab.testing.api import api_call as call

Fetch = Callable[..., Awaitable[Any]]
BUDGET = 1.0
"""Seconds a socket may stay open after the call that took its rights away returned."""
SECRET = "hunter2-d3m0t10n"


class Member:
    """A cluster user with an API token."""

    def __init__(self, services: Any, name: str, role: Role) -> None:
        admin = services.users.caller(host_owner())
        services.users.create(UserCreate(username=name, role=role), admin)
        token = services.api_tokens.create(admin, ApiTokenCreate(name="ws", username=name))
        self.name = name
        self.token_id = token.token_id
        self.headers = {"Authorization": f"Bearer {token.token}"}


@pytest.fixture
def ws_base(host_url: str) -> str:
    return host_url.replace("http", "ws", 1).rstrip("/") + API_PREFIX


async def submit(fetch: Fetch, who: Member, **body: Any) -> str:
    status, data = await call(fetch, "POST", "/tasks", who.headers, {"command": ["x"], **body})
    assert status == 201, data
    return str(data["task_ids"][0])


async def open_sockets(ws_base: str, who: Member, task: str) -> tuple[Any, Any]:
    """The events socket (subscribed) and a log follow of ``task``, as ``who``."""
    events = await websockets.connect(f"{ws_base}/events", additional_headers=who.headers)
    assert json.loads(await events.recv())["type"] == "subscribed"
    follow = await websockets.connect(
        f"{ws_base}/tasks/{task}/logs/follow", additional_headers=who.headers
    )
    return events, follow


async def closed_within(ws: Any, budget: float = BUDGET) -> tuple[int, str]:
    """The close code and reason, once the socket closes (frames before are read and
    dropped); fails if it is still open after ``budget`` seconds."""

    async def drain() -> tuple[int, str]:
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, "closed without a close frame"
            return exc.rcvd.code, exc.rcvd.reason

    try:
        return await asyncio.wait_for(drain(), budget)
    except asyncio.TimeoutError:
        raise AssertionError(f"socket still open {budget} s after the rights changed") from None


async def test_revoking_the_token_closes_its_sockets(
    jp_fetch: Fetch, services: Any, ws_base: str
) -> None:
    mia = Member(services, "mia", Role.USER)
    task = await submit(jp_fetch, mia)
    events, follow = await open_sockets(ws_base, mia, task)
    assert services.sockets.count("mia") == 2
    status, _ = await call(jp_fetch, "DELETE", f"/tokens/{mia.token_id}", {})
    assert status == 204
    for ws in (events, follow):
        code, reason = await closed_within(ws)
        assert (code, reason) == (4001, "API token revoked")
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{ws_base}/events", additional_headers=mia.headers)
    assert refused.value.response.status_code == 401


async def test_deactivating_the_user_closes_their_sockets(
    jp_fetch: Fetch, services: Any, ws_base: str
) -> None:
    mia = Member(services, "mia", Role.USER)
    task = await submit(jp_fetch, mia)
    events, follow = await open_sockets(ws_base, mia, task)
    status, body = await call(jp_fetch, "PATCH", "/users/mia", {}, {"active": False})
    assert status == 200 and body["active"] is False
    for ws in (events, follow):
        code, reason = await closed_within(ws)
        assert code == 4003 and "deactivated" in reason


async def test_a_demoted_operator_sees_only_redacted_tasks(
    jp_fetch: Fetch, services: Any, ws_base: str
) -> None:
    """Operator → viewer: the log follow of another user's task closes (4003); the events
    socket stays open but never again carries another user's env (or other details)."""
    otto = Member(services, "otto", Role.OPERATOR)
    ulla = Member(services, "ulla", Role.USER)
    first = await submit(jp_fetch, ulla, env={"TOKEN": SECRET})
    events, follow = await open_sockets(ws_base, otto, first)
    second = await submit(jp_fetch, ulla, env={"TOKEN": SECRET})
    frame = await next_task_frame(events, second)
    assert frame["task"]["env"] == {"TOKEN": SECRET}  # an operator sees it: the control

    status, body = await call(jp_fetch, "PATCH", "/users/otto", {}, {"role": "viewer"})
    assert status == 200 and body["role"] == "viewer"
    code, reason = await closed_within(follow)
    assert code == 4003 and f"task {first}" in reason

    # every frame from here on: others' tasks redacted
    raw: list[str] = []
    third = await submit(jp_fetch, ulla, env={"TOKEN": SECRET})
    assert (await call(jp_fetch, "POST", f"/tasks/{first}/kill", ulla.headers))[0] == 202
    frame = await next_task_frame(events, first, raw, status="killed")  # after third's
    assert frame["task"]["redacted"] and frame["task"]["env"] == {}
    shown = [json.loads(r)["task"] for r in raw if json.loads(r)["type"] == "task"]
    assert third in [t["task_id"] for t in shown] and all(t["redacted"] for t in shown)
    assert not [r for r in raw if SECRET in r]
    await events.close()


async def test_an_expiring_token_closes_its_sockets_at_expiry(
    jp_fetch: Fetch, services: Any, ws_base: str
) -> None:
    mia = Member(services, "mia", Role.USER)
    task = await submit(jp_fetch, mia)  # the token is cached from here on
    expires = time.time() + 1.0
    with services.db() as session:
        session.get(ApiToken, mia.token_id).expires_at = expires
        session.commit()
    services.api_tokens._cache.clear()  # as after a restart: the new expiry is read
    events, follow = await open_sockets(ws_base, mia, task)
    for ws in (events, follow):
        code, reason = await closed_within(ws, budget=expires - time.time() + BUDGET)
        assert (code, reason) == (4001, "API token expired")
    assert time.time() >= expires


async def test_a_role_change_of_someone_else_leaves_sockets_alone(
    jp_fetch: Fetch, services: Any, ws_base: str
) -> None:
    mia = Member(services, "mia", Role.USER)
    Member(services, "vera", Role.USER)
    task = await submit(jp_fetch, mia)
    events, follow = await open_sockets(ws_base, mia, task)
    assert (await call(jp_fetch, "PATCH", "/users/vera", {}, {"role": "viewer"}))[0] == 200
    assert (await call(jp_fetch, "PATCH", "/users/mia", {}, {"role": "operator"}))[0] == 200
    assert (await call(jp_fetch, "POST", f"/tasks/{task}/kill", mia.headers))[0] == 202
    frame = await next_task_frame(events, task, status="killed")
    assert not frame["task"].get("redacted")
    end = json.loads(await asyncio.wait_for(follow.recv(), 10))  # own task: open to its end
    assert end["type"] == "end" and end["status"] == "killed"
    await events.close()


async def next_task_frame(
    ws: Any, task: str, raw: list[str] | None = None, status: str | None = None
) -> dict[str, Any]:
    """The next ``task`` frame about ``task`` (with ``status``); every frame read is kept
    in ``raw``."""

    async def read() -> dict[str, Any]:
        while True:
            text = await ws.recv()
            if raw is not None:
                raw.append(text)
            frame = json.loads(text)
            about = frame["type"] == "task" and frame["task"]["task_id"] == task
            if about and status in (None, frame["task"]["status"]):
                return frame  # type: ignore[no-any-return]

    return await asyncio.wait_for(read(), 5)


async def test_a_clients_log_follow_says_why_it_was_closed(
    jp_fetch: Fetch, services: Any, host_url: str
) -> None:
    """The Python client turns the host's 4001 into ``Unauthorized`` (not "host unreachable"),
    so a notebook cell following logs says that the token was revoked."""
    from kohakuriver_lab._client_config import ClientConfig
    from kohakuriver_lab._ws import follow
    from kohakuriver_lab.errors import Unauthorized

    mia = Member(services, "mia", Role.USER)
    task = await submit(jp_fetch, mia)
    token = mia.headers["Authorization"].split()[1]
    stream = follow(ClientConfig(host_url.rstrip("/") + "/", token), task, "stdout", 0, 10)
    reader = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)
    deadline = time.monotonic() + 5
    while services.sockets.count("mia") < 1:
        assert time.monotonic() < deadline, "the log follow never opened"
        await asyncio.sleep(0.01)
    status, _ = await call(jp_fetch, "DELETE", f"/tokens/{mia.token_id}", {})
    assert status == 204
    with pytest.raises(Unauthorized, match="API token revoked"):
        await asyncio.wait_for(reader, BUDGET)
