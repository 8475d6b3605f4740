"""Every route refuses callers without credentials; runner tokens open only the runner socket."""

from __future__ import annotations

import re
from typing import Any

import pytest
import websockets
from tornado.httpclient import HTTPClientError

from kohakuriver_lab.server.routes import API_PREFIX, ROUTES


def concrete(pattern: str) -> str:
    path = re.sub(r"\(\\d\{1,20\}\)", "123", pattern)
    path = re.sub(r"\(kill\|[a-z|]+\)", "kill", path)
    return re.sub(r"\([^)]*\)", "node-a", path)


def every_route() -> list[tuple[str, str]]:
    """(method, path) of every plain HTTP route; the two WebSockets are tested below."""
    pairs = []
    for pattern, handler in ROUTES:
        if pattern.endswith(("/runners/connect", "/logs/follow", "/events")):
            continue
        for method in ("get", "post", "put", "patch", "delete"):
            if method in vars(handler):
                pairs.append((method.upper(), concrete(pattern)))
    return pairs


async def _status(fetch: Any, path: str, method: str, headers: dict[str, str]) -> int:
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    parts = ["kohakuriver", "api", *path.strip("/").split("/")]
    try:
        response = await fetch(*parts, method=method, body=body, headers=headers)
    except HTTPClientError as exc:
        return exc.code
    return int(response.code)


@pytest.mark.parametrize(("method", "path"), every_route())
async def test_no_route_without_credentials(jp_fetch: Any, method: str, path: str) -> None:
    assert await _status(jp_fetch, path, method, {"Authorization": ""}) in (401, 403)
    assert await _status(jp_fetch, path, method, {"Authorization": "token wrong"}) in (401, 403)


@pytest.mark.parametrize(("method", "path"), every_route())
async def test_runner_token_opens_no_user_route(
    jp_fetch: Any, runner_token: str, method: str, path: str
) -> None:
    headers = {"Authorization": f"Bearer {runner_token}"}
    status = await _status(jp_fetch, path, method, headers)
    if path.endswith("/image"):  # runners download environment images: past auth, no such env
        assert status == 404
    else:
        assert status in (401, 403)


async def test_runner_socket_needs_a_runner_token(host_url: str, jp_serverapp: Any) -> None:
    url = host_url.replace("http", "ws", 1).rstrip("/") + API_PREFIX + "/runners/connect"
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"token {jp_serverapp.identity_provider.token}"},
    ):
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(url, additional_headers=headers)
        assert info.value.response.status_code in (401, 403)


@pytest.mark.parametrize("path", ["/tasks/1/logs/follow", "/events"])
async def test_user_sockets_need_jupyter_auth(host_url: str, runner_token: str, path: str) -> None:
    url = host_url.replace("http", "ws", 1).rstrip("/") + API_PREFIX + path
    for headers in ({}, {"Authorization": f"Bearer {runner_token}"}):
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(url, additional_headers=headers)
        assert info.value.response.status_code in (401, 403)
