"""The README's run command: JupyterLab whose server hosts a one-node cluster."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from harness import free_port

from kohakuriver_lab.client import Client
from kohakuriver_lab.server.backend_probe import probe_docker

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def fake_checkout(where: Path) -> Path:
    """A checkout with this repo's ``scripts/run.sh`` and ``.venv`` (linked)."""
    (where / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "run.sh", where / "scripts" / "run.sh")
    (where / ".venv").symlink_to(ROOT / ".venv")
    return where


def test_run_script_serves_lab_with_an_embedded_node(tmp_path: Path) -> None:
    port, token = free_port(), "quickstart-token"
    checkout = fake_checkout(tmp_path / "checkout")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOHAKURIVER_")}
    env["JUPYTER_DATA_DIR"] = str(tmp_path / "data")  # the shared place it no longer uses
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"  # no .venv on it: run.sh puts it first
    argv = [
        "bash",
        str(checkout / "scripts" / "run.sh"),
        "--no-browser",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={tmp_path}",
        "--EmbeddedRunner.node_name=quickstart",
        "--EmbeddedRunner.task_user=runner",  # tasks as the runner, as for a normal user
    ]
    log = open(tmp_path / "lab.log", "wb")  # noqa: SIM115  closed below
    process = subprocess.Popen(argv, stdout=log, stderr=log, env=env, start_new_session=True)
    headers = {"Authorization": f"token {token}"}
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        nodes: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
            try:
                nodes = httpx.get(f"{base}/kohakuriver/api/nodes", headers=headers).json()["nodes"]
            except (httpx.HTTPError, ValueError, KeyError):
                nodes = []
            if any(n["status"] == "online" for n in nodes):
                break
            time.sleep(0.3)
        backends = ["docker", "local"] if probe_docker()[0] else ["local"]
        assert [(n["name"], n["status"], n["backends"]) for n in nodes] == [
            ("quickstart", "online", backends)
        ]
        lab = httpx.get(f"{base}/lab", headers=headers)
        assert lab.status_code == 200 and "JupyterLab" in lab.text
        probe = ["python", "-c", "import sys; print(sys.executable)"]
        created = httpx.post(
            f"{base}/kohakuriver/api/tasks", headers=headers, json={"command": probe}
        )
        assert created.status_code == 201
        with Client(base + "/", token) as client:  # `python` in a task is the .venv's
            task = client.wait(created.json()["task_ids"][0], timeout=60)
            assert (task.status, client.logs(task.task_id).data) == (
                "completed",
                f"{checkout}/.venv/bin/python\n",
            ), task.reason
        # the cluster's state lives in the checkout, not in the user's Jupyter data dir
        assert (checkout / ".kohakuriver" / "cluster.db").is_file()
        assert (checkout / ".kohakuriver" / "embedded-runner").is_dir()
        assert not (tmp_path / "data" / "kohakuriver").exists()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        log.close()


def test_checkout_state_is_git_ignored() -> None:
    paths = [".kohakuriver/cluster.db", "kohakuriver-jobs/1/output.ipynb"]
    ignored = subprocess.run(
        ["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    assert ignored == paths
