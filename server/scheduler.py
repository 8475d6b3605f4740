"""The queue: pending tasks are placed on nodes, priority first, then FIFO.

Dispatch is event-driven (submit, task end, node online) and coalesced: many kicks in one
loop iteration make one pass. A pass reads the reservations of active tasks, places what fits
(backfilling smaller tasks past ones that wait), writes ``assigning`` with the chosen node,
cores and GPUs in one transaction, then sends the start orders. All of it runs on the event
loop thread, so two passes never interleave and nothing is double-booked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.ids import new_id
from kohakuriver_lab.models import ACTIVE_STATUSES, TaskStatus, parse_target
from kohakuriver_lab.protocol import StartTask, TaskSpec

from .db.orm import Task
from .nodes import NodeRegistry
from .placement import NodeLoad, Placement, Request, choose_node
from .statemachine import transition

ACTIVE_VALUES = [s.value for s in ACTIVE_STATUSES]

OrderSender = Callable[[str, Any], bool]
"""Sends a message to a node's runner; returns False when the runner is not connected."""


def request_of(task: Task) -> Request:
    """The placement request a task row describes."""
    target = parse_target(task.target) if task.target else None
    indices: tuple[int, ...] | None = None
    count = 0
    if isinstance(task.req_gpus, list) and task.req_gpus:
        indices = tuple(task.req_gpus)
    elif isinstance(task.req_gpus, int):
        count = task.req_gpus
    return Request(
        cores=task.req_cores,
        memory=task.req_memory,
        gpu_indices=indices,
        gpu_count=count,
        node=target.node if target else None,
        numa=target.numa if target else None,
        backend=task.backend,
    )


def current_loads(session: Session) -> dict[str, NodeLoad]:
    """Reservations of every active task, per node."""
    loads: dict[str, NodeLoad] = {}
    rows = session.execute(
        select(
            Task.task_id, Task.node, Task.assigned_cores, Task.assigned_gpus, Task.req_memory
        ).where(Task.status.in_(ACTIVE_VALUES))
    )
    for task_id, node, cores, gpus, memory in rows:
        if node is None:
            continue
        load = loads.setdefault(node, NodeLoad())
        load.cores.update(cores or ())
        for gpu in gpus or ():
            load.gpus[gpu] = task_id
        load.memory += memory or 0
    return loads


def start_order(task: Task, kill_grace: float) -> StartTask:
    """The start order for an assigned task."""
    spec = TaskSpec(
        task_id=task.task_id,
        task_type=task.task_type,  # type: ignore[arg-type]
        command=list(task.command),
        env=dict(task.env or {}),
        workdir=task.workdir,
        cores=list(task.assigned_cores or []),
        gpus=list(task.assigned_gpus or []),
        memory=task.req_memory,
        numa=task.numa,
        backend=task.backend or "local",
        kill_grace=kill_grace,
    )
    return StartTask(order_id=new_id(), task=spec)


class Scheduler(LoggingConfigurable):
    """Places pending tasks and sends their start orders."""

    pass_limit = Integer(2000, config=True, help="Pending tasks considered per dispatch pass.")
    kill_grace = Float(
        10.0, config=True, help="Seconds between SIGTERM and SIGKILL when a task is killed."
    )
    assign_timeout = Float(
        30.0,
        config=True,
        help="Resend the start order of a task still 'assigning' after this many seconds.",
    )

    def __init__(
        self,
        db: sessionmaker[Session],
        registry: NodeRegistry,
        send: OrderSender,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._db = db
        self._registry = registry
        self._send = send
        self._kick_pending = False
        self.passes = 0

    def kick(self) -> None:
        """Ask for a dispatch pass soon (coalesced)."""
        if self._kick_pending:
            return
        self._kick_pending = True
        try:
            asyncio.get_running_loop().call_soon(self._run_pass)
        except RuntimeError:  # no loop (unit tests): run now
            self._run_pass()

    def _run_pass(self) -> None:
        self._kick_pending = False
        try:
            orders, more = self.dispatch()
        except Exception:
            self.log.exception("dispatch pass failed")
            return
        for node, order in orders:
            self._send(node, order)
        if more:
            self.kick()

    def dispatch(self) -> tuple[list[tuple[str, StartTask]], bool]:
        """One pass: assign what fits; returns the start orders and whether more is queued."""
        self.passes += 1
        shapes = self._registry.shapes(online_only=True)
        orders: list[tuple[str, StartTask]] = []
        with self._db() as session:
            pending = session.scalars(
                select(Task)
                .where(Task.status == TaskStatus.PENDING.value)
                .order_by(Task.priority.desc(), Task.task_id)
                .limit(self.pass_limit + 1)
            ).all()
            more = len(pending) > self.pass_limit
            if not pending:
                return [], False
            loads = current_loads(session)
            candidates = [(shape, loads.setdefault(shape.name, NodeLoad())) for shape in shapes]
            now = time.time()
            for task in pending[: self.pass_limit]:
                result = (
                    choose_node(request_of(task), candidates)
                    if candidates
                    else ("waiting for a node to come online")
                )
                if isinstance(result, str):
                    if task.reason != result:
                        task.reason = result
                    continue
                self._assign(session, task, result, loads[result.node], now)
                orders.append((result.node, start_order(task, self.kill_grace)))
            session.commit()
        return orders, more

    @staticmethod
    def _assign(
        session: Session, task: Task, placement: Placement, load: NodeLoad, now: float
    ) -> None:
        task.node = placement.node
        task.assigned_cores = placement.cores
        task.assigned_gpus = placement.gpus
        task.numa = placement.numa
        load.reserve(placement, task.req_memory, task.task_id)
        transition(
            session,
            task,
            TaskStatus.ASSIGNING,
            actor="scheduler",
            reason=_placement_text(placement),
            now=now,
        )

    def resend_stuck(self) -> int:
        """Resend start orders of tasks 'assigning' for longer than ``assign_timeout``."""
        limit = time.time() - self.assign_timeout
        sent = 0
        with self._db() as session:
            stuck = session.scalars(
                select(Task).where(
                    Task.status == TaskStatus.ASSIGNING.value, Task.assigned_at < limit
                )
            ).all()
            for task in stuck:
                if task.node and self._send(task.node, start_order(task, self.kill_grace)):
                    task.assigned_at = time.time()
                    sent += 1
            session.commit()
        return sent


def _placement_text(placement: Placement) -> str:
    parts = [f"node {placement.node}"]
    if placement.cores:
        parts.append("cores " + ",".join(map(str, placement.cores)))
    if placement.gpus:
        parts.append("GPUs " + ",".join(map(str, placement.gpus)))
    if placement.numa is not None:
        parts.append(f"NUMA {placement.numa}")
    return "placed on " + ", ".join(parts)
