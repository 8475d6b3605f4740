"""What this node has: cores, NUMA nodes, memory, GPUs (with their NUMA node)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from kohakuriver_lab.models import GpuInfo, NumaNode
from kohakuriver_lab.runner.nvml import Nvml, as_text

SYS_NODE_DIR = Path("/sys/devices/system/node")
SYS_PCI_DIR = Path("/sys/bus/pci/devices")


@dataclass
class Resources:
    """A snapshot of the node's resources, as sent in ``hello``."""

    cores: list[int]
    numa: list[NumaNode]
    memory_total: int
    gpus: list[GpuInfo] = field(default_factory=list)


def parse_cpulist(text: str) -> list[int]:
    """``"0-3,8,10-11"`` → ``[0, 1, 2, 3, 8, 10, 11]``."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return cpus


def _node_memory(node_dir: Path) -> int:
    try:
        text = (node_dir / "meminfo").read_text()
    except OSError:
        return 0
    match = re.search(r"MemTotal:\s+(\d+)\s*kB", text)
    return int(match.group(1)) * 1024 if match else 0


def discover_numa(
    cores: list[int], memory_total: int, sys_dir: Path = SYS_NODE_DIR
) -> list[NumaNode]:
    """NUMA nodes from sysfs, limited to usable cores; fallback: node 0 with everything."""
    nodes: list[NumaNode] = []
    usable = set(cores)
    try:
        node_dirs = sorted(
            (p for p in sys_dir.glob("node*") if p.name[4:].isdigit()),
            key=lambda p: int(p.name[4:]),
        )
    except OSError:
        node_dirs = []
    for node_dir in node_dirs:
        try:
            cpus = parse_cpulist((node_dir / "cpulist").read_text())
        except (OSError, ValueError):
            continue
        nodes.append(
            NumaNode(
                id=int(node_dir.name[4:]),
                cores=[c for c in cpus if c in usable],
                memory_total=_node_memory(node_dir),
            )
        )
    if not nodes:
        nodes = [NumaNode(id=0, cores=list(cores), memory_total=memory_total)]
    return nodes


def pci_numa_node(bus_id: str, pci_dir: Path = SYS_PCI_DIR) -> int | None:
    """NUMA node of a PCI device (``-1`` or unknown → ``None``)."""
    bus = bus_id.lower()
    if bus.count(":") == 2 and len(bus.split(":", 1)[0]) == 8:
        bus = bus[4:]  # NVML's 8-digit domain → sysfs's 4-digit one
    try:
        node = int((pci_dir / bus / "numa_node").read_text().strip())
    except (OSError, ValueError):
        return None
    return None if node < 0 else node


def discover_gpus(nvml: Nvml) -> list[GpuInfo]:
    """GPUs visible through NVML; ``[]`` without a driver."""
    gpus: list[GpuInfo] = []
    for index in range(nvml.device_count()):
        handle = nvml.handle(index)
        if handle is None:
            continue
        memory = nvml.call("nvmlDeviceGetMemoryInfo", handle)
        pci = nvml.call("nvmlDeviceGetPciInfo", handle)
        bus_id = as_text(getattr(pci, "busId", "")) if pci is not None else ""
        gpus.append(
            GpuInfo(
                index=index,
                name=as_text(nvml.call("nvmlDeviceGetName", handle)),
                uuid=as_text(nvml.call("nvmlDeviceGetUUID", handle)),
                memory_total=int(getattr(memory, "total", 0) or 0),
                pci_bus_id=bus_id,
                numa_node=pci_numa_node(bus_id) if bus_id else None,
            )
        )
    return gpus


def discover(nvml: Nvml) -> Resources:
    """Everything a ``hello`` needs to describe the node."""
    cores = sorted(os.sched_getaffinity(0))
    memory_total = int(psutil.virtual_memory().total)
    return Resources(
        cores=cores,
        numa=discover_numa(cores, memory_total),
        memory_total=memory_total,
        gpus=discover_gpus(nvml),
    )
