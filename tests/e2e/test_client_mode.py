"""Client mode with two real Jupyter servers: a host (``jupyter kohakuriver`` with an embedded
runner) and a lab member's own ``jupyter server`` proxying to it with a personal API token.

Everything below goes through the CLIENT's URL with the CLIENT's Jupyter token; the client
holds no database and forwards with the member's ``kra_`` token, so the host sees the member.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from harness import BIN, HostProcess, _child_env, free_port, terminate, wait_for, wait_node
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from kohakuriver_lab.client import Client

CLIENT_TOKEN = "client-jupyter-token"


class ClientServer:
    """A lab member's ``jupyter server`` in client mode (its own port, token and data dir)."""

    def __init__(self, workdir: Path, remote_url: str, remote_token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.data_dir = workdir / "client-data"
        self.log_path = workdir / "client.log"
        root = workdir / "client-root"
        root.mkdir()
        env = _child_env()
        env["JUPYTER_DATA_DIR"] = str(self.data_dir)
        env["KOHAKURIVER_TOKEN"] = remote_token  # the token from the environment, the URL below
        argv = [
            str(BIN / "jupyter-server"),
            "--allow-root",
            "--no-browser",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={CLIENT_TOKEN}",
            f"--ServerApp.root_dir={root}",
            f"--ClusterHostApp.remote_url={remote_url}",
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115  closed with the process
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=log, env=env, stdin=subprocess.DEVNULL
        )

    def wait_ready(self, timeout: float = 30.0) -> ClientServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"client exited: {self.log_path.read_text()[-3000:]}")
            try:
                r = httpx.get(self.url + "api/status", headers=self.auth)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("client server did not start")

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {CLIENT_TOKEN}"}

    @property
    def api(self) -> str:
        return self.url + "kohakuriver/api/"

    def stop(self) -> None:
        terminate(self.process)


@pytest.fixture
def host(make_host: Callable[..., HostProcess]) -> HostProcess:
    host = make_host(embedded=True)
    with host.client() as owner:
        wait_node(owner, "embedded", "online")
    return host


@pytest.fixture
def member_token(host: HostProcess) -> str:
    """A ``user``-role member with a personal API token, made by the host's owner."""
    owner = {"Authorization": "token e2e-secret-token"}
    api = host.url + "kohakuriver/api/"
    r = httpx.post(api + "users", headers=owner, json={"username": "alice", "role": "user"})
    assert r.status_code == 201, r.text
    r = httpx.post(api + "tokens", headers=owner, json={"name": "laptop", "username": "alice"})
    assert r.status_code == 201, r.text
    token = str(r.json()["token"])
    assert token.startswith("kra_")
    return token


@pytest.fixture
def client_server(host: HostProcess, member_token: str, workdir: Path) -> Iterator[ClientServer]:
    server = ClientServer(workdir, host.url, member_token).wait_ready()
    yield server
    server.stop()


def _ws(url: str, headers: dict[str, str]) -> ClientConnection:
    return connect(url.replace("http", "ws", 1), additional_headers=headers, open_timeout=10)


def test_client_mode_proxies_the_cluster_api_and_sockets(
    host: HostProcess, client_server: ClientServer, member_token: str
) -> None:
    api, auth = client_server.api, client_server.auth
    timings: dict[str, float] = {}

    # who we are: the token's user on the host, not the local Jupyter user
    me = httpx.get(api + "me", headers=auth).json()
    assert (me["username"], me["role"], me["via"]) == ("alice", "user", "api-token")

    with Client(client_server.url, CLIENT_TOKEN) as cluster:
        assert cluster.me() == "alice"
        # the events socket, proxied frame by frame, sees our task's frames
        with _ws(api + "events?topics=tasks", auth) as events:
            assert json.loads(events.recv(timeout=10)) == {
                "type": "subscribed",
                "topics": ["tasks"],
            }
            start = time.monotonic()
            batch = cluster.submit(["echo", "hi"])
            task_id = batch.task_ids[0]
            task = wait_for(cluster, task_id, {"completed", "failed"})
            timings["submit to completed"] = time.monotonic() - start
            assert task.status.value == "completed" and task.owner == "alice"
            statuses = set()
            while "completed" not in statuses:
                frame = json.loads(events.recv(timeout=10))
                if frame["type"] == "task" and str(frame["task"]["task_id"]) == str(task_id):
                    statuses.add(frame["task"]["status"])
            assert {"running", "completed"} <= statuses

        assert cluster.logs(task_id).data == "hi\n"
        # the log-follow socket, proxied: output, then the end frame closes both sides
        start = time.monotonic()
        followed = "".join(text for _, text in cluster.follow_logs(task_id))
        timings["follow logs"] = time.monotonic() - start
        assert followed == "hi\n"
        # as JupyterLab opens it: the local token in the query (dropped before forwarding)
        with _ws(api + f"tasks/{task_id}/logs/follow?token={CLIENT_TOKEN}", {}) as follow:
            frames = [json.loads(frame) for frame in follow]
        assert [f["type"] for f in frames] == ["log", "end"] and frames[0]["data"] == "hi\n"
        assert frames[1]["status"] == "completed" and follow.close_code == 1000

    # the host's 4xx comes back unchanged: status, JSON message, content type
    bad = {"command": "echo hi"}  # not an argv list
    via_client = httpx.post(api + "tasks", headers=auth, json=bad)
    direct = httpx.post(
        host.url + "kohakuriver/api/tasks",
        headers={"Authorization": f"Bearer {member_token}"},
        json=bad,
    )
    assert via_client.status_code == direct.status_code == 400
    assert via_client.json() == direct.json() and "command" in via_client.json()["message"]
    assert via_client.headers["content-type"].startswith("application/json")
    missing = httpx.get(api + "tasks/12345", headers=auth)
    assert missing.status_code == 404 and "12345" in missing.json()["message"]

    # what a `user` may not do is refused by the host
    audit = httpx.get(api + "audit", headers=auth)
    assert audit.status_code == 403 and audit.json()["message"]
    with pytest.raises(InvalidStatus) as refused:
        _ws(api + "tasks/12345/logs/follow", auth)
    assert refused.value.response.status_code == 404

    # runner-only routes are not proxied
    assert httpx.get(api + "runners/connect", headers=auth).status_code == 404

    # without the client's Jupyter token the client refuses before proxying
    for headers in ({}, {"Authorization": f"Bearer {member_token}"}):
        assert httpx.get(api + "me", headers=headers).status_code in (401, 403)
        with pytest.raises(InvalidStatus) as refused:
            _ws(api + "events", headers)
        assert refused.value.response.status_code in (401, 403)

    # the client is no host: no cluster database, no data dir of its own
    assert not (client_server.data_dir / "kohakuriver").exists()
    assert not list(client_server.data_dir.glob("**/cluster.db"))
    log = client_server.log_path.read_text()
    assert "client mode" in log and member_token not in log

    # the host gone: a clear 502 from the client
    host.stop()
    gone = httpx.get(api + "tasks", headers=auth)
    assert gone.status_code == 502
    assert "unreachable" in gone.json()["message"] and host.url in gone.json()["message"]
    with pytest.raises(InvalidStatus) as refused:
        _ws(api + "events", auth)
    assert refused.value.response.status_code == 502
    print("\nclient mode timings:", {k: f"{v:.2f}s" for k, v in timings.items()})
