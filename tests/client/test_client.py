"""The REST client against a mocked host (httpx.MockTransport) and a tiny real WebSocket server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typing_extensions import Self
from websockets.asyncio.server import ServerConnection, serve

import kohakuriver_lab.client as client_mod
from kohakuriver_lab.client import (
    AsyncClient,
    BadResponse,
    Client,
    ClientConfigError,
    HostUnreachable,
    WaitTimeout,
)
from kohakuriver_lab.errors import (
    Conflict,
    InvalidRequest,
    KohakuRiverError,
    NotFound,
    Unauthorized,
)
from kohakuriver_lab.models import TaskStatus

URL = "http://host.test:8888/jupyter/"
API = URL + "kohakuriver/api/"
BIG_ID = "7390123456789012345"  # above 2**53: must survive as an exact string/int


def task_json(task_id: str = BIG_ID, status: str = "running", **extra: Any) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "batch_id": "42",
        "task_type": "command",
        "owner": "alice",
        "status": status,
        "command": ["echo", "hi"],
        "req_cores": 1,
        "submitted_at": 1700000000.5,
        **extra,
    }


Handler = Callable[[httpx.Request], httpx.Response]


class Host:
    """Records requests and answers from a route table ``(method, path) -> handler``."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.routes: dict[tuple[str, str], Handler] = {}

    def on(self, method: str, path: str, status: int = 200, body: Any = None) -> None:
        self.routes[(method, path)] = lambda _req: httpx.Response(status, json=body)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/jupyter/kohakuriver/api/")
        handler = self.routes.get((request.method, path))
        if handler is None:
            return httpx.Response(404, json={"message": f"no route {request.method} {path}"})
        return handler(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("KOHAKURIVER_URL", "KOHAKURIVER_TOKEN", "KOHAKURIVER_CONFIG", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("KOHAKURIVER_CA_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def kr(host: Host) -> Iterator[Client]:
    with Client(URL, "secret", transport=httpx.MockTransport(host)) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# =============================================================================
# Configuration discovery
# =============================================================================


def test_env_configures_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOHAKURIVER_URL", "http://h:8888/base")
    monkeypatch.setenv("KOHAKURIVER_TOKEN", "envtok")
    c = Client()
    assert c.url == "http://h:8888/base/"
    assert c.config.api_url == "http://h:8888/base/kohakuriver/api/"
    assert c.config.token == "envtok"
    assert "envtok" not in repr(c)


def test_arguments_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOHAKURIVER_URL", "http://env:1/")
    monkeypatch.setenv("KOHAKURIVER_TOKEN", "envtok")
    c = Client("http://arg:2/", "argtok")
    assert (c.url, c.config.token) == ("http://arg:2/", "argtok")


def test_default_config_file(tmp_path: Path) -> None:
    path = tmp_path / "home" / ".config" / "kohakuriver" / "client.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"url": "http://file:8888/", "token": "filetok"}))
    c = Client()
    assert (c.url, c.config.token) == ("http://file:8888/", "filetok")


def test_config_file_from_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"url": "http://other:1", "token": "t"}))
    monkeypatch.setenv("KOHAKURIVER_CONFIG", str(path))
    assert Client().url == "http://other:1/"


def test_clear_error_without_configuration() -> None:
    with pytest.raises(ClientConfigError) as info:
        Client()
    message = str(info.value)
    assert "KOHAKURIVER_URL" in message and "client.json" in message


def test_broken_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    monkeypatch.setenv("KOHAKURIVER_CONFIG", str(path))
    with pytest.raises(ClientConfigError, match=r"bad\.json"):
        Client()


def test_url_scheme_checked() -> None:
    with pytest.raises(ClientConfigError, match="http"):
        Client("host:8888", "t")


def test_ca_file_from_argument_env_or_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import certifi

    bundle = certifi.where()  # any PEM bundle will do
    with Client("https://h/", "t") as c:
        assert c.config.ca_file is None and c.config.ssl_context() is None
    with Client("https://h/", "t", ca_file=bundle) as c:
        assert c.config.ca_file == bundle
        assert c.config.ws_ssl("wss://h/x") is not None and c.config.ws_ssl("ws://h/x") is None
    monkeypatch.setenv("KOHAKURIVER_CA_FILE", bundle)
    with Client("https://h/", "t") as c:
        assert c.config.ca_file == bundle
    monkeypatch.delenv("KOHAKURIVER_CA_FILE")
    path = tmp_path / "home" / ".config" / "kohakuriver" / "client.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"url": "https://file/", "token": "t", "ca_file": bundle}))
    with Client() as c:
        assert (c.url, c.config.ca_file) == ("https://file/", bundle)
    with pytest.raises(ClientConfigError, match="CA file"):
        Client("https://h/", "t", ca_file=str(tmp_path / "missing.pem"))


def test_import_does_not_need_configuration() -> None:
    assert client_mod.Client is Client  # importing the module reads no env or file


# =============================================================================
# Requests and responses
# =============================================================================


def test_auth_header_and_base_path(kr: Client, host: Host) -> None:
    host.on("GET", f"tasks/{BIG_ID}", body=task_json())
    kr.get_task(BIG_ID)
    assert host.last.headers["Authorization"] == "token secret"
    assert str(host.last.url) == f"{API}tasks/{BIG_ID}"


def test_no_token_sends_no_auth_header(host: Host) -> None:
    host.on("GET", "nodes", body={"nodes": []})
    with Client(URL, transport=httpx.MockTransport(host)) as c:
        assert c.list_nodes() == []
    assert "Authorization" not in host.last.headers


def test_submit_sends_only_given_fields(kr: Client, host: Host) -> None:
    host.on("POST", "tasks", 201, {"task_ids": [BIG_ID, "8"], "batch_id": "9"})
    result = kr.submit(["python", "t.py"], memory="8G", gpus=2, targets=["n1", "n2:0"])
    assert json.loads(host.last.content) == {
        "command": ["python", "t.py"],
        "memory": "8G",
        "gpus": 2,
        "targets": ["n1", "n2:0"],
    }
    assert result.task_ids == [int(BIG_ID), 8] and result.batch_id == 9
    assert result.model_dump(mode="json")["task_ids"] == [BIG_ID, "8"]


def test_submit_all_fields(kr: Client, host: Host) -> None:
    host.on("POST", "tasks", 201, {"task_ids": ["1"], "batch_id": "1"})
    kr.submit(
        ("a", "b"), name="n", cores=4, memory=1024, gpus=[0, 1], targets="n1", env={"A": "1"},
        workdir="/w", priority=5, backend="docker", task_type="vps",
    )  # fmt: skip
    assert json.loads(host.last.content) == {
        "command": ["a", "b"], "name": "n", "cores": 4, "memory": 1024, "gpus": [0, 1],
        "targets": ["n1"], "env": {"A": "1"}, "workdir": "/w", "priority": 5,
        "backend": "docker", "task_type": "vps",
    }  # fmt: skip


def test_submit_refuses_a_shell_string(kr: Client) -> None:
    with pytest.raises(TypeError, match="argv"):
        kr.submit("echo hi")  # type: ignore[arg-type]


def test_list_tasks_query_and_parsing(kr: Client, host: Host) -> None:
    host.on("GET", "tasks", body={"tasks": [task_json()], "next_cursor": None})
    page = kr.list_tasks(
        status=[TaskStatus.RUNNING, "pending"], node="n1", owner="bob", batch=42, limit=10
    )
    assert dict(host.last.url.params) == {
        "status": "running,pending", "node": "n1", "owner": "bob", "batch": "42", "limit": "10",
    }  # fmt: skip
    assert page.tasks[0].task_id == int(BIG_ID)
    assert page.tasks[0].status is TaskStatus.RUNNING
    kr.list_tasks(status="completed")
    assert dict(host.last.url.params) == {"status": "completed"}


def test_iter_tasks_follows_cursors(kr: Client, host: Host) -> None:
    pages = {
        None: {"tasks": [task_json("1"), task_json("2")], "next_cursor": "c1"},
        "c1": {"tasks": [task_json("3")], "next_cursor": "c2"},
        "c2": {"tasks": [], "next_cursor": None},
    }
    host.routes[("GET", "tasks")] = lambda r: httpx.Response(
        200, json=pages[r.url.params.get("cursor")]
    )
    assert [t.task_id for t in kr.iter_tasks(limit=2)] == [1, 2, 3]
    assert [r.url.params.get("cursor") for r in host.requests] == [None, "c1", "c2"]
    assert all(r.url.params["limit"] == "2" for r in host.requests)


def test_task_actions_events_logs(kr: Client, host: Host) -> None:
    for action in ("kill", "pause", "resume"):
        host.on("POST", f"tasks/5/{action}", 202, task_json("5", kill_requested=True))
    assert kr.kill(5).kill_requested
    assert kr.pause("5").task_id == 5
    assert kr.resume(5).task_id == 5
    host.on(
        "GET", "tasks/5/events",
        body={"events": [{"event_id": "1", "task_id": "5", "from_status": None,
                          "to_status": "pending", "actor": "alice", "at": 1.0}]},
    )  # fmt: skip
    (event,) = kr.events(5)
    assert event.to_status is TaskStatus.PENDING and event.from_status is None
    host.on(
        "GET", "tasks/5/logs",
        body={"task_id": "5", "stream": "stderr", "offset": 3, "next_offset": 8,
              "data": "hello", "eof": True},
    )  # fmt: skip
    chunk = kr.logs(5, stream="stderr", offset=3)
    assert dict(host.last.url.params) == {"stream": "stderr", "offset": "3"}
    assert (chunk.data, chunk.next_offset, chunk.eof) == ("hello", 8, True)


def test_nodes_tokens_openapi(kr: Client, host: Host) -> None:
    node = {"name": "n1", "status": "online", "cores": [0, 1], "memory_total": 1 << 30}
    host.on("GET", "nodes", body={"nodes": [node]})
    host.on("GET", "nodes/n1", body={**node, "history": []})
    assert kr.list_nodes()[0].name == "n1"
    assert kr.get_node("n1").history == []
    token = {"token_id": BIG_ID, "name": "gpu1", "node": "n1", "created_at": 1.0}
    host.on("POST", "runner-tokens", 201, {**token, "token": "s3cret"})
    host.on("GET", "runner-tokens", body={"tokens": [token]})
    host.on("DELETE", f"runner-tokens/{BIG_ID}", 204)
    created = kr.create_runner_token("gpu1", node="n1")
    assert json.loads(host.last.content) == {"name": "gpu1", "node": "n1"}
    assert created.token == "s3cret" and created.token_id == int(BIG_ID)
    assert kr.list_runner_tokens()[0].token is None
    kr.revoke_runner_token(BIG_ID)
    assert host.last.method == "DELETE"
    host.on("GET", "openapi.json", body={"openapi": "3.1.0"})
    assert kr.openapi() == {"openapi": "3.1.0"}


def test_wait_polls_until_final(kr: Client, host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    statuses = iter(["pending", "running", "completed"])
    host.routes[("GET", "tasks/5")] = lambda _r: httpx.Response(
        200, json=task_json("5", next(statuses), exit_code=0)
    )
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    info = kr.wait(5, poll=0.2)
    assert info.status is TaskStatus.COMPLETED and info.exit_code == 0
    assert sleeps == pytest.approx([0.2, 0.3])


def test_wait_timeout(kr: Client, host: Host) -> None:
    host.on("GET", "tasks/5", body=task_json("5", "running"))
    with pytest.raises(WaitTimeout, match="5"):
        kr.wait(5, timeout=0.05, poll=0.01)


# =============================================================================
# Errors
# =============================================================================


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, InvalidRequest), (401, Unauthorized), (404, NotFound), (409, Conflict)],
)
def test_error_mapping(kr: Client, host: Host, status: int, cls: type[Exception]) -> None:
    host.on("POST", "tasks", status, {"message": "memory: cannot read memory size 'lots'"})
    with pytest.raises(cls) as info:
        kr.submit(["x"], memory="lots")
    assert str(info.value) == "memory: cannot read memory size 'lots'"


def test_unknown_task_is_not_found(kr: Client) -> None:
    with pytest.raises(NotFound):
        kr.get_task(123)


def test_server_error_keeps_status(kr: Client, host: Host) -> None:
    host.on("GET", "nodes", 500, {"message": "database is locked"})
    with pytest.raises(KohakuRiverError) as info:
        kr.list_nodes()
    assert type(info.value) is KohakuRiverError
    assert info.value.status_code == 500 and "database is locked" in str(info.value)


def test_non_json_error_and_bad_response(kr: Client, host: Host) -> None:
    host.routes[("GET", "nodes")] = lambda _r: httpx.Response(502, text="Bad Gateway")
    with pytest.raises(KohakuRiverError, match="Bad Gateway") as info:
        kr.list_nodes()
    assert info.value.status_code == 502
    host.routes[("GET", "nodes")] = lambda _r: httpx.Response(200, text="<html>login</html>")
    with pytest.raises(BadResponse):
        kr.list_nodes()
    host.on("GET", "tasks/5", body={"task_id": "x"})
    with pytest.raises(BadResponse, match="TaskInfo"):
        kr.get_task(5)


def test_ids_must_be_digits(kr: Client) -> None:
    with pytest.raises(InvalidRequest):
        kr.get_task("../nodes")


def test_connection_refused() -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}/", "t", timeout=5) as c,
        pytest.raises(HostUnreachable, match=r"127\.0\.0\.1"),
    ):
        c.list_nodes()


# =============================================================================
# Async
# =============================================================================


def test_async_client(host: Host) -> None:
    host.on("POST", "tasks", 201, {"task_ids": [BIG_ID], "batch_id": "9"})
    host.on("GET", f"tasks/{BIG_ID}", body=task_json(status="completed"))
    host.on("GET", "tasks/404", 404, {"message": "no task 404"})
    pages = {
        None: {"tasks": [task_json("1")], "next_cursor": "c"},
        "c": {"tasks": [task_json("2")]},
    }
    host.routes[("GET", "tasks")] = lambda r: httpx.Response(
        200, json=pages[r.url.params.get("cursor")]
    )

    async def main() -> None:
        async with AsyncClient(URL, "secret", transport=httpx.MockTransport(host)) as c:
            result = await c.submit(["echo"], memory="8G")
            assert json.loads(host.last.content) == {"command": ["echo"], "memory": "8G"}
            assert host.last.headers["Authorization"] == "token secret"
            info = await c.wait(result.task_ids[0])
            assert info.status is TaskStatus.COMPLETED
            assert [t.task_id async for t in c.iter_tasks()] == [1, 2]
            with pytest.raises(NotFound, match="no task 404"):
                await c.get_task(404)

    asyncio.run(main())


def test_async_connection_refused() -> None:
    async def main() -> None:
        async with AsyncClient(f"http://127.0.0.1:{free_port()}/", "t", timeout=5) as c:
            with pytest.raises(HostUnreachable):
                await c.get_task(1)

    asyncio.run(main())


# =============================================================================
# Live logs over a real WebSocket
# =============================================================================


class LogServer:
    """A WebSocket server in its own thread that plays a fixed log conversation."""

    def __init__(self, frames: list[dict[str, Any]], refuse: int | None = None) -> None:
        self.frames = frames
        self.refuse = refuse
        self.paths: list[str] = []
        self.auth: list[str | None] = []
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.paths.append(ws.request.path)
        self.auth.append(ws.request.headers.get("Authorization"))
        for frame in self.frames:
            await ws.send(json.dumps(frame))

    def _check(self, ws: ServerConnection, request: Any) -> Any:
        if self.refuse is None:
            return None
        return ws.respond(self.refuse, json.dumps({"message": f"refused {self.refuse}"}))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(self._handle, "127.0.0.1", 0, process_request=self._check) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(5)


FRAMES: list[dict[str, Any]] = [
    {"type": "log", "stream": "stdout", "offset": 0, "next_offset": 6, "data": "hello\n"},
    {"type": "log", "stream": "stderr", "offset": 0, "next_offset": 5, "data": "warn\n"},
    {"type": "end", "status": "completed", "exit_code": 0},
    {"type": "log", "stream": "stdout", "offset": 6, "next_offset": 9, "data": "no\n"},
]


def test_follow_logs_sync() -> None:
    with LogServer(FRAMES) as server, Client(f"http://127.0.0.1:{server.port}/", "tok") as c:
        lines = list(c.follow_logs(5, offset=6))
    assert lines == [("stdout", "hello\n"), ("stderr", "warn\n")]
    assert server.paths == ["/kohakuriver/api/tasks/5/logs/follow?stream=both&offset=6"]
    assert server.auth == ["token tok"]


def test_follow_logs_sync_inside_running_loop() -> None:
    """As in a Jupyter kernel: a loop already runs in this thread."""

    async def kernel_cell(c: Client) -> list[tuple[str, str]]:
        return list(c.follow_logs(5, stream="stdout"))

    with LogServer(FRAMES) as server, Client(f"http://127.0.0.1:{server.port}/", "tok") as c:
        assert asyncio.run(kernel_cell(c))[0] == ("stdout", "hello\n")


def test_follow_logs_sync_stop_early() -> None:
    with LogServer(FRAMES) as server, Client(f"http://127.0.0.1:{server.port}/", "tok") as c:
        stream = c.follow_logs(5)
        assert next(stream) == ("stdout", "hello\n")
        stream.close()  # type: ignore[attr-defined]


def test_follow_logs_async() -> None:
    async def main(port: int) -> list[tuple[str, str]]:
        async with AsyncClient(f"http://127.0.0.1:{port}/jupyter", "tok") as c:
            agen: AsyncIterator[tuple[str, str]] = c.follow_logs("5", stream="stderr")
            return [item async for item in agen]

    with LogServer(FRAMES) as server:
        assert asyncio.run(main(server.port)) == [("stdout", "hello\n"), ("stderr", "warn\n")]
    assert server.paths[0].startswith("/jupyter/kohakuriver/api/tasks/5/logs/follow?stream=stderr")


def test_follow_logs_closed_early_is_an_error() -> None:
    with (
        LogServer(FRAMES[:1]) as server,
        Client(f"http://127.0.0.1:{server.port}/", "t") as c,
        pytest.raises(HostUnreachable, match="before the task ended"),
    ):
        list(c.follow_logs(5))


def test_follow_logs_connection_refused() -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}/", "t", timeout=5) as c,
        pytest.raises(HostUnreachable),
    ):
        list(c.follow_logs(5))


@pytest.mark.parametrize(("status", "cls"), [(404, NotFound), (401, Unauthorized)])
def test_follow_logs_handshake_refused(status: int, cls: type[Exception]) -> None:
    with (
        LogServer([], refuse=status) as server,
        Client(f"http://127.0.0.1:{server.port}/", "t") as c,
        pytest.raises(cls, match=f"refused {status}"),
    ):
        list(c.follow_logs(5))
