"""The node registry: what each node has, whether it is alive, and its recent metrics.

Node descriptions live in the ``nodes`` table; liveness and metrics live in memory (a
heartbeat costs no database write: ``last_heartbeat`` is flushed periodically). Metrics
events are coalesced: subscribers get at most one per node per ``metrics_event_interval``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.models import (
    GpuInfo,
    NodeInfo,
    NodeMetrics,
    NodeStatus,
    NodeUsage,
    NumaNode,
    normalize_image,
)
from kohakuriver_lab.protocol import Hello

from .db.orm import Node
from .events import EventBus
from .placement import NodeLoad, NodeShape


@dataclass
class NodeState:
    """In-memory view of one node."""

    name: str
    shape: NodeShape
    row: dict[str, Any]
    status: NodeStatus
    last_seen: float
    history: deque[NodeMetrics] = field(default_factory=lambda: deque(maxlen=120))
    last_event: float = 0.0
    """When a metrics event was last published for this node (monotonic)."""


def _shape_of(row: Node, images: frozenset[str] = frozenset()) -> NodeShape:
    numa = {int(n["id"]): tuple(n["cores"]) for n in row.numa} or {0: tuple(row.cores)}
    gpus = {int(g["index"]): g.get("numa_node") for g in row.gpus}
    return NodeShape(
        name=row.name,
        cores=tuple(row.cores),
        numa=numa,
        memory_total=row.memory_total,
        gpus=gpus,
        backends=frozenset(row.backends),
        images=images,
    )


def _row_dict(row: Node) -> dict[str, Any]:
    return {
        "hostname": row.hostname,
        "numa": row.numa,
        "gpus": row.gpus,
        "version": row.version,
    }


class NodeRegistry(LoggingConfigurable):
    """Registration, liveness and metrics history of every node."""

    heartbeat_interval = Float(
        5.0, config=True, help="Seconds between runner heartbeats (sent to runners on connect)."
    )
    offline_after = Integer(
        3, config=True, help="A node is offline after this many missed heartbeat intervals."
    )
    history_size = Integer(
        120, config=True, help="Metrics samples kept per node for the charts (in memory)."
    )
    metrics_event_interval = Float(
        1.0,
        config=True,
        help="Seconds between two metrics events of one node on the live-events socket "
        "(heartbeats in between are kept in the history, not pushed).",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._nodes: dict[str, NodeState] = {}
        self.events: EventBus | None = None
        """Where status changes and heartbeats are published (set by the services)."""

    def _emit(self, payload: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.publish("nodes", payload)

    # -------------------------------------------------------------------------
    # Loading and registration
    # -------------------------------------------------------------------------

    def load(self, session: Session) -> None:
        """Load nodes from the DB; nodes marked online get a fresh grace period."""
        now = time.time()
        for row in session.scalars(select(Node)):
            self._nodes[row.name] = NodeState(
                name=row.name,
                shape=_shape_of(row),
                row=_row_dict(row),
                status=NodeStatus(row.status),
                last_seen=now,
                history=deque(maxlen=self.history_size),
            )

    def register(self, session: Session, hello: Hello, owner: int | None = None) -> NodeState:
        """Record a runner's hello (upsert the node row, owned by the token ``owner``); the
        node is not online yet."""
        now = time.time()
        row = session.get(Node, hello.node)
        if row is None:
            row = Node(name=hello.node, registered_at=now)
            session.add(row)
        if owner is not None:
            row.token_id = owner
        row.hostname = hello.hostname
        row.cores = list(hello.cores)
        row.numa = [n.model_dump() for n in hello.numa]
        row.memory_total = hello.memory_total
        row.gpus = [g.model_dump() for g in hello.gpus]
        row.backends = list(hello.backends)
        row.version = hello.version
        row.last_heartbeat = now
        state = self._nodes.get(hello.node)
        history = state.history if state else deque(maxlen=self.history_size)
        status = state.status if state else NodeStatus.OFFLINE
        row.status = status.value
        images = frozenset(normalize_image(i) for i in hello.images)  # in memory only
        state = NodeState(
            name=row.name,
            shape=_shape_of(row, images),
            row=_row_dict(row),
            status=status,
            last_seen=now,
            history=history,
        )
        self._nodes[row.name] = state
        return state

    def set_status(self, session: Session, name: str, status: NodeStatus) -> None:
        """Mark a node online or offline, in memory and in the DB."""
        state = self._nodes[name]
        state.status = status
        self._emit({"type": "node", "name": name, "status": status.value})
        session.execute(
            update(Node)
            .where(Node.name == name)
            .values(status=status.value, last_heartbeat=state.last_seen)
        )

    # -------------------------------------------------------------------------
    # Liveness and metrics
    # -------------------------------------------------------------------------

    def heartbeat(self, name: str, metrics: NodeMetrics | None = None) -> None:
        """Note that a node is alive, with an optional metrics sample."""
        state = self._nodes.get(name)
        if state is None:
            return
        state.last_seen = time.time()
        if metrics is None:
            return
        state.history.append(metrics)
        if self.events is None or not self.events.subscribers:
            return
        now = time.monotonic()
        if now - state.last_event < self.metrics_event_interval:
            return  # coalesced: a flood of heartbeats is not a flood of events
        state.last_event = now
        self._emit({"type": "metrics", "name": name, "metrics": metrics.model_dump(mode="json")})

    def remove(self, session: Session, name: str) -> None:
        """Delete a node's row (the caller commits, then calls :meth:`forget`)."""
        session.execute(delete(Node).where(Node.name == name))

    def forget(self, name: str) -> None:
        """Drop a removed node from memory (``{"type": "node_removed", "name"}`` event)."""
        if self._nodes.pop(name, None) is not None:
            self._emit({"type": "node_removed", "name": name})

    def stale(self, now: float | None = None) -> list[str]:
        """Online nodes that missed ``offline_after`` heartbeat intervals."""
        now = time.time() if now is None else now
        limit = self.offline_after * self.heartbeat_interval
        return [
            s.name
            for s in self._nodes.values()
            if s.status is NodeStatus.ONLINE and now - s.last_seen > limit
        ]

    def flush(self, session: Session) -> None:
        """Write the in-memory heartbeat times of online nodes to the DB."""
        for state in self._nodes.values():
            if state.status is NodeStatus.ONLINE:
                session.execute(
                    update(Node)
                    .where(Node.name == state.name)
                    .values(last_heartbeat=state.last_seen)
                )

    # -------------------------------------------------------------------------
    # Queries
    # -------------------------------------------------------------------------

    def get(self, name: str) -> NodeState | None:
        """The node called ``name``, if it ever registered."""
        return self._nodes.get(name)

    def names(self) -> list[str]:
        """Every registered node name, sorted."""
        return sorted(self._nodes)

    def shapes(self, online_only: bool = False) -> list[NodeShape]:
        """Node shapes (all registered ones, or only online ones)."""
        return [
            s.shape
            for s in self._nodes.values()
            if not online_only or s.status is NodeStatus.ONLINE
        ]

    def info(self, name: str, load: NodeLoad | None, *, with_history: bool) -> NodeInfo:
        """The API view of a node."""
        state = self._nodes[name]
        load = load or NodeLoad()
        usage = NodeUsage(
            cores_used=sorted(load.cores),
            gpus_used={str(g): t for g, t in sorted(load.gpus.items())},
            memory_reserved=load.memory,
        )
        return NodeInfo(
            name=name,
            status=state.status,
            hostname=state.row["hostname"],
            cores=list(state.shape.cores),
            numa=[NumaNode.model_validate(n) for n in state.row["numa"]],
            memory_total=state.shape.memory_total,
            gpus=[GpuInfo.model_validate(g) for g in state.row["gpus"]],
            backends=sorted(state.shape.backends),
            images=sorted(state.shape.images),
            version=state.row["version"],
            last_heartbeat=state.last_seen,
            usage=usage,
            metrics=state.history[-1] if state.history else None,
            history=list(state.history) if with_history else None,
        )
