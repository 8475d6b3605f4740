"""Client mode without a host: configuration, the proxy's own refusals, the kernel environment.

The two-server test (a real host and a client in client mode) is ``tests/e2e/test_client_mode.py``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.websocket import websocket_connect

from kohakuriver_lab.errors import NotFound
from kohakuriver_lab.server.client_mode import (
    ClientModeError,
    check_api_path,
    env_remote_url,
    is_runner_only,
    remote_settings,
)
from kohakuriver_lab.server.handlers.proxy import ProxyHandler

BIN = Path(sys.executable).parent
SECRET = "kra_unit-test-secret"


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


DEAD_URL = f"http://127.0.0.1:{_dead_port()}/"


@pytest.fixture
def host_config() -> dict[str, Any]:
    return {
        "ClusterHostApp": {
            "remote_url": DEAD_URL,
            "remote_token": SECRET,
            "export_kernel_env": True,
        }
    }


@pytest.fixture(autouse=True)
def _restore_kohakuriver_env() -> Iterator[None]:
    """The client-mode server exports the remote to ``os.environ``: undo it afterwards, or
    in-process servers of later tests would find a personal API token there."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("KOHAKURIVER_")}
    yield
    for name in [k for k in os.environ if k.startswith("KOHAKURIVER_")]:
        del os.environ[name]
    os.environ.update(saved)


def test_env_supplies_the_remote_only_with_a_personal_api_token() -> None:
    url = "https://host.lab:8888/"
    assert env_remote_url({"KOHAKURIVER_URL": url, "KOHAKURIVER_TOKEN": "kra_x"}) == url
    # a host exports its own Jupyter token to its kernels and terminals: that stays a host
    assert env_remote_url({"KOHAKURIVER_URL": url, "KOHAKURIVER_TOKEN": "jupyter-tok"}) == ""
    assert env_remote_url({"KOHAKURIVER_TOKEN": "kra_x"}) == ""


def test_settings_are_checked_and_never_show_the_token() -> None:
    settings = remote_settings("http://h:8888", SECRET)
    assert settings.url == "http://h:8888/"
    assert settings.api_url == "http://h:8888/kohakuriver/api/"
    assert SECRET not in repr(settings)
    with pytest.raises(ClientModeError, match="http:// or https://"):
        remote_settings("h:8888", SECRET)
    with pytest.raises(ClientModeError, match="remote_token"):
        remote_settings("http://h:8888/", "")
    with pytest.raises(ClientModeError, match="remote_ca_certs"):
        remote_settings("https://h:8888/", SECRET, "/no/such/ca.pem")


def test_forwarded_paths_drop_local_credentials() -> None:
    assert check_api_path("tasks?status=running,pending") == "tasks?status=running%2Cpending"
    assert check_api_path("events?token=local&topics=tasks&_xsrf=x") == "events?topics=tasks"
    assert check_api_path("tasks/1/logs/follow?token=local") == "tasks/1/logs/follow"
    with pytest.raises(NotFound):
        check_api_path("tasks/%2E%2E/x")
    with pytest.raises(NotFound):
        check_api_path("runners/connect?token=x")


def test_runner_only_routes() -> None:
    assert is_runner_only("runners/connect")
    assert is_runner_only("environments/base/versions/3/upload?x=1")
    assert not is_runner_only("environments/base/versions/3/image")
    assert not is_runner_only("tasks/1/logs")


async def test_client_mode_server_has_no_host_and_exports_the_remote(
    started_host: Any, tmp_path: Path
) -> None:
    url, token = os.environ.get("KOHAKURIVER_URL"), os.environ.get("KOHAKURIVER_TOKEN")
    # kernels (and the Client/magics in them) talk to the remote host with the API token
    assert (url, token) == (DEAD_URL, SECRET)
    app = started_host.extension_manager.extension_points["kohakuriver"].app
    assert app.services is None and app.remote is not None
    assert not (tmp_path / "host").exists()  # no data dir, no database
    patterns = [str(rule[0]) for rule in app.handlers if "kohakuriver" in str(rule[0])]
    assert patterns[-1] == "/kohakuriver/api/(.*)"  # the proxy
    assert not any("runners/connect" in p for p in patterns)


async def test_unreachable_host_is_a_502_with_a_message(
    started_host: Any, jp_fetch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("kohakuriver", "api", "cluster")
    assert info.value.code == 502
    assert info.value.response is not None
    body = json.loads(info.value.response.body)
    assert DEAD_URL in body["message"] and "unreachable" in body["message"]
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    "path",
    [
        "runners/connect",
        "environments/base/versions/1/upload",
        "tasks/%2e%2e/%2e%2e/%2e%2e/api/contents",
    ],
)
async def test_runner_routes_and_dot_segments_are_not_proxied(
    started_host: Any, host_url: str, path: str
) -> None:
    client = AsyncHTTPClient()
    with pytest.raises(HTTPClientError) as info:
        await client.fetch(
            f"{host_url}kohakuriver/api/{path}",
            headers={"Authorization": f"token {started_host.identity_provider.token}"},
        )
    assert info.value.code == 404


async def test_local_authentication_comes_first(started_host: Any, host_url: str) -> None:
    client = AsyncHTTPClient()
    for headers in ({}, {"Authorization": f"Bearer {SECRET}"}):  # the remote token is no key here
        with pytest.raises(HTTPClientError) as info:
            await client.fetch(f"{host_url}kohakuriver/api/me", headers=headers)
        assert info.value.code in (401, 403)
    ws_url = host_url.replace("http", "ws", 1) + "kohakuriver/api/events"
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(ws_url)
    assert info.value.code in (401, 403)


async def test_websocket_to_an_unreachable_host_is_refused_with_502(
    started_host: Any, host_url: str
) -> None:
    from tornado.httpclient import HTTPRequest

    ws_url = host_url.replace("http", "ws", 1) + "kohakuriver/api/events"
    request = HTTPRequest(
        ws_url, headers={"Authorization": f"token {started_host.identity_provider.token}"}
    )
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(request)
    assert info.value.code == 502


class _FakeHost(web.RequestHandler):
    """Records what reached the "host" and answers like one would."""

    seen: list[dict[str, Any]] = []

    def _record(self) -> None:
        self.seen.append(
            {
                "method": self.request.method,
                "uri": self.request.uri,
                "headers": dict(self.request.headers),
                "body": self.request.body,
            }
        )

    def get(self, path: str) -> None:
        self._record()
        if path == "tasks/1/artifacts/output.ipynb":
            self.set_header("Content-Type", "application/octet-stream")
            self.set_header("Content-Disposition", 'attachment; filename="output.ipynb"')
            self.set_header("Set-Cookie", "host-session=1")
            self.finish(b"\x00notebook")
        else:
            self.set_status(418)
            self.finish({"message": "teapot"})

    def delete(self, path: str) -> None:
        self._record()
        self.set_status(204)

    def post(self, path: str) -> None:
        self._record()
        self.set_status(201)
        self.finish({"ok": True})


async def test_requests_are_forwarded_with_the_api_token_only(
    started_host: Any, host_url: str
) -> None:
    fake = web.Application([(r"/kohakuriver/api/(.*)", _FakeHost)])
    server = fake.listen(int(DEAD_URL.rsplit(":", 1)[1].strip("/")), "127.0.0.1")
    _FakeHost.seen.clear()
    client = AsyncHTTPClient()
    local_token = started_host.identity_provider.token
    local = {
        "Authorization": f"token {local_token}",
        "Cookie": "local-session=secret",
    }
    base = f"{host_url}kohakuriver/api/"
    try:
        got = await client.fetch(base + "tasks/1/artifacts/output.ipynb?x=1", headers=local)
        assert got.body == b"\x00notebook"
        assert got.headers["Content-Type"] == "application/octet-stream"
        assert got.headers["Content-Disposition"] == 'attachment; filename="output.ipynb"'
        assert "host-session" not in got.headers.get("Set-Cookie", "")
        with pytest.raises(HTTPClientError) as info:
            await client.fetch(base + f"nodes?token={local_token}&_xsrf=x")
        assert info.value.code == 418 and info.value.response is not None
        assert json.loads(info.value.response.body) == {"message": "teapot"}
        deleted = await client.fetch(base + "tokens/7", method="DELETE", headers=local)
        assert deleted.code == 204
        posted = await client.fetch(base + "tasks", method="POST", body=b'{"a": 1}', headers=local)
        assert (posted.code, json.loads(posted.body)) == (201, {"ok": True})
    finally:
        server.stop()
    uris = [(s["method"], s["uri"]) for s in _FakeHost.seen]
    assert uris == [
        ("GET", "/kohakuriver/api/tasks/1/artifacts/output.ipynb?x=1"),
        ("GET", "/kohakuriver/api/nodes"),
        ("DELETE", "/kohakuriver/api/tokens/7"),
        ("POST", "/kohakuriver/api/tasks"),
    ]
    assert _FakeHost.seen[-1]["body"] == b'{"a": 1}'
    for seen in _FakeHost.seen:  # the host sees the API token, never the local credentials
        assert seen["headers"]["Authorization"] == f"Bearer {SECRET}"
        assert "Cookie" not in seen["headers"]


def test_proxy_methods_are_locally_authorized() -> None:
    for method in ("get", "post", "put", "patch", "delete"):
        assert hasattr(getattr(ProxyHandler, method), "__wrapped__")


def test_headless_host_refuses_client_mode(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOHAKURIVER_")}
    out = subprocess.run(
        [
            str(BIN / "jupyter-kohakuriver"),
            "--no-browser",
            "--allow-root",
            f"--port={_dead_port()}",
            f"--ClusterHostApp.data_dir={tmp_path / 'host'}",
            f"--ClusterHostApp.remote_url={DEAD_URL}",
            f"--ClusterHostApp.remote_token={SECRET}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode != 0
    assert "cannot run in client mode" in out.stderr
    assert SECRET not in out.stdout + out.stderr
    assert not (tmp_path / "host").exists()
