"""Placement: which node, cores and GPUs a task gets (pure functions, no I/O).

A request names a core count, optional memory, GPUs as indices or a count, and optionally a
node, a NUMA node and a backend. :func:`fit_on_node` answers for one node with the reason when
it does not fit; :func:`choose_node` picks the best node among candidates; and
:func:`impossible_reason` tells whether a request could ever fit on some node of the cluster
(used to refuse impossible submits with 400 instead of queueing them forever).

Everything is linear in a node's cores and GPUs (a node may register thousands of cores), and
:func:`impossible_reason` only counts: O(1) per node, whatever its size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from kohakuriver_lab.models import format_memory

# =============================================================================
# Data
# =============================================================================


@dataclass(frozen=True)
class NodeShape:
    """What a node has, as its runner registered it."""

    name: str
    cores: tuple[int, ...]
    numa: dict[int, tuple[int, ...]]
    memory_total: int
    gpus: dict[int, int | None]
    """GPU index → NUMA node (``None`` when unknown)."""
    backends: frozenset[str] = frozenset({"local"})
    images: frozenset[str] = frozenset()
    """Container images present on the node (normalized ``repo:tag``)."""

    @cached_property
    def core_numa(self) -> dict[int, int]:
        """Core id → its NUMA node (computed once per shape)."""
        return {core: numa_id for numa_id, cores in self.numa.items() for core in cores}

    @cached_property
    def gpus_per_numa(self) -> dict[int | None, int]:
        """NUMA node (``None``: unknown) → how many GPUs it has."""
        counts: dict[int | None, int] = {}
        for numa in self.gpus.values():
            counts[numa] = counts.get(numa, 0) + 1
        return counts

    def numa_of_core(self, core: int) -> int | None:
        """The NUMA node a core belongs to."""
        return self.core_numa.get(core)


@dataclass
class NodeLoad:
    """What is reserved on a node by its active tasks."""

    cores: set[int] = field(default_factory=set)
    gpus: dict[int, int] = field(default_factory=dict)
    """GPU index → id of the task holding it."""
    memory: int = 0

    def reserve(self, placement: Placement, memory: int | None, task_id: int) -> None:
        """Add a placement to the load."""
        self.cores.update(placement.cores)
        for gpu in placement.gpus:
            self.gpus[gpu] = task_id
        self.memory += memory or 0


@dataclass(frozen=True)
class Request:
    """What one task asks for."""

    cores: int = 1
    memory: int | None = None
    gpu_indices: tuple[int, ...] | None = None
    gpu_count: int = 0
    node: str | None = None
    numa: int | None = None
    backend: str | None = None
    image: str | None = None
    """Normalized image reference; nodes that already have it are preferred."""

    @property
    def wants_gpus(self) -> bool:
        """Whether any GPU is requested."""
        return bool(self.gpu_indices) or self.gpu_count > 0


@dataclass(frozen=True)
class Placement:
    """Where a task goes and what it holds there."""

    node: str
    cores: list[int]
    gpus: list[int]
    numa: int | None


# =============================================================================
# One node
# =============================================================================


def _pick_gpus(req: Request, shape: NodeShape, load: NodeLoad) -> list[int] | str:
    if req.gpu_indices:
        missing = [g for g in req.gpu_indices if g not in shape.gpus]
        if missing:
            return f"has no GPU {', '.join(map(str, missing))} (GPUs: {_gpu_list(shape)})"
        busy = [g for g in req.gpu_indices if g in load.gpus]
        if busy:
            held = ", ".join(f"GPU {g} held by task {load.gpus[g]}" for g in busy)
            return held
        if req.numa is not None:
            wrong = [g for g in req.gpu_indices if shape.gpus[g] not in (None, req.numa)]
            if wrong:
                return f"GPU {', '.join(map(str, wrong))} is not on NUMA node {req.numa}"
        return list(req.gpu_indices)
    if req.gpu_count <= 0:
        return []
    free = [g for g in sorted(shape.gpus) if g not in load.gpus]
    if req.numa is not None:
        free = [g for g in free if shape.gpus[g] in (None, req.numa)]
    if len(free) < req.gpu_count:
        where = f" on NUMA node {req.numa}" if req.numa is not None else ""
        return f"needs {req.gpu_count} GPUs{where}, {len(free)} free of {len(shape.gpus)}"
    groups: dict[int | None, list[int]] = {}
    for gpu in free:
        groups.setdefault(shape.gpus[gpu], []).append(gpu)
    fitting = [g for g in groups.values() if len(g) >= req.gpu_count]
    if fitting:
        best = min(fitting, key=lambda g: (len(g), g[0]))  # best fit keeps big groups whole
        return best[: req.gpu_count]
    return free[: req.gpu_count]


def _pick_cores(
    req: Request, shape: NodeShape, load: NodeLoad, prefer_numa: int | None
) -> list[int] | str:
    if req.cores <= 0:
        return []
    core_numa = shape.core_numa
    free = [c for c in shape.cores if c not in load.cores]
    if req.numa is not None:
        pool = [c for c in free if core_numa.get(c) == req.numa]
        if len(pool) < req.cores:
            return (
                f"needs {req.cores} cores on NUMA node {req.numa}, {len(pool)} free "
                f"of {len(shape.numa.get(req.numa, ()))}"
            )
        return pool[: req.cores]
    if len(free) < req.cores:
        return f"needs {req.cores} cores, {len(free)} free of {len(shape.cores)}"
    groups: dict[int, list[int]] = {numa_id: [] for numa_id in shape.numa}
    for core in free:
        numa_id = core_numa.get(core)
        if numa_id is not None:
            groups[numa_id].append(core)
    if prefer_numa is not None and len(groups.get(prefer_numa, ())) >= req.cores:
        return groups[prefer_numa][: req.cores]
    fitting = [g for g in groups.values() if len(g) >= req.cores]
    if fitting:
        return max(fitting, key=len)[: req.cores]  # keep the task on one NUMA node
    return free[: req.cores]


def fit_on_node(req: Request, shape: NodeShape, load: NodeLoad) -> Placement | str:
    """Place ``req`` on one node, or return why it does not fit there now."""
    if req.backend and req.backend not in shape.backends:
        return f"has no '{req.backend}' backend (has: {', '.join(sorted(shape.backends))})"
    if req.numa is not None and req.numa not in shape.numa:
        return f"has no NUMA node {req.numa} (has: {', '.join(map(str, sorted(shape.numa)))})"
    if req.memory:
        free_memory = shape.memory_total - load.memory
        if req.memory > free_memory:
            return (
                f"needs {format_memory(req.memory)} memory, {format_memory(max(free_memory, 0))}"
                f" free of {format_memory(shape.memory_total)}"
            )
    gpus = _pick_gpus(req, shape, load)
    if isinstance(gpus, str):
        return gpus
    gpu_numas = {shape.gpus[g] for g in gpus} - {None}
    prefer = next(iter(gpu_numas)) if len(gpu_numas) == 1 else None
    cores = _pick_cores(req, shape, load, prefer)
    if isinstance(cores, str):
        return cores
    numa = req.numa
    if numa is None:
        numas = {shape.numa_of_core(c) for c in cores} | gpu_numas
        numas.discard(None)
        if len(numas) == 1:
            numa = next(iter(numas))
    return Placement(node=shape.name, cores=cores, gpus=gpus, numa=numa)


def _gpu_list(shape: NodeShape) -> str:
    return ", ".join(map(str, sorted(shape.gpus))) or "none"


# =============================================================================
# Many nodes
# =============================================================================


def choose_node(req: Request, candidates: Sequence[tuple[NodeShape, NodeLoad]]) -> Placement | str:
    """Pick the best node for ``req``; or a human-readable reason nothing fits now.

    GPU tasks go where the fewest GPUs stay free (keeping whole nodes for big jobs);
    CPU-only tasks prefer nodes without GPUs, then the most free cores. Before all that, a
    task with an image prefers nodes that already have the image (no transfer, no pull).
    """
    best: tuple[tuple[int, ...], Placement] | None = None
    reasons: list[str] = []
    for shape, load in candidates:
        if req.node is not None and shape.name != req.node:
            continue
        fit = fit_on_node(req, shape, load)
        if isinstance(fit, str):
            reasons.append(f"{shape.name}: {fit}")
            continue
        free_cores = len(shape.cores) - len(load.cores) - len(fit.cores)
        free_gpus = len(shape.gpus) - len(load.gpus) - len(fit.gpus)
        missing_image = int(req.image is not None and req.image not in shape.images)
        if req.wants_gpus:
            score: tuple[int, ...] = (missing_image, free_gpus, -free_cores)
        else:
            score = (missing_image, len(shape.gpus), -free_cores)
        if best is None or score < best[0]:
            best = (score, fit)
    if best is not None:
        return best[1]
    if req.node is not None and not reasons:
        return f"waiting for node {req.node} to come online"
    if not reasons:
        return "waiting for a node to come online"
    shown = "; ".join(reasons[:4])
    if len(reasons) > 4:
        shown += f"; and {len(reasons) - 4} more nodes"
    return f"waiting for resources: {shown}"


def never_fits(req: Request, shape: NodeShape) -> str | None:
    """Why ``req`` cannot fit on ``shape`` even when the node is idle, or ``None``: counts
    only (O(1) plus the GPU indices asked for), no cores are picked."""
    if req.backend and req.backend not in shape.backends:
        return f"has no '{req.backend}' backend (has: {', '.join(sorted(shape.backends))})"
    if req.numa is not None and req.numa not in shape.numa:
        return f"has no NUMA node {req.numa} (has: {', '.join(map(str, sorted(shape.numa)))})"
    if req.memory and req.memory > shape.memory_total:
        return (
            f"needs {format_memory(req.memory)} memory, {format_memory(shape.memory_total)}"
            f" free of {format_memory(shape.memory_total)}"
        )
    if req.gpu_indices:
        missing = [g for g in req.gpu_indices if g not in shape.gpus]
        if missing:
            return f"has no GPU {', '.join(map(str, missing))} (GPUs: {_gpu_list(shape)})"
        if req.numa is not None:
            wrong = [g for g in req.gpu_indices if shape.gpus[g] not in (None, req.numa)]
            if wrong:
                return f"GPU {', '.join(map(str, wrong))} is not on NUMA node {req.numa}"
    elif req.gpu_count > 0:
        counts = shape.gpus_per_numa
        usable = len(shape.gpus)
        if req.numa is not None:
            usable = counts.get(req.numa, 0) + counts.get(None, 0)
        if usable < req.gpu_count:
            where = f" on NUMA node {req.numa}" if req.numa is not None else ""
            return f"needs {req.gpu_count} GPUs{where}, {usable} free of {len(shape.gpus)}"
    total = len(shape.cores)
    if req.numa is not None:
        on_numa = len(shape.numa.get(req.numa, ()))
        if req.cores > on_numa:
            return f"needs {req.cores} cores on NUMA node {req.numa}, {on_numa} free of {on_numa}"
    elif req.cores > total:
        return f"needs {req.cores} cores, {total} free of {total}"
    return None


def impossible_reason(req: Request, shapes: Iterable[NodeShape]) -> str | None:
    """Why ``req`` can never run on any known node (even an idle one), or ``None``.

    O(1) per node (:func:`never_fits`): a submit costs no core picking, however many cores
    the registered nodes claim."""
    reasons = []
    for shape in shapes:
        if req.node is not None and shape.name != req.node:
            continue
        why = never_fits(req, shape)
        if why is None:
            return None
        reasons.append(f"{shape.name} {why}")
    if not reasons:
        return None
    return "no node can ever run this task: " + "; ".join(reasons[:4])
