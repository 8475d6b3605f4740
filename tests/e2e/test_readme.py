"""The README's code blocks, run as written against the Quick start: ``scripts/run.sh`` in a
checkout of its own (random token, port of its own), then each block the way a reader runs
it: bash blocks in one shell from the checkout, Python blocks as scripts with
``KOHAKURIVER_URL``/``KOHAKURIVER_TOKEN``, ``%kohaku`` blocks in a real IPython kernel. Blocks
that are configuration for other machines are listed with the reason they are not run here."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import free_port

from kohakuriver_lab.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
VENV_BIN = ROOT / ".venv" / "bin"

NOT_RUN = {  # a block's first line -> why this test does not run it
    "bash scripts/run.sh": "the Quick start itself: this test starts run.sh (test.sh is CI)",
    "KOHAKURIVER_RUNNER_TOKEN=krr_": "runs on another node (tests/e2e/test_local_stack.py)",
    "c.ClusterHostApp.remote_url": "a member's config (tests/e2e/test_client_mode.py)",
    "c.ServerApp.identity_provider_class": "a host's login config (tests/server/test_login.py)",
    "c.JupyterHub.services = [{": "JupyterHub (tests/e2e/test_jupyterhub.py runs it)",
    "import os": "JupyterHub host config (tests/e2e/test_jupyterhub.py runs it)",
    "kohakuriver_lab/   shared core": "a directory tree, not code",
}


@dataclass
class Block:
    lang: str
    code: str

    @property
    def first_line(self) -> str:
        return self.code.splitlines()[0] if self.code else ""


def readme_blocks() -> list[Block]:
    return [Block(m[0], m[1]) for m in re.findall(r"```(\w*)\n(.*?)```", README.read_text(), re.S)]


def runnable() -> list[Block]:
    """Every block not in :data:`NOT_RUN`; each ``NOT_RUN`` entry names exactly one block."""
    blocks = readme_blocks()
    for start in NOT_RUN:
        hits = [b for b in blocks if b.first_line.startswith(start)]
        assert len(hits) == 1, f"NOT_RUN entry {start!r} matches {len(hits)} README blocks"
    run = [b for b in blocks if not any(b.first_line.startswith(s) for s in NOT_RUN)]
    assert all(b.lang in ("bash", "python") for b in run), [b.lang for b in run]
    return run


@dataclass
class QuickStart:
    checkout: Path
    env: dict[str, str]
    url: str
    token: str

    def client(self) -> Client:
        return Client(self.url, self.token)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuickStart]:
    """``bash scripts/run.sh`` in a fresh checkout (the repo's scripts, examples and .venv)."""
    tmp = tmp_path_factory.mktemp("readme")
    checkout = tmp / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "run.sh", checkout / "scripts" / "run.sh")
    shutil.copytree(ROOT / "examples", checkout / "examples")
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    checkout.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOHAKURIVER_")}
    env.update(JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTER_DATA_DIR=str(tmp / "data"))
    env.update(JUPYTER_CONFIG_DIR=str(tmp / "config"), IPYTHONDIR=str(tmp / "ipython"))
    argv = ["bash", "scripts/run.sh", "--no-browser", f"--port={free_port()}"]
    log = open(tmp / "lab.log", "wb")  # noqa: SIM115  closed below
    process = subprocess.Popen(
        argv, cwd=checkout, stdout=log, stderr=log, env=env, start_new_session=True
    )
    try:
        info = _server_info(tmp / "runtime", process, tmp / "lab.log")
        qs = QuickStart(checkout, env, info["url"], info["token"])
        with qs.client() as client:
            while not any(n.status.value == "online" for n in client.list_nodes()):
                assert process.poll() is None, (tmp / "lab.log").read_text()[-3000:]
                time.sleep(0.2)
        yield qs
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
        log.close()


def _server_info(runtime: Path, process: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    """The server's runtime file (URL, token), once it answers."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        for path in runtime.glob("jpserver-*.json"):
            info: dict[str, Any] = json.loads(path.read_text() or "{}")
            try:
                r = httpx.get(info["url"] + "api/status", params={"token": info["token"]})
            except (httpx.HTTPError, KeyError):
                continue
            if r.status_code == 200:
                return info
        time.sleep(0.2)
    raise AssertionError("the Quick start did not come up: " + log.read_text()[-3000:])


def _run_env(qs: QuickStart) -> dict[str, str]:
    env = dict(qs.env, KOHAKURIVER_URL=qs.url, KOHAKURIVER_TOKEN=qs.token)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_every_block_is_run_or_has_a_reason() -> None:
    kinds = [("kernel" if "%kohaku" in b.code else b.lang) for b in runnable()]
    assert kinds.count("bash") >= 3 and kinds.count("python") >= 2 and "kernel" in kinds


def test_bash_blocks_in_one_shell(quickstart: QuickStart) -> None:
    script = "\n".join(b.code for b in runnable() if b.lang == "bash")
    script += '\necho "README_ID=$ID"\n'  # the test's own line: which task it created
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=quickstart.checkout,
        env=quickstart.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr + out
    assert '"message"' not in out, out  # no request was refused
    task_id = re.search(r"README_ID=(\d+)", out)
    assert task_id, out
    for expected in ('"tasks": [{', '"nodes"', '"krr_', '"alice"', '"kra_', '"kri_'):
        assert expected in out, (expected, out)
    with quickstart.client() as client:
        task = client.wait(task_id[1], timeout=60)
        assert task.status == "killed"
        assert client.logs(task.task_id).data == "hi\n"


def test_python_blocks_as_scripts(quickstart: QuickStart) -> None:
    blocks = [b for b in runnable() if b.lang == "python" and "%kohaku" not in b.code]
    outputs = []
    for block in blocks:
        done = subprocess.run(
            [str(VENV_BIN / "python"), "-c", block.code],
            cwd=quickstart.checkout,
            env=_run_env(quickstart),
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, f"{block.code}\n{done.stderr}"
        outputs.append(done.stdout)
    client_out, cluster_out = outputs
    # the Client block: a status string, the task's output, from the runner's interpreter
    assert re.match(r"completed 0 \S+ \[\]\n", client_out), client_out
    assert "hello from" in client_out and f"{ROOT}/.venv/bin/python" in client_out, client_out
    # the Cluster block: a notebook job, its glued loss, the executed notebook's cells, a sweep
    assert re.search(r"^\d+ completed \{'loss': [0-9.e-]+\}\n5\n", cluster_out, re.M), cluster_out
    assert cluster_out.count("completed") >= 5, cluster_out


def test_magics_block_in_a_kernel(quickstart: QuickStart) -> None:
    (block,) = [b for b in runnable() if "%kohaku" in b.code]
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=_run_env(quickstart), cwd=str(quickstart.checkout))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        out = ""
        for line in block.code.splitlines():  # one cell per line, as typed in a notebook
            if line.strip() and not line.lstrip().startswith("#"):
                cell_out, errors = _execute(kc, line, timeout=300)
                assert not errors, (line, errors, cell_out)
                out += cell_out
        assert re.search(r"task \d+: completed", out), out
        assert "hello\n" in out and "0\n1\n2\n" in out, out
        assert "'loss'" in out, out
        out, errors = _execute(kc, "print(t.status, job.info.name, str(job.info.status))")
        assert (out, errors) == ("completed train.ipynb completed\n", []), out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _execute(kc: Any, code: str, timeout: float = 60) -> tuple[str, list[str]]:
    out: list[str] = []
    errors: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(content["text"])
        elif msg["msg_type"] in ("execute_result", "display_data"):
            out.append(content["data"].get("text/plain", "") + "\n")
        elif msg["msg_type"] == "error":
            errors.append(f"{content['ename']}: {content['evalue']}")

    kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    return "".join(out), errors


if __name__ == "__main__":  # list what the test runs
    for b in runnable():
        print(b.lang, "|", b.first_line, file=sys.stderr)
