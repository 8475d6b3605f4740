"""Placement: cores, GPUs by index or count, NUMA affinity, memory, reasons."""

from __future__ import annotations

from kohakuriver_lab.server.placement import (
    NodeLoad,
    NodeShape,
    Placement,
    Request,
    choose_node,
    fit_on_node,
    impossible_reason,
)

GIB = 1 << 30


def two_socket(name: str = "gpu-01") -> NodeShape:
    """8 cores on 2 NUMA nodes, GPUs 0,1 on NUMA 0 and 2,3 on NUMA 1."""
    return NodeShape(
        name=name,
        cores=tuple(range(8)),
        numa={0: (0, 1, 2, 3), 1: (4, 5, 6, 7)},
        memory_total=64 * GIB,
        gpus={0: 0, 1: 0, 2: 1, 3: 1},
    )


def cpu_node(name: str = "cpu-01", cores: int = 4) -> NodeShape:
    return NodeShape(
        name=name,
        cores=tuple(range(cores)),
        numa={0: tuple(range(cores))},
        memory_total=16 * GIB,
        gpus={},
    )


def test_gpu_count_picks_one_numa_node_and_pins_cores_there() -> None:
    load = NodeLoad(gpus={0: 99})  # GPU 0 busy: NUMA 0 has one free, NUMA 1 has two
    fit = fit_on_node(Request(cores=2, gpu_count=2), two_socket(), load)
    assert isinstance(fit, Placement)
    assert fit.gpus == [2, 3]
    assert fit.cores == [4, 5] and fit.numa == 1


def test_gpu_indices_busy_names_the_holder() -> None:
    fit = fit_on_node(Request(gpu_indices=(0, 1)), two_socket(), NodeLoad(gpus={1: 42}))
    assert fit == "GPU 1 held by task 42"


def test_gpu_index_that_does_not_exist() -> None:
    fit = fit_on_node(Request(gpu_indices=(7,)), two_socket(), NodeLoad())
    assert isinstance(fit, str) and "has no GPU 7" in fit


def test_numa_target_limits_cores() -> None:
    load = NodeLoad(cores={4, 5, 6})
    fit = fit_on_node(Request(cores=2, numa=1), two_socket(), load)
    assert fit == "needs 2 cores on NUMA node 1, 1 free of 4"
    ok = fit_on_node(Request(cores=2, numa=0), two_socket(), load)
    assert isinstance(ok, Placement) and ok.cores == [0, 1] and ok.numa == 0


def test_memory_is_reserved() -> None:
    fit = fit_on_node(Request(memory=60 * GIB), two_socket(), NodeLoad(memory=8 * GIB))
    assert fit == "needs 60.0 GiB memory, 56.0 GiB free of 64.0 GiB"


def test_zero_cores_reserves_nothing() -> None:
    fit = fit_on_node(Request(cores=0), cpu_node(), NodeLoad(cores={0, 1, 2, 3}))
    assert isinstance(fit, Placement) and fit.cores == []


def test_cpu_tasks_avoid_gpu_nodes_and_gpu_tasks_pack() -> None:
    nodes = [(two_socket("gpu-01"), NodeLoad()), (cpu_node("cpu-01"), NodeLoad())]
    cpu_fit = choose_node(Request(cores=1), nodes)
    assert isinstance(cpu_fit, Placement) and cpu_fit.node == "cpu-01"
    busy = NodeLoad(gpus={0: 1, 1: 2, 2: 3})
    gpu_nodes = [(two_socket("gpu-01"), busy), (two_socket("gpu-02"), NodeLoad())]
    gpu_fit = choose_node(Request(gpu_count=1), gpu_nodes)
    assert isinstance(gpu_fit, Placement) and gpu_fit.node == "gpu-01" and gpu_fit.gpus == [3]


def test_reason_lists_each_node() -> None:
    nodes = [(cpu_node("a", 2), NodeLoad(cores={0, 1})), (cpu_node("b", 2), NodeLoad(cores={1}))]
    reason = choose_node(Request(cores=2), nodes)
    assert reason == (
        "waiting for resources: a: needs 2 cores, 0 free of 2; b: needs 2 cores, 1 free of 2"
    )


def test_named_node_only() -> None:
    nodes = [(cpu_node("a"), NodeLoad()), (cpu_node("b"), NodeLoad())]
    fit = choose_node(Request(node="b"), nodes)
    assert isinstance(fit, Placement) and fit.node == "b"
    assert choose_node(Request(node="c"), nodes) == "waiting for node c to come online"


def test_impossible_requests() -> None:
    shapes = [two_socket(), cpu_node()]
    assert impossible_reason(Request(cores=8), shapes) is None
    reason = impossible_reason(Request(cores=9), shapes)
    assert reason is not None and "needs 9 cores" in reason
    assert impossible_reason(Request(gpu_count=5), shapes) is not None
    assert impossible_reason(Request(gpu_indices=(3,)), shapes) is None
    assert impossible_reason(Request(backend="docker"), shapes) is not None


def test_nodes_that_have_the_image_are_preferred() -> None:
    empty = NodeShape(
        name="big",
        cores=tuple(range(16)),
        numa={0: tuple(range(16))},
        memory_total=64 * GIB,
        gpus={},
        backends=frozenset({"docker"}),
    )
    cached = NodeShape(
        name="small",
        cores=(0, 1),
        numa={0: (0, 1)},
        memory_total=8 * GIB,
        gpus={},
        backends=frozenset({"docker"}),
        images=frozenset({"lab/torch:2.5"}),
    )
    nodes = [(empty, NodeLoad()), (cached, NodeLoad())]
    fit = choose_node(Request(cores=1, image="lab/torch:2.5", backend="docker"), nodes)
    assert isinstance(fit, Placement) and fit.node == "small"
    other = choose_node(Request(cores=1, image="lab/jax:latest", backend="docker"), nodes)
    assert isinstance(other, Placement) and other.node == "big"  # then the most free cores
