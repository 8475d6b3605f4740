"""The notebooks in ``examples/`` run headlessly (papermill, in-process) against the host."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .conftest import kernel_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize("name", ["gpu_submit.ipynb", "follow_logs.ipynb", "sweep.ipynb"])
def test_example_runs(name, host, workdir, monkeypatch):
    import papermill

    for key, value in kernel_env(host).items():
        monkeypatch.setenv(key, value)
    cwd = workdir / f"ex-{name}"
    cwd.mkdir()
    for nb in EXAMPLES.glob("*.ipynb"):
        shutil.copy(nb, cwd / nb.name)
    out = cwd / f"out-{name}"
    papermill.execute_notebook(
        str(cwd / name), str(out), cwd=str(cwd), progress_bar=False, kernel_name="python3"
    )
    text = out.read_text()
    assert "Traceback" not in text
    if name == "follow_logs.ipynb":
        assert "step 4" in text
    if name == "sweep.ipynb":
        assert "best:" in text
    assert os.environ["KOHAKURIVER_URL"] == host.url
