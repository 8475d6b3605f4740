"""A real host (embedded local runner) and a real IPython kernel per module."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "e2e"))

from harness import TOKEN, HostProcess

VENV_BIN = str(Path(sys.executable).parent)


def notebook(*sources: str, parameters: str | None = None) -> dict[str, Any]:
    """A small python3 notebook; ``parameters`` becomes the tagged parameters cell."""
    cells = []
    if parameters is not None:
        cells.append(_cell(parameters, ["parameters"]))
    cells += [_cell(src) for src in sources]
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "cells": cells,
    }


def _cell(source: str, tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "id": f"c{abs(hash((source, tuple(tags or [])))) % 10**8}",
        "metadata": {"tags": tags} if tags else {},
        "source": source,
        "outputs": [],
        "execution_count": None,
    }


def write_notebook(path: Path, nb: dict[str, Any]) -> Path:
    path.write_text(json.dumps(nb, indent=1))
    return path


def kernel_env(host: HostProcess) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOHAKURIVER_")}
    env.update(
        KOHAKURIVER_URL=host.url,
        KOHAKURIVER_TOKEN=TOKEN,
        KOHAKURIVER_PYTHON=sys.executable,
        PATH=VENV_BIN + os.pathsep + env.get("PATH", ""),
    )
    return env


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nb")


@pytest.fixture(scope="module")
def host(workdir: Path) -> Iterator[HostProcess]:
    """``jupyter kohakuriver`` with the embedded runner (tasks see the venv on PATH)."""
    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = VENV_BIN + os.pathsep + old_path  # the runner's python3 = the venv's
    host = HostProcess(workdir, "sqlite:///" + str(workdir / "cluster.db"), embedded=True)
    try:
        host.start()
        with host.client() as client:
            deadline = time.monotonic() + 30
            while not any(n.status.value == "online" for n in client.list_nodes()):
                assert time.monotonic() < deadline, "embedded runner did not come online"
                time.sleep(0.1)
        yield host
    finally:
        host.stop()
        os.environ["PATH"] = old_path


@dataclass
class Reply:
    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    error: tuple[str, str] | None = None
    data: list[dict[str, Any]] = field(default_factory=list)


class Kernel:
    """A real ipykernel driven through jupyter_client's blocking client."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        from jupyter_client.manager import KernelManager

        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env, cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 60, *, check: bool = True) -> Reply:
        reply = Reply()

        def hook(msg: dict[str, Any]) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    reply.stdout += content["text"]
                else:
                    reply.stderr += content["text"]
            elif kind == "execute_result":
                reply.result = content["data"].get("text/plain")
                reply.data.append(content["data"])
            elif kind == "display_data":
                reply.data.append(content["data"])
            elif kind == "error":
                reply.error = (content["ename"], content["evalue"])

        self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)
        if check and reply.error is not None:
            raise AssertionError(f"{code!r} raised {reply.error}\nstdout: {reply.stdout}")
        return reply

    def value(self, expression: str, timeout: float = 60) -> Any:
        """Evaluate in the kernel and bring the JSON value back."""
        reply = self.run(f"import json as _j; print(_j.dumps({expression}))", timeout)
        return json.loads(reply.stdout.strip().splitlines()[-1])

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel(host: HostProcess, workdir: Path) -> Iterator[Kernel]:
    kernel = Kernel(kernel_env(host), workdir)
    kernel.run("%load_ext kohakuriver_lab")
    yield kernel
    kernel.close()
