"""Shared fixtures: a Jupyter server with the cluster host, API helpers, fake runners."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kohakuriver_lab.testing.integration import missing

pytest_plugins = ("pytest_jupyter.jupyter_server",)


def reset_postgres(url: str) -> None:
    """Empty the test database."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite"])
def db_backend(request: pytest.FixtureRequest) -> str:
    """Which database the host uses (overridden to add PostgreSQL where it matters)."""
    return str(request.param)


@pytest.fixture
def host_db_url(db_backend: str, tmp_path: Any) -> str:
    """A database URL for one test."""
    if db_backend == "postgres":
        url = os.environ.get("KOHAKURIVER_TEST_PG_URL")
        if not url:
            missing("PostgreSQL not available (set KOHAKURIVER_TEST_PG_URL)")
        assert url
        reset_postgres(url)
        return url
    return "sqlite:///" + str(tmp_path / "cluster.db")


@pytest.fixture
def host_config() -> dict[str, Any]:
    """Extra traitlets config for the host in a test (override per module)."""
    return {}


@pytest.fixture
def jp_server_config(
    tmp_path: Any, host_db_url: str, host_config: dict[str, Any]
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "ServerApp": {"jpserver_extensions": {"kohakuriver_lab": True}},
        "ClusterHostApp": {
            "data_dir": str(tmp_path / "host"),
            "db_url": host_db_url,
            "sweep_interval": 0.1,
            "export_kernel_env": False,
            "remote_url": "",  # a host, whatever $KOHAKURIVER_URL/_TOKEN say (client mode)
        },
        "NodeRegistry": {"heartbeat_interval": 0.2},
    }
    for section, values in host_config.items():
        config.setdefault(section, {}).update(values)
    return config


class Api:
    """Small JSON helper over ``jp_fetch`` that returns (status, body) without raising."""

    def __init__(self, fetch: Callable[..., Awaitable[Any]]) -> None:
        self._fetch = fetch

    async def call(
        self, method: str, path: str, body: Any = None, **params: Any
    ) -> tuple[int, Any]:
        from tornado.httpclient import HTTPClientError

        kwargs: dict[str, Any] = {"method": method}
        if body is not None:
            kwargs["body"] = body if isinstance(body, str | bytes) else json.dumps(body)
        elif method in ("POST", "PUT", "PATCH"):
            kwargs["body"] = b""
        if params:
            kwargs["params"] = {k: str(v) for k, v in params.items()}
        try:
            response = await self._fetch(
                "kohakuriver", "api", *path.strip("/").split("/"), **kwargs
            )
        except HTTPClientError as exc:
            assert exc.response is not None
            text = exc.response.body.decode() if exc.response.body else ""
            return exc.code, (json.loads(text) if text.startswith("{") else text)
        text = response.body.decode() if response.body else ""
        return response.code, (json.loads(text) if text else None)

    async def get(self, path: str, **params: Any) -> Any:
        status, body = await self.call("GET", path, **params)
        assert status == 200, (status, body)
        return body

    async def post(self, path: str, body: Any = None, expect: int | None = None) -> Any:
        status, data = await self.call("POST", path, body)
        if expect is not None:
            assert status == expect, (status, data)
        return data


@pytest.fixture
def started_host(jp_serverapp: Any, jp_asyncio_loop: Any) -> Any:
    """The server with its extensions started (pytest-jupyter skips ``_post_start``)."""
    jp_asyncio_loop.run_until_complete(jp_serverapp.extension_manager.start_all_extensions())
    return jp_serverapp


@pytest.fixture
def api(jp_fetch: Callable[..., Awaitable[Any]], started_host: Any) -> Api:
    """JSON calls to ``/kohakuriver/api/...`` as the authenticated test user."""
    return Api(jp_fetch)


@pytest.fixture
def host_url(started_host: Any, jp_base_url: str, http_server_client: Any) -> str:
    """The HTTP base URL of the test server (with its base path); the server is listening."""
    return f"http://127.0.0.1:{started_host.port}{jp_base_url}"


@pytest.fixture
def services(jp_serverapp: Any) -> Any:
    """The host's services object."""
    return jp_serverapp.web_app.settings["kohakuriver_services"]


@pytest.fixture
def runner_token(services: Any) -> str:
    """A fresh runner token."""
    from kohakuriver_lab.models import RunnerTokenCreate

    info = services.tokens.create(RunnerTokenCreate(name="test"), created_by="test")
    return str(info.token)


@pytest.fixture
def make_runner_token(services: Any) -> Callable[..., str]:
    """Make more runner tokens: a token binds to the first node name it says hello as."""
    from kohakuriver_lab.models import RunnerTokenCreate

    def make(name: str = "test", node: str | None = None) -> str:
        info = services.tokens.create(RunnerTokenCreate(name=name, node=node), created_by="test")
        return str(info.token)

    return make
