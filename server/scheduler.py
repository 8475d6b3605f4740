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
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, object_session, sessionmaker
from traitlets import Bool, Float, Integer
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.ids import new_id
from kohakuriver_lab.models import ACTIVE_STATUSES, TaskStatus, normalize_image, parse_target
from kohakuriver_lab.protocol import ImageFetch, Mount, StartTask, TaskSpec, VpsSpec

from .db.orm import Task
from .nodes import NodeRegistry
from .placement import NodeLoad, Placement, Request, choose_node
from .statemachine import transition
from .tasktokens import TaskTokens

if TYPE_CHECKING:
    from .environments import EnvironmentService
    from .quotas import QuotaService

ACTIVE_VALUES = [s.value for s in ACTIVE_STATUSES]

OrderSender = Callable[[str, Any], bool]
"""Sends a message to a node's runner; returns False when the runner is not connected."""


class RequestFields(Protocol):
    """The task columns placement reads (an ORM task or a result row)."""

    req_cores: int
    req_memory: int | None
    req_gpus: Any
    target: str | None
    backend: str | None
    image: str | None


NO_NODE_ONLINE = "waiting for a node to come online"
_PLACEMENT_COLUMNS = (
    Task.task_id,
    Task.owner,
    Task.task_type,
    Task.priority,
    Task.req_cores,
    Task.req_memory,
    Task.req_gpus,
    Task.target,
    Task.backend,
    Task.image,
    Task.reason,
)


def backend_of(task: Task) -> str:
    """The backend a task runs with: as asked, else docker for an image, else local."""
    return task.backend or ("docker" if task.image else "local")


def request_of(task: RequestFields) -> Request:
    """The placement request a task describes."""
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
        backend=task.backend or ("docker" if task.image else None),
        image=normalize_image(task.image) if task.image else None,
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


def _mount(text: str) -> Mount:
    source, target, mode = text.split(":")
    return Mount(source=source, target=target, read_only=mode == "ro")


def start_order(
    task: Task,
    kill_grace: float,
    task_token: str | None = None,
    fetch: ImageFetch | None = None,
) -> StartTask:
    """The start order for an assigned task (the task token goes into its environment;
    ``fetch`` says where its environment image can be downloaded)."""
    env = dict(task.env or {})
    if task_token:
        env["KOHAKURIVER_TASK_TOKEN"] = task_token
    vps = None
    if task.task_type == "vps" and task.ssh_public_key:
        vps = VpsSpec(ssh_public_keys=[task.ssh_public_key], restore_snapshot=True)
    spec = TaskSpec(
        task_id=task.task_id,
        task_type=task.task_type,  # type: ignore[arg-type]
        owner=task.owner,
        command=list(task.command),
        env=env,
        workdir=task.workdir,
        cores=list(task.assigned_cores or []),
        gpus=list(task.assigned_gpus or []),
        memory=task.req_memory,
        numa=task.numa,
        backend=backend_of(task),
        image=task.image,
        fetch=fetch,
        mounts=[_mount(m) for m in task.mounts or []],
        vps=vps,
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
    fair_share = Bool(
        True,
        config=True,
        help="Among tasks of equal priority, serve users holding fewer running tasks first "
        "(else strictly first come, first served).",
    )

    def __init__(
        self,
        db: sessionmaker[Session],
        registry: NodeRegistry,
        send: OrderSender,
        task_tokens: TaskTokens | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._db = db
        self._task_tokens = task_tokens
        self.environments: EnvironmentService | None = None
        self.quotas: QuotaService | None = None
        self._registry = registry
        self._send = send
        self._kick_pending = False
        self._full_pass = True
        self._seen_up_to = 0
        self.passes = 0

    def order_for(self, task: Task) -> StartTask:
        """The start order of an assigned task, with its task token."""
        token = self._task_tokens.token_for(task.task_id) if self._task_tokens else None
        fetch = None
        session = object_session(task)
        if task.environment and self.environments is not None and session is not None:
            fetch = self.environments.fetch_for(session, task.environment)
        return start_order(task, self.kill_grace, token, fetch)

    def kick(self, *, new_tasks_only: bool = False) -> None:
        """Ask for a dispatch pass soon (coalesced).

        ``new_tasks_only``: nothing was freed since the last pass (a submit), so tasks that
        did not fit then still do not fit, and only tasks queued since need a look.
        """
        if not new_tasks_only:
            self._full_pass = True
        if self._kick_pending:
            return
        self._kick_pending = True
        try:
            asyncio.get_running_loop().call_soon(self._run_pass)
        except RuntimeError:  # no loop (unit tests): run now
            self._run_pass()

    def _run_pass(self) -> None:
        self._kick_pending = False
        after = None if self._full_pass else self._seen_up_to
        self._full_pass = False
        try:
            orders, more = self.dispatch(after_id=after)
        except Exception:
            self.log.exception("dispatch pass failed")
            self._full_pass = True
            return
        for node, order in orders:
            self._send(node, order)
        if more:
            self.kick()

    def dispatch(self, after_id: int | None = None) -> tuple[list[tuple[str, StartTask]], bool]:
        """One pass: assign what fits; returns the start orders and whether more is queued.

        ``after_id`` limits the pass to tasks queued after that ID (see :meth:`kick`).

        Only the columns placement needs are read for the queue; full rows are loaded for
        the tasks that get placed.
        """
        self.passes += 1
        shapes = self._registry.shapes(online_only=True)
        with self._db() as session:
            if not shapes:  # nothing can be placed: just say so, cheaply
                session.execute(
                    update(Task)
                    .where(Task.status == TaskStatus.PENDING.value)
                    .where(or_(Task.reason.is_(None), Task.reason != NO_NODE_ONLINE))
                    .values(reason=NO_NODE_ONLINE)
                )
                session.commit()
                return [], False
            query = (
                select(*_PLACEMENT_COLUMNS)
                .where(Task.status == TaskStatus.PENDING.value)
                .order_by(Task.priority.desc(), Task.task_id)
                .limit(self.pass_limit + 1)
            )
            if after_id is not None:
                query = query.where(Task.task_id > after_id)
            rows = session.execute(query).all()
            more = len(rows) > self.pass_limit
            if not rows:
                return [], False
            self._seen_up_to = max(self._seen_up_to, max(r.task_id for r in rows))
            loads = current_loads(session)
            candidates = [(shape, loads.setdefault(shape.name, NodeLoad())) for shape in shapes]
            placed: dict[int, Placement] = {}
            reasons: list[dict[str, Any]] = []
            quota = self.quotas.check(session) if self.quotas is not None else None
            window = rows[: self.pass_limit]
            for row in fair_order(session, window) if self.fair_share else window:
                request = request_of(row)
                vps = row.task_type == "vps"
                result: Placement | str | None = None
                if quota is not None:
                    gpus = len(request.gpu_indices or ()) or request.gpu_count
                    result = quota.refusal(row.owner, gpus, row.req_cores, vps)
                result = result or choose_node(request, candidates)
                if isinstance(result, str):
                    if row.reason != result:
                        reasons.append({"task_id": row.task_id, "reason": result})
                    continue
                loads[result.node].reserve(result, row.req_memory, row.task_id)
                placed[row.task_id] = result
                if quota is not None:
                    quota.take(row.owner, len(result.gpus), len(result.cores), vps)
            if reasons:
                session.execute(update(Task), reasons)
            orders: list[tuple[str, StartTask]] = []
            if placed:
                now = time.time()
                tasks = {
                    t.task_id: t
                    for t in session.scalars(select(Task).where(Task.task_id.in_(placed)))
                }
                for task_id, placement in placed.items():
                    task = tasks[task_id]
                    self._assign(session, task, placement, now)
                    orders.append((placement.node, self.order_for(task)))
            session.commit()
        return orders, more

    @staticmethod
    def _assign(session: Session, task: Task, placement: Placement, now: float) -> None:
        task.node = placement.node
        task.assigned_cores = placement.cores
        task.assigned_gpus = placement.gpus
        task.numa = placement.numa
        transition(
            session,
            task,
            TaskStatus.ASSIGNING,
            actor="scheduler",
            reason=_placement_text(placement),
            now=now,
        )

    def resend_stuck(self) -> int:
        """Resend start orders of tasks 'assigning' for longer than ``assign_timeout``
        (or end them as killed when a kill was asked for meanwhile)."""
        limit = time.time() - self.assign_timeout
        sent = 0
        freed = False
        with self._db() as session:
            stuck = session.scalars(
                select(Task).where(
                    Task.status == TaskStatus.ASSIGNING.value, Task.assigned_at < limit
                )
            ).all()
            for task in stuck:
                if task.kill_requested:  # the runner never confirmed it: it never ran
                    transition(
                        session,
                        task,
                        TaskStatus.KILLED,
                        actor="scheduler",
                        reason="killed before it started",
                    )
                    freed = True
                elif task.node and self._send(task.node, self.order_for(task)):
                    task.assigned_at = time.time()
                    sent += 1
            session.commit()
        if freed:
            self.kick()
        return sent


def fair_order(session: Session, rows: Sequence[Any]) -> list[Any]:
    """Queue rows (priority, then ID order) with users interleaved within each priority:
    the n-th waiting task of a user holding k active tasks ranks as k + n, so users holding
    less go first and nobody's burst starves the others. One user: unchanged."""
    owners = {row.owner for row in rows}
    if len(owners) < 2:
        return list(rows)
    active = dict(
        session.execute(
            select(Task.owner, func.count())
            .where(Task.status.in_(ACTIVE_VALUES), Task.owner.in_(owners))
            .group_by(Task.owner)
        ).all()
    )
    seen: Counter[str] = Counter()
    keyed = []
    for row in rows:
        rank = active.get(row.owner, 0) + seen[row.owner]
        seen[row.owner] += 1
        keyed.append(((-row.priority, rank, row.task_id), row))
    return [row for _, row in sorted(keyed, key=lambda pair: pair[0])]


def _placement_text(placement: Placement) -> str:
    parts = [f"node {placement.node}"]
    if placement.cores:
        parts.append("cores " + ",".join(map(str, placement.cores)))
    if placement.gpus:
        parts.append("GPUs " + ",".join(map(str, placement.gpus)))
    if placement.numa is not None:
        parts.append(f"NUMA {placement.numa}")
    return "placed on " + ", ".join(parts)
