"""``AsyncCluster`` (submit, wait, logs, result, kill, run_notebook, sweep) against a real host
with the embedded local runner, from plain asyncio code (no kernel)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kohakuriver_lab import AsyncCluster
from kohakuriver_lab._http import WaitTimeout
from kohakuriver_lab.cluster import sweep_sets
from kohakuriver_lab.errors import InvalidRequest

from .conftest import TOKEN, notebook, write_notebook

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

T = TypeVar("T")

SQUARE_NB = notebook(
    "import kohakuriver_lab\nprint('alpha is', alpha)",
    "kohakuriver_lab.glue('square', alpha * alpha)",
    parameters="alpha = 1",
)


def run(host: Any, body: Callable[[AsyncCluster], Awaitable[T]]) -> T:
    """``body(cluster)`` on a fresh event loop, with the cluster closed afterwards."""

    async def main() -> T:
        cluster = AsyncCluster(host.url, TOKEN, python=sys.executable)
        try:
            return await body(cluster)
        finally:
            await cluster.aclose()

    return asyncio.run(main())


@pytest.fixture(scope="module")
def square_nb(workdir: Path) -> Path:
    return write_notebook(workdir / "async_square.ipynb", SQUARE_NB)


def test_submit_wait_logs_result(host):
    script = (
        "import sys, kohakuriver_lab\n"
        "kohakuriver_lab.glue('answer', 42)\n"
        "kohakuriver_lab.glue('items', [1, 'two'])\n"
        "print('hello from the node')\n"
        "print('to stderr', file=sys.stderr)\n"
    )

    async def body(cluster: AsyncCluster) -> None:
        task = await cluster.submit([sys.executable, "-c", script], name="async-submit", cores=1)
        assert task.task_id > 0 and task.info is None
        assert repr(task) == f"<AsyncTask {task.task_id} (state not read yet: await refresh())>"
        info = await task.wait(60)
        assert info.status.value == "completed", info.reason
        assert info.exit_code == 0
        assert task.info is info  # wait() keeps the latest info on the handle
        assert "hello from the node" in await task.logs()
        assert "to stderr" in await task.logs("stderr")
        assert await task.result() == {"answer": 42, "items": [1, "two"]}
        assert await task.result("answer") == 42
        again = await cluster.task(task.task_id)  # a handle from the ID alone
        assert again.info is not None and again.info.status.value == "completed"
        assert again.info.name == "async-submit"
        assert repr(again) == f"<AsyncTask {task.task_id} completed>"

    run(host, body)


def test_submit_code_and_failure(host):
    async def body(cluster: AsyncCluster) -> None:
        ok = await cluster.submit_code("print(6 * 7)")
        bad = await cluster.submit_code("exit 3", shell=True)
        ok_info, bad_info = await asyncio.gather(ok.wait(60), bad.wait(60))
        assert ok_info.status.value == "completed", ok_info.reason
        assert (await ok.logs()).strip() == "42"
        assert bad_info.status.value == "failed"
        assert bad_info.exit_code == 3
        assert await bad.result() == {}

    run(host, body)


def test_wait_timeout_then_kill(host):
    async def body(cluster: AsyncCluster) -> None:
        task = await cluster.submit("sleep 60", cores=1)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(WaitTimeout, match="did not finish within"):
            await task.wait(0.5)
        assert loop.time() - start < 5
        await task.kill()
        info = await task.wait(30)
        assert info.status.value == "killed"
        # several waiters on one task all wake on the same live event
        assert {i.status.value for i in await asyncio.gather(task.wait(5), task.wait(5))} == {
            "killed"
        }

    run(host, body)


def test_run_notebook(host, square_nb):
    async def body(cluster: AsyncCluster) -> None:
        task = await cluster.run_notebook(square_nb, {"alpha": 3}, cores=1)
        info = await task.wait(90)
        assert info.status.value == "completed", info.reason
        assert info.name == "async_square.ipynb"
        assert await task.result() == {"square": 9}
        assert await task.result("square") == 9
        out = await task.output_notebook()
        texts = ["".join(o.get("text", "")) for c in out["cells"] for o in c.get("outputs", [])]
        assert any("alpha is 3" in t for t in texts), texts
        # papermill's injected-parameters cell is there
        assert any("injected-parameters" in c["metadata"].get("tags", []) for c in out["cells"])
        refreshed = await task.refresh()
        assert refreshed.progress is not None
        assert refreshed.progress["done"] == refreshed.progress["total"] == 4
        assert refreshed.progress.get("error") is None

    run(host, body)


def test_run_notebook_failure_reason(host):
    nb = notebook("x = 1", "raise ValueError('async bad value')")

    async def body(cluster: AsyncCluster) -> None:
        task = await cluster.run_notebook(nb, name="fails-async")
        info = await task.wait(90)
        assert info.status.value == "failed"
        assert "ValueError" in (info.reason or "")
        assert "async bad value" in (info.reason or "")

    run(host, body)


def test_sweep_results(host, square_nb):
    async def body(cluster: AsyncCluster) -> list[dict[str, Any]]:
        sweep = await cluster.sweep(square_nb, {"alpha": [2, 5]}, cores=1)
        assert len(sweep.tasks) == 2
        assert sweep.parameter_sets == [{"alpha": 2}, {"alpha": 5}]
        infos = await sweep.wait(120)
        assert [i.status.value for i in infos] == ["completed", "completed"]
        rows: Any = await sweep.results()
        return list(rows.to_dict("records")) if hasattr(rows, "to_dict") else list(rows)

    rows = run(host, body)
    assert sorted((r["alpha"], r["square"], r["status"]) for r in rows) == [
        (2, 4, "completed"),
        (5, 25, "completed"),
    ]


def test_sweep_needs_parameters(host, square_nb):
    async def body(cluster: AsyncCluster) -> None:
        with pytest.raises(InvalidRequest, match="grid or parameter_sets"):
            await cluster.sweep(square_nb, {})

    run(host, body)


def test_sweep_sets_same_for_sync_and_async():
    # a grid crossed with explicit sets (AsyncCluster used to ignore the grid then)
    assert sweep_sets({"a": [1, 2]}, [{"b": 0}, {"b": 1}]) == [
        {"b": 0, "a": 1},
        {"b": 0, "a": 2},
        {"b": 1, "a": 1},
        {"b": 1, "a": 2},
    ]
    assert sweep_sets(None, [{"b": 0}]) == [{"b": 0}]
    assert sweep_sets({"a": [1], "c": ["x", "y"]}, None) == [
        {"a": 1, "c": "x"},
        {"a": 1, "c": "y"},
    ]


def test_nodes(host):
    nodes = run(host, lambda cluster: cluster.nodes())
    assert any(n.status.value == "online" for n in nodes)
