"""Notebook jobs in containers: a host, ``kohakuriver-runner --backend docker`` and the
``kohakuriver-test/notebook`` image of ``.ci/images.sh`` (papermill, ipykernel and
kohakuriver_lab inside), driven through the REST client.

The runner's ``--host-url`` is loopback here: the containers stay on Docker's bridge and reach
the host through the runner's job relay (job routes only; docs/docker.md). Skips without
dockerd or the image, fails under KOHAKURIVER_REQUIRE_INTEGRATION=1.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from harness import TERMINAL, TOKEN, HostProcess, RunnerProcess, docker_client, wait_for, wait_node

from kohakuriver_lab.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

NOTEBOOK_IMAGE = "kohakuriver-test/notebook:latest"
BUSYBOX = "kohakuriver-test/busybox:latest"  # no python at all


def notebook(*sources: str, parameters: str | None = None) -> dict[str, Any]:
    """A python3 notebook; ``parameters`` becomes the cell tagged ``parameters``."""
    cells = [(parameters, ["parameters"])] if parameters is not None else []
    cells += [(src, []) for src in sources]
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "cells": [
            {
                "cell_type": "code",
                "id": f"cell{i}",
                "metadata": {"tags": tags} if tags else {},
                "source": src,
                "outputs": [],
                "execution_count": None,
            }
            for i, (src, tags) in enumerate(cells)
        ],
    }


SQUARE_CELLS = (
    "import kohakuriver_lab, sys\nprint('alpha is', alpha, 'on python', sys.version_info[:2])",
    "kohakuriver_lab.glue('square', alpha * alpha)",
)
SQUARE = notebook(*SQUARE_CELLS, parameters="alpha = 1")


@pytest.fixture
def docker_api() -> Iterator[Any]:
    api = docker_client(NOTEBOOK_IMAGE, BUSYBOX)
    yield api
    api.close()


@pytest.fixture
def stack(
    make_host: Callable[..., HostProcess],
    make_runner: Callable[..., RunnerProcess],
    docker_api: Any,
) -> Iterator[tuple[HostProcess, Client]]:
    host = make_host(heartbeat=0.5)
    name = f"nbdock{os.getpid()}"
    make_runner(host, host.runner_token(name), name, backend="docker")
    with host.client() as client:
        wait_node(client, name, "online")
        yield host, client


def _outputs(nb: dict[str, Any]) -> str:
    return "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))


def test_notebook_job_in_a_container(stack: tuple[HostProcess, Client]) -> None:
    host, client = stack
    nb = notebook(*SQUARE_CELLS, "import time; time.sleep(3)", parameters="alpha = 1")
    result = client.submit_notebook(nb, parameters={"alpha": 7}, image=NOTEBOOK_IMAGE)
    task_id = result.task_ids[0]

    # the cell's output reaches the task log while the job still runs (the sleep cell)
    deadline = time.monotonic() + 90
    while "alpha is 7" not in client.logs(task_id).data:
        status = client.get_task(task_id).status.value
        assert status not in TERMINAL, f"{status}: {client.get_task(task_id).reason}"
        assert time.monotonic() < deadline, "no cell output in the live log"
        time.sleep(0.05)
    assert client.get_task(task_id).status.value == "running"

    task = wait_for(client, task_id, TERMINAL, timeout=60)
    assert task.status.value == "completed", (task.reason, client.logs(task_id, "stderr").data)
    assert task.image == NOTEBOOK_IMAGE
    # 4 cells + papermill's injected-parameters cell, all done
    assert task.progress is not None
    assert task.progress["done"] == task.progress["total"] == 5
    assert client.results(task_id) == {"square": 49}
    assert "alpha is 7 on python (3, 11)" in client.logs(task_id).data

    # the executed notebook: the artifact and the Jupyter contents copy
    out = json.loads(client.artifact(task_id))
    assert "alpha is 7" in _outputs(out)
    assert out["metadata"]["papermill"]["parameters"] == {"alpha": 7}
    path = f"kohakuriver-jobs/{task_id}/output.ipynb"
    assert task.output_path == path
    r = httpx.get(f"{host.url}api/contents/{path}", headers={"Authorization": f"token {TOKEN}"})
    assert r.status_code == 200, r.text
    assert "alpha is 7" in _outputs(r.json()["content"])


def test_failing_notebook_in_a_container(stack: tuple[HostProcess, Client]) -> None:
    _, client = stack
    nb = notebook("x = 1", "raise ValueError('bad value here')", "y = 2")
    task_id = client.submit_notebook(nb, image=NOTEBOOK_IMAGE).task_ids[0]
    task = wait_for(client, task_id, TERMINAL, timeout=90)
    assert task.status.value == "failed"
    assert task.reason is not None
    assert "cell 1" in task.reason, task.reason
    assert "ValueError" in task.reason and "bad value here" in task.reason
    out = json.loads(client.artifact(task_id))
    assert out["metadata"]["papermill"]["exception"] is True
    assert "bad value here" in client.logs(task_id, "stderr").data

    # an image without python: a failed job that says why in its stderr, not a hung one
    task_id = client.submit_notebook(nb, image=BUSYBOX).task_ids[0]
    task = wait_for(client, task_id, TERMINAL, timeout=30)
    assert task.status.value == "failed"
    assert task.exit_code == 127
    assert "exec python failed" in client.logs(task_id, "stderr").data


def test_sweep_in_containers(stack: tuple[HostProcess, Client]) -> None:
    _, client = stack
    result = client.submit_notebook(
        SQUARE, parameter_sets=[{"alpha": a} for a in (1, 2, 3)], image=NOTEBOOK_IMAGE
    )
    assert len(result.task_ids) == 3
    for task_id in result.task_ids:
        task = wait_for(client, task_id, TERMINAL, timeout=120)
        assert task.status.value == "completed", task.reason
    rows = client.batch_results(result.batch_id)
    assert sorted((r["parameters"]["alpha"], r["results"]["square"]) for r in rows) == [
        (1, 1),
        (2, 4),
        (3, 9),
    ]
