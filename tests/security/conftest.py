"""Security tests: real host, runner and task processes (the e2e harness), hostile members."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "e2e"))

from harness import TOKEN, HostProcess, wait_node


@pytest.fixture
def embedded_host(tmp_path: Path, host_db_url: str) -> Iterator[HostProcess]:
    """``jupyter kohakuriver`` with its embedded runner (node ``embedded``), as the README's
    Quick start runs it; the host's token is on its command line, as users often do."""
    host = HostProcess(tmp_path, host_db_url, embedded=True).start()
    try:
        with host.client() as owner:
            wait_node(owner, "embedded", "online", timeout=60)
        yield host
    finally:
        host.stop()
        _kill_leftover_tasks(tmp_path)


def _kill_leftover_tasks(root: Path) -> None:
    import os
    import signal

    for pidfile in root.glob("**/supervisor.pid"):
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        except (ValueError, OSError):
            pass


@pytest.fixture
def make_member(embedded_host: HostProcess) -> Callable[[str, str], str]:
    """``make_member(name, role)`` → that cluster user's personal ``kra_`` API token."""
    api = embedded_host.url + "kohakuriver/api/"
    owner = {"Authorization": f"token {TOKEN}"}

    def make(name: str, role: str = "user") -> str:
        r = httpx.post(api + "users", headers=owner, json={"username": name, "role": role})
        assert r.status_code == 201, r.text
        r = httpx.post(api + "tokens", headers=owner, json={"name": "t", "username": name})
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    return make
