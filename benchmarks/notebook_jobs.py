"""Notebook side: ``%kohaku submit`` latency in a real kernel, notebook-job overhead vs local
papermill, per-cell overhead of the job wrapper, and a 100-point sweep on the embedded node.

* submit: ``%kohaku submit -- true`` timed inside an IPython kernel (magic parse + REST submit
  + handle), p95 of N. Baseline: the bare ``Client.submit`` from the same kernel.
* job overhead: submit → ``completed`` (host event clock) of a 3-cell notebook job, minus
  ``papermill.execute_notebook`` of the same notebook in-process here (papermill imported,
  so the baseline is kernel start + execution only).
* per-cell: (201-cell job - 1-cell job) / 200, both as notebook jobs.
* load_ext: ``%load_ext kohakuriver_lab`` (the import plus registering the magics) in fresh
  interpreters with an IPython shell, as a kernel has; median of N. Baseline: ``import
  ipywidgets`` measured the same way (the widget library a notebook user loads anyway).
* sweep: 100 parameter sets of a 3-cell notebook; wall time to all ``completed`` and the most
  tasks seen running at once (must not exceed the node's cores).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import API, Outcome, Row, percentile, running_host, timed_task, wait_node_online

NAME = "notebook_jobs"


def _nb(n_cells: int) -> dict[str, Any]:
    cells = [
        {"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]},
         "source": "x = 1", "outputs": [], "execution_count": None}
    ]  # fmt: skip
    cells += [
        {"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": "y = x + 1",
         "outputs": [], "execution_count": None}
        for i in range(n_cells - 1)
    ]  # fmt: skip
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "cells": cells,
    }


def _job_seconds(client: Any, nb: dict[str, Any]) -> float:
    """submit → completed by the host's event clock."""
    body = {"task_type": "notebook", "notebook": nb, "parameters": {"x": 2}, "cores": 1}
    return timed_task(client, body, timeout=120)["host_completed"]


def _local_papermill(nb: dict[str, Any], runs: int) -> float:
    import papermill

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.ipynb")
        Path(src).write_text(json.dumps(nb))
        for _ in range(runs):
            t0 = time.perf_counter()
            papermill.execute_notebook(
                src, os.path.join(tmp, "out.ipynb"), parameters={"x": 2}, progress_bar=False
            )
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _kernel_submit_latency(url: str, token: str, samples: int) -> tuple[list[float], list[float]]:
    from jupyter_client.manager import KernelManager

    env = {k: v for k, v in os.environ.items() if not k.startswith("KOHAKURIVER_")}
    env.update(KOHAKURIVER_URL=url + "/", KOHAKURIVER_TOKEN=token)
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        code = (
            "%load_ext kohakuriver_lab\n"
            "import time, json\n"
            "from kohakuriver_lab.client import Client\n"
            "ip = get_ipython(); c = Client()\n"
            "ip.run_line_magic('kohaku', 'submit -- true')\n"
            "m, b = [], []\n"
            f"for _ in range({samples}):\n"
            "    t0 = time.perf_counter(); ip.run_line_magic('kohaku', 'submit -c 0 -- true'); m.append(time.perf_counter() - t0)\n"
            "    t0 = time.perf_counter(); c.submit(['true'], cores=0); b.append(time.perf_counter() - t0)\n"
            "print('RESULT' + json.dumps([m, b]))\n"
        )
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("ERROR " + msg["content"]["evalue"])

        kc.execute_interactive(code, timeout=300, output_hook=hook)
        text = "".join(out)
        if "RESULT" not in text:
            raise RuntimeError(f"kernel benchmark failed: {text[-2000:]}")
        magic, bare = json.loads(text.split("RESULT", 1)[1].strip().splitlines()[0])
        return magic, bare
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _sweep(client: Any, n: int, cores: int) -> tuple[float, int]:
    nb = _nb(3)
    sets = [{"x": i} for i in range(n)]
    t0 = time.perf_counter()
    r = client.post(
        f"{API}/tasks",
        json={"task_type": "notebook", "notebook": nb, "parameter_sets": sets, "cores": 1},
    )
    if r.status_code != 201:
        raise RuntimeError(f"sweep submit: {r.status_code} {r.text}")
    batch = r.json()["batch_id"]
    peak = 0
    deadline = time.monotonic() + 900
    while True:
        tasks = []
        cursor = None
        while True:
            params: dict[str, Any] = {"batch": batch, "limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = client.get(f"{API}/tasks", params=params).json()
            tasks += page["tasks"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        running = sum(1 for t in tasks if t["status"] in ("running", "assigning"))
        peak = max(peak, running)
        final = [
            t
            for t in tasks
            if t["status"] in ("completed", "failed", "killed", "lost", "killed_oom")
        ]
        if len(final) == n:
            bad = [t for t in final if t["status"] != "completed"]
            if bad:
                raise RuntimeError(
                    f"{len(bad)} sweep tasks did not complete: {bad[0].get('reason')}"
                )
            return time.perf_counter() - t0, peak
        if time.monotonic() > deadline:
            raise TimeoutError("sweep did not finish")
        time.sleep(0.1)


_SHELL_PROBE = (
    "import time; from IPython.core.interactiveshell import InteractiveShell; "
    "shell = InteractiveShell.instance(); t = time.perf_counter(); {code}; "
    "print(time.perf_counter() - t)"
)


def _shell_seconds(code: str, runs: int) -> float:
    """Median seconds of ``code`` in fresh interpreters with an IPython shell."""
    times = []
    for _ in range(runs):
        probe = [sys.executable, "-c", _SHELL_PROBE.format(code=code)]
        out = subprocess.run(probe, capture_output=True, text=True, check=True, timeout=60)
        times.append(float(out.stdout.strip()))
    return statistics.median(times)


def run(quick: bool) -> Outcome:
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    samples = 20 if quick else 50
    job_runs = 2 if quick else 4
    sweep_n = 20 if quick else 100
    with running_host(embedded=True) as host, host.client(timeout=60) as client:
        wait_node_online(client)
        cores = len(client.get(f"{API}/nodes").json()["nodes"][0]["cores"])
        magic, bare = _kernel_submit_latency(host.url, host.token, samples)
        nb3 = _nb(3)
        _job_seconds(client, nb3)  # warm-up (page cache, first kernel)
        job = statistics.median(_job_seconds(client, nb3) for _ in range(job_runs))
        one = statistics.median(_job_seconds(client, _nb(1)) for _ in range(job_runs))
        many = statistics.median(_job_seconds(client, _nb(201)) for _ in range(job_runs))
        sweep_s, peak = _sweep(client, sweep_n, cores)
    local = _local_papermill(nb3, job_runs + 1)
    import_runs = 5 if quick else 15
    load_ext = _shell_seconds("shell.run_line_magic('load_ext', 'kohakuriver_lab')", import_runs)
    import_widgets = _shell_seconds("import ipywidgets", import_runs)
    per_cell_ms = (many - one) / 200 * 1000
    p95 = percentile(magic, 95) * 1000
    rows = [
        Row(NAME, "kohaku_submit_p95", p95, "ms", 50.0, False, percentile(bare, 95) * 1000,
            "Client.submit p95, same kernel", f"{samples} samples in a real kernel; p50 {percentile(magic, 50) * 1000:.1f} ms"),
        Row(NAME, "load_ext", load_ext * 1000, "ms", 150.0, False, import_widgets * 1000,
            "import ipywidgets (ms)", f"%load_ext kohakuriver_lab, median of {import_runs} fresh IPython shells"),
        Row(NAME, "job_overhead", job - local, "s", 1.5, False, local,
            "local papermill.execute_notebook (s)", f"3-cell job submit->completed {job:.2f} s (median of {job_runs})"),
        Row(NAME, "per_cell", per_cell_ms, "ms", 10.0, False, None, "-",
            f"(201-cell {many:.2f} s - 1-cell {one:.2f} s) / 200"),
        Row(NAME, f"sweep_{sweep_n}", sweep_s, "s", 900.0, False, None, "-",
            f"{sweep_n} x 3-cell jobs on 1 node with {cores} cores; peak running {peak} (<= cores: {peak <= cores})"),
        Row(NAME, "sweep_peak_running", float(peak), "tasks", float(cores), False, None, "-", "queue honours the node's cores"),
    ]  # fmt: skip
    details = {
        "submit_ms": {"magic": [m * 1000 for m in magic], "bare": [b * 1000 for b in bare]},
        "job_s": job, "local_papermill_s": local, "one_cell_s": one, "many_cells_s": many,
        "sweep_s": sweep_s, "sweep_peak_running": peak, "cores": cores,
        "import_ms": {"load_ext": load_ext * 1000, "ipywidgets": import_widgets * 1000},
    }  # fmt: skip
    return Outcome(rows, details)
