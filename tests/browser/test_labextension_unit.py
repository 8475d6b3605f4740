"""Run the labextension's TypeScript unit tests (vitest) from the pytest suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kohakuriver_lab.testing.integration import missing

LABEXT = Path(__file__).resolve().parents[2] / "labextension"


def _jlpm() -> str | None:
    local = Path(sys.executable).parent / "jlpm"
    return str(local) if local.exists() else shutil.which("jlpm")


@pytest.mark.timeout(180)
def test_typescript_unit_tests() -> None:
    jlpm = _jlpm()
    if jlpm is None or shutil.which("node") is None:
        missing("no node/jlpm to run the labextension's unit tests")
    if not (LABEXT / "node_modules" / ".bin" / "vitest").exists():
        missing("labextension/node_modules is not installed (jlpm install in labextension/)")
    env = dict(os.environ, CI="1", FORCE_COLOR="0")
    proc = subprocess.run(
        [jlpm, "test"], cwd=LABEXT, env=env, capture_output=True, text=True, timeout=170
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "passed" in proc.stdout
