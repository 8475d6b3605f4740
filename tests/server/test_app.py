"""The extension app: kernel environment, auto-enabling, standalone command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent


@pytest.fixture
def host_config() -> dict[str, Any]:
    return {"ClusterHostApp": {"export_kernel_env": True}}


def test_kernels_find_the_host(
    started_host: Any, jp_base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the extension exports these for the kernels this server starts (they inherit os.environ)
    url, token = os.environ.get("KOHAKURIVER_URL"), os.environ.get("KOHAKURIVER_TOKEN")
    monkeypatch.delenv("KOHAKURIVER_URL", raising=False)
    monkeypatch.delenv("KOHAKURIVER_TOKEN", raising=False)
    assert url == f"http://127.0.0.1:{started_host.port}{jp_base_url}"
    assert token == started_host.identity_provider.token


def test_installing_enables_the_extension() -> None:
    out = subprocess.run(
        [str(BIN / "jupyter"), "server", "extension", "list"],
        capture_output=True,
        text=True,
        check=True,
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)  # drop colours
    assert "kohakuriver_lab enabled" in text and "kohakuriver_lab 0.1.0 OK" in text


def test_standalone_host_command_documents_its_options() -> None:
    out = subprocess.run(
        [str(BIN / "jupyter-kohakuriver"), "--help-all"], capture_output=True, text=True, check=True
    )
    for option in (
        "--ClusterHostApp.db_url",
        "--ClusterHostApp.embedded_runner",
        "--NodeRegistry.heartbeat_interval",
        "--Scheduler.kill_grace",
    ):
        assert option in out.stdout, option
