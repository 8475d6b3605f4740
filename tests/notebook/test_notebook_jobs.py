"""Notebook jobs, sweeps and the papermill engine against a real host + embedded runner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import TOKEN, kernel_env, notebook, write_notebook

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

GLUE_NB = notebook(
    "import kohakuriver_lab\nprint('alpha is', alpha)",
    "kohakuriver_lab.glue('square', alpha * alpha)",
    parameters="alpha = 1",
)


@pytest.fixture(scope="module")
def glue_nb(workdir: Path) -> Path:
    return write_notebook(workdir / "square.ipynb", GLUE_NB)


def test_notebook_job_output_in_contents(kernel, host, glue_nb):
    kernel.run(
        "import time\n"
        "job = %kohaku run square.ipynb -p alpha 7\n"
        "w = job.widget()\n"
        "info = job.wait(60)\n"
        "deadline = time.monotonic() + 10\n"
        "while w.done < 4 and time.monotonic() < deadline: time.sleep(0.02)\n"
    )
    assert kernel.value("info.status.value") == "completed", kernel.value("info.reason")
    task_id = kernel.value("str(job.task_id)")
    assert kernel.value("job.result()") == {"square": 49}
    # progress reached the widget live: all 4 cells (3 + papermill's injected parameters)
    assert kernel.value("[w.done, w.total]") == [4, 4]
    # the executed notebook, from the artifact route and from the Jupyter contents API
    out = kernel.value("job.output_notebook()")
    assert any(
        "alpha is 7" in "".join(o.get("text", ""))
        for c in out["cells"]
        for o in c.get("outputs", [])
    )
    headers = {"Authorization": f"token {TOKEN}"}
    path = f"kohakuriver-jobs/{task_id}/output.ipynb"
    r = httpx.get(f"{host.url}api/contents/{path}", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "notebook"
    assert kernel.value("job.refresh().model_dump().get('output_path')") == path


def test_notebook_job_failure_reason(kernel, workdir):
    write_notebook(
        workdir / "fails.ipynb", notebook("x = 1", "raise ValueError('bad value here')", "y = 2")
    )
    kernel.run("job = %kohaku run fails.ipynb --block")
    info = kernel.value("job.refresh().model_dump(mode='json')")
    assert info["status"] == "failed"
    assert "ValueError" in info["reason"] and "bad value here" in info["reason"]
    assert "cell 1" in info["reason"]
    out = kernel.value("job.output_notebook()")
    assert out["metadata"]["papermill"]["exception"] is True


def test_kernel_death_fails_promptly(kernel, workdir):
    write_notebook(
        workdir / "dies.ipynb", notebook("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    )
    kernel.run(
        "import time\nt0 = time.monotonic()\njob = %kohaku run dies.ipynb --block\nelapsed = time.monotonic() - t0"
    )
    info = kernel.value("job.refresh().model_dump(mode='json')")
    assert info["status"] in ("failed", "killed_oom")
    assert "kernel died" in info["reason"]
    assert kernel.value("elapsed") < 15


def test_sweep_results(kernel, glue_nb):
    kernel.run(
        "sweep = %kohaku run square.ipynb --sweep alpha=1,2,3 --block\n"
        "sw = sweep.widget()\n"
        "rows = sweep.results()\n"
    )
    rows = kernel.value("rows if isinstance(rows, list) else rows.to_dict('records')")
    assert sorted((r["alpha"], r["square"], r["status"]) for r in rows) == [
        (1, 1, "completed"),
        (2, 4, "completed"),
        (3, 9, "completed"),
    ]
    assert kernel.value("sw.counts") == {"completed": 3}
    assert kernel.value("sw.progress.value") == 3


def test_papermill_engine_cli(host, workdir, glue_nb):
    out = workdir / "out-cli.ipynb"
    env = kernel_env(host)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "papermill"), str(glue_nb), str(out),
         "-p", "alpha", "5", "--engine", "kohakuriver"],
        env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = json.loads(out.read_text())
    texts = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert "alpha is 5" in texts
    assert "alpha is 5" in proc.stdout  # live output came through the log stream
    assert nb["metadata"]["papermill"]["parameters"] == {"alpha": 5}


def test_kernel_oom_ends_the_job_as_killed_oom(kernel, workdir):
    """A cell that outgrows the job's memory limit: the cgroup kills the kernel, the job
    ends promptly and the runner reports the OOM."""
    from kohakuriver_lab.testing.integration import require_cgroups

    require_cgroups()
    hog = "x = []\nwhile True:\n    x.append(bytearray(16 << 20))"
    write_notebook(workdir / "hog.ipynb", notebook(hog))
    kernel.run(
        "import time\nt0 = time.monotonic()\n"
        "job = %kohaku run hog.ipynb -m 300M --block\n"
        "elapsed = time.monotonic() - t0"
    )
    info = kernel.value("job.refresh().model_dump(mode='json')")
    assert info["status"] == "killed_oom", info
    assert kernel.value("elapsed") < 30
