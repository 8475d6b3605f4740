from __future__ import annotations

import os
from pathlib import Path

from kohakuriver_lab.runner.metrics import MetricsSampler
from kohakuriver_lab.runner.nvml import Nvml
from kohakuriver_lab.runner.resources import (
    discover,
    discover_numa,
    parse_cpulist,
    pci_numa_node,
)


def test_parse_cpulist() -> None:
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpulist("") == []


def test_numa_parsed_from_sysfs(tmp_path: Path) -> None:
    for node, cpus, kb in ((0, "0-1", 1024), (1, "2-3", 2048)):
        d = tmp_path / f"node{node}"
        d.mkdir()
        (d / "cpulist").write_text(cpus + "\n")
        (d / "meminfo").write_text(
            f"Node {node} MemTotal:       {kb} kB\nNode {node} MemFree: 1 kB\n"
        )
    (tmp_path / "nodefoo").mkdir()  # not a node
    nodes = discover_numa([0, 1, 2], 999, sys_dir=tmp_path)
    assert [(n.id, n.cores, n.memory_total) for n in nodes] == [
        (0, [0, 1], 1024 * 1024),
        (1, [2], 2048 * 1024),
    ]


def test_numa_fallback_is_one_node_with_everything(tmp_path: Path) -> None:
    nodes = discover_numa([0, 1], 12345, sys_dir=tmp_path / "missing")
    assert [(n.id, n.cores, n.memory_total) for n in nodes] == [(0, [0, 1], 12345)]


def test_pci_numa_node(tmp_path: Path) -> None:
    (tmp_path / "0000:3b:00.0").mkdir()
    (tmp_path / "0000:3b:00.0" / "numa_node").write_text("1\n")
    (tmp_path / "0000:af:00.0").mkdir()
    (tmp_path / "0000:af:00.0" / "numa_node").write_text("-1\n")
    assert pci_numa_node("00000000:3B:00.0", pci_dir=tmp_path) == 1
    assert pci_numa_node("0000:AF:00.0", pci_dir=tmp_path) is None
    assert pci_numa_node("0000:00:01.0", pci_dir=tmp_path) is None


def test_discover_without_nvidia_driver() -> None:
    nvml = Nvml()
    resources = discover(nvml)
    assert resources.gpus == []
    assert resources.cores == sorted(os.sched_getaffinity(0))
    assert resources.memory_total > 0
    assert sorted(c for n in resources.numa for c in n.cores) == resources.cores
    assert not nvml.available  # tried once, and stays down without crashing
    assert nvml.device_count() == 0


def test_metrics_sample_without_gpu() -> None:
    metrics = MetricsSampler(Nvml()).sample()
    assert 0 <= metrics.cpu_percent <= 100 * os.cpu_count()  # type: ignore[operator]
    assert 0 < metrics.memory_used <= metrics.memory_total
    assert metrics.load_1m is not None and metrics.gpus == []
