"""Placement is linear in a node's cores, and refusing an impossible submit does not pick
cores on any node (issue 10, attack 4). Work is counted (element visits of the node's core
lists), not timed; the host test's timeout is only a guard against hanging."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kohakuriver_lab.protocol import MAX_CORES
from kohakuriver_lab.server.placement import (
    NodeLoad,
    NodeShape,
    Request,
    choose_node,
    fit_on_node,
    impossible_reason,
)
from kohakuriver_lab.testing.fake_runner import FakeRunner


class Counted(tuple):  # type: ignore[type-arg]
    """A tuple that counts the elements a scan or an iteration visits."""

    visits = 0

    def __contains__(self, item: object) -> bool:
        Counted.visits += len(self)  # a tuple's ``in`` scans
        return super().__contains__(item)

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            Counted.visits += 1
            yield item


def shape(name: str, cores: int, numa_nodes: int = 1, gpus: int = 0) -> NodeShape:
    per = cores // numa_nodes
    numa = {n: Counted(range(n * per, (n + 1) * per)) for n in range(numa_nodes)}
    return NodeShape(
        name=name,
        cores=Counted(range(cores)),
        numa=numa,
        memory_total=1 << 40,
        gpus={g: g % numa_nodes for g in range(gpus)},
    )


@pytest.fixture(autouse=True)
def _reset() -> None:
    Counted.visits = 0


@pytest.mark.parametrize("numa_nodes", [1, 2, 64])
def test_placing_all_cores_of_the_biggest_node_is_linear(numa_nodes: int) -> None:
    big = shape("big", MAX_CORES, numa_nodes)
    fit = fit_on_node(Request(cores=MAX_CORES), big, NodeLoad())
    assert not isinstance(fit, str) and len(fit.cores) == MAX_CORES
    fit = fit_on_node(Request(cores=8, numa=numa_nodes - 1), big, NodeLoad(cores={0, 1}))
    assert not isinstance(fit, str)
    assert Counted.visits <= 10 * MAX_CORES, Counted.visits


def test_a_busy_big_node_is_linear_for_every_pending_task() -> None:
    big = shape("big", MAX_CORES, 2, gpus=8)
    load = NodeLoad(cores=set(range(0, MAX_CORES, 2)))
    for cores in (1, MAX_CORES // 2, MAX_CORES):
        choose_node(Request(cores=cores, gpu_count=1), [(big, load)])
    assert Counted.visits <= 3 * 10 * MAX_CORES, Counted.visits


def test_impossible_reason_only_counts() -> None:
    shapes = [shape("big", MAX_CORES, 2, gpus=8)] + [shape(f"n{i}", 64) for i in range(200)]
    assert impossible_reason(Request(cores=MAX_CORES), shapes) is None
    reason = impossible_reason(Request(cores=MAX_CORES + 1), shapes)
    assert reason and reason.startswith("no node can ever run this task: big needs 4097 cores")
    assert impossible_reason(Request(cores=2, numa=1, gpu_count=4), shapes) is None
    assert impossible_reason(Request(cores=2, numa=1, gpu_count=5), shapes) is not None
    assert Counted.visits < MAX_CORES, Counted.visits  # no node's cores were walked


@pytest.mark.timeout(60)  # a guard against hanging, not a measurement
async def test_biggest_node_and_an_impossible_submit_answer(
    api: Any, host_url: str, runner_token: str
) -> None:
    runner = FakeRunner(host_url, runner_token, "big", cores=MAX_CORES, numa_nodes=4)
    runner.auto_finish = False
    await runner.connect()
    try:
        status, body = await api.call("POST", "tasks", {"command": ["x"], "cores": MAX_CORES})
        assert status == 201, body
        impossible = {"command": ["x"], "cores": MAX_CORES, "targets": ["big:0"]}
        status, body = await api.call("POST", "tasks", impossible)
        assert status == 400 and "no node can ever run this task" in body["message"]
        assert (await api.get("cluster"))["cores_total"] == MAX_CORES
    finally:
        await runner.close()
