"""Task operations behind the REST API: submit, query, kill, pause, resume."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, sessionmaker
from traitlets import Float
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.errors import Conflict, InvalidRequest, NotFound, RunnerUnavailable
from kohakuriver_lab.ids import new_id
from kohakuriver_lab.models import (
    SnapshotInfo,
    SubmitResult,
    Target,
    TaskEventInfo,
    TaskInfo,
    TaskPage,
    TaskStatus,
    TaskSubmit,
    TaskType,
)
from kohakuriver_lab.protocol import KillTask, PauseTask, ResumeTask, Snapshot

from .artifacts import ArtifactStore
from .costs import ArtifactBudget
from .db.orm import Task, TaskEvent
from .environments import EnvironmentService
from .events import note_task_changed
from .gateway import RunnerGateway
from .mounts import MountPolicy
from .nodes import NodeRegistry
from .placement import Request, impossible_reason
from .scheduler import Scheduler, request_of
from .sshkeys import generate_key_pair
from .statemachine import record_creation, transition

MAX_PAGE = 500
NOTEBOOK_JOB_COMMAND = ("python", "-m", "kohakuriver_lab.nbjob")
"""What a notebook job runs on the node ('python': the runner's own interpreter)."""
VPS_COMMAND = ("sshd",)
"""Shown as a VPS's command; the docker backend runs the image's ``/usr/sbin/sshd``."""
INPUT_NOTEBOOK = "input.ipynb"
OUTPUT_NOTEBOOK = "output.ipynb"


def load_task(session: Session, task_id: int) -> Task:
    """The task with this ID (404 when there is none)."""
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    return task


def task_info(task: Task) -> TaskInfo:
    """The API view of a task row."""
    return TaskInfo(
        task_id=task.task_id,
        batch_id=task.batch_id,
        name=task.name,
        task_type=task.task_type,  # type: ignore[arg-type]
        owner=task.owner,
        status=task.status,  # type: ignore[arg-type]
        command=task.command,
        env=task.env or {},
        workdir=task.workdir,
        priority=task.priority,
        backend=task.backend,
        image=task.image,
        environment=task.environment,
        mounts=list(task.mounts or []),
        ssh_port=task.ssh_port,
        req_cores=task.req_cores,
        req_memory=task.req_memory,
        req_gpus=task.req_gpus,
        target=task.target,
        node=task.node,
        assigned_cores=task.assigned_cores or [],
        assigned_gpus=task.assigned_gpus or [],
        numa=task.numa,
        exit_code=task.exit_code,
        reason=task.reason,
        kill_requested=task.kill_requested,
        parameters=task.parameters,
        progress=task.progress,
        output_path=task.output_path,
        submitted_at=task.submitted_at,
        started_at=task.started_at,
        finished_at=task.finished_at,
    )


class TaskService(LoggingConfigurable):
    """Submit and control tasks; every change is a DB state first, then a runner order."""

    snapshot_timeout = Float(
        600.0, config=True, help="Seconds to wait for a node to create or list VPS snapshots."
    )

    def __init__(
        self,
        db: sessionmaker[Session],
        registry: NodeRegistry,
        scheduler: Scheduler,
        gateway: RunnerGateway,
        artifacts: ArtifactStore,
        environments: EnvironmentService,
        budget: ArtifactBudget,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._artifacts = artifacts
        self._budget = budget
        self._db = db
        self._registry = registry
        self._scheduler = scheduler
        self._gateway = gateway
        self._send = gateway.send
        self._is_connected = gateway.is_connected
        self._environments = environments
        self.mount_policy = MountPolicy(parent=self)

    # -------------------------------------------------------------------------
    # Submit
    # -------------------------------------------------------------------------

    def _check_target(self, body: TaskSubmit, target: Target | None, image: str | None) -> Request:
        gpus = target.gpus if target and target.gpus is not None else body.gpus
        request = Request(
            cores=body.cores,
            memory=body.memory,
            gpu_indices=tuple(gpus) if isinstance(gpus, list | tuple) else None,
            gpu_count=gpus if isinstance(gpus, int) else 0,
            node=target.node if target else None,
            numa=target.numa if target else None,
            backend=body.backend or ("docker" if image else None),
        )
        if image and request.backend != "docker":
            raise InvalidRequest("an image or environment needs the docker backend")
        if body.mounts and request.backend != "docker":
            raise InvalidRequest("mounts need the docker backend (an image or environment)")
        known = self._registry.names()
        if target is not None and target.node not in known:
            listing = ", ".join(known) or "none registered yet"
            # the cluster, not the request, lacks it (a node may join under that name): 409
            raise Conflict(f"unknown node '{target.node}' (known nodes: {listing})")
        if request.wants_gpus and not known:
            raise InvalidRequest("no node is registered yet, so no GPU can be requested")
        reason = impossible_reason(request, self._registry.shapes())
        if reason:
            raise InvalidRequest(reason)
        return request

    def submit(self, body: TaskSubmit, owner: str, *, approval: bool = False) -> SubmitResult:
        """Queue one task per target, or per parameter set of a notebook sweep, all in one
        batch; impossible requests get 400. With ``approval`` the tasks wait in
        ``pending_approval`` until an operator approves them."""
        targets: list[Target | None] = list(body.parsed_targets()) or [None]
        notebook = body.task_type is TaskType.NOTEBOOK
        if notebook:  # one task per parameter set, all on the (at most one) target
            sets: list[dict[str, Any] | None] = list(body.parameter_sets or [body.parameters or {}])
            targets = targets * len(sets)
        else:
            sets = [None] * len(targets)
        costs = self._budget.limits
        costs.check_submit(self._db, owner, len(body.parameter_sets or []), len(targets))
        input_notebook = json.dumps(body.notebook).encode() if notebook else b""
        if notebook:
            costs.check_notebook(len(input_notebook))
            self._budget.check_new(owner, len(input_notebook))  # stored once, linked per task
        image, environment = body.image, None
        if body.environment:
            image, _, environment = self._environments.resolve(body.environment)
        mounts = [self.mount_policy.check(text) for text in body.mounts or []]
        checked = {str(t): self._check_target(body, t, image) for t in targets}
        requests = [checked[str(t)] for t in targets]
        private_key = public_key = None
        if body.task_type is TaskType.VPS:
            public_key = body.ssh_public_key
            if body.generate_ssh_key:
                private_key, public_key = generate_key_pair(f"kohakuriver-vps-{body.name or 'vps'}")
            command = list(VPS_COMMAND)
        else:
            command = list(NOTEBOOK_JOB_COMMAND if notebook else body.command or [])
        now = time.time()
        ids = [new_id() for _ in targets]
        with self._db() as session:
            for task_id, target, request, params in zip(ids, targets, requests, sets, strict=True):
                gpus: Any = (
                    list(request.gpu_indices)
                    if request.gpu_indices
                    else (request.gpu_count or None)
                )
                task = Task(
                    task_id=task_id,
                    batch_id=ids[0],
                    name=body.name,
                    task_type=body.task_type.value,
                    owner=owner,
                    status=(TaskStatus.PENDING_APPROVAL if approval else TaskStatus.PENDING).value,
                    command=command,
                    env=dict(body.env),
                    workdir=body.workdir,
                    priority=body.priority,
                    backend=body.backend or ("docker" if image else None),
                    image=image,
                    environment=environment,
                    mounts=mounts or None,
                    ssh_public_key=public_key,
                    req_cores=body.cores,
                    req_memory=body.memory,
                    req_gpus=gpus,
                    target=str(target) if target else None,
                    assigned_cores=[],
                    assigned_gpus=[],
                    kill_requested=False,
                    parameters=params,
                    submitted_at=now,
                    reason="waiting for approval" if approval else "queued",
                )
                session.add(task)
                record_creation(session, task, actor=owner, reason="submitted")
                if notebook and task_id == ids[0]:
                    self._artifacts.write(task_id, INPUT_NOTEBOOK, input_notebook)
                elif notebook:
                    self._artifacts.link(ids[0], task_id, INPUT_NOTEBOOK)
            session.commit()
        if notebook:
            self._budget.add(owner, len(input_notebook))
        self._scheduler.kick(new_tasks_only=True)
        return SubmitResult(task_ids=ids, batch_id=ids[0], ssh_private_key=private_key)

    # -------------------------------------------------------------------------
    # Queries
    # -------------------------------------------------------------------------

    def get(self, task_id: int) -> TaskInfo:
        """One task."""
        with self._db() as session:
            return task_info(load_task(session, task_id))

    def status_of(self, task_id: int) -> TaskStatus:
        """A task's current status."""
        with self._db() as session:
            return TaskStatus(load_task(session, task_id).status)

    def list_tasks(
        self,
        *,
        statuses: list[TaskStatus] | None = None,
        node: str | None = None,
        owner: str | None = None,
        batch: int | None = None,
        task_type: TaskType | None = None,
        limit: int = 100,
        cursor: int | None = None,
        count: bool = False,
    ) -> TaskPage:
        """Tasks, newest first; ``cursor`` is the last ID of the previous page; ``count``
        adds the number of all tasks matching the filters."""
        limit = max(1, min(limit, MAX_PAGE))
        filters: list[ColumnElement[bool]] = []
        if statuses:
            filters.append(Task.status.in_([s.value for s in statuses]))
        if node:
            filters.append(Task.node == node)
        if owner:
            filters.append(Task.owner == owner)
        if batch is not None:
            filters.append(Task.batch_id == batch)
        if task_type is not None:
            filters.append(Task.task_type == task_type.value)
        query = select(Task).where(*filters).order_by(Task.task_id.desc()).limit(limit + 1)
        if cursor is not None:
            query = query.where(Task.task_id < cursor)
        with self._db() as session:
            rows = session.scalars(query).all()
            total = (
                session.scalar(select(func.count()).select_from(Task).where(*filters))
                if count
                else None
            )
        page = [task_info(t) for t in rows[:limit]]
        next_cursor = str(rows[limit - 1].task_id) if len(rows) > limit else None
        return TaskPage(tasks=page, next_cursor=next_cursor, total=total)

    def events(self, task_id: int) -> list[TaskEventInfo]:
        """The task's transitions, oldest first."""
        with self._db() as session:
            load_task(session, task_id)
            rows = session.scalars(
                select(TaskEvent).where(TaskEvent.task_id == task_id).order_by(TaskEvent.event_id)
            ).all()
            return [
                TaskEventInfo(
                    event_id=e.event_id,
                    task_id=e.task_id,
                    from_status=e.from_status,  # type: ignore[arg-type]
                    to_status=e.to_status,  # type: ignore[arg-type]
                    actor=e.actor,
                    reason=e.reason,
                    at=e.at,
                )
                for e in rows
            ]

    # -------------------------------------------------------------------------
    # Control
    # -------------------------------------------------------------------------

    def kill(self, task_id: int, actor: str) -> TaskInfo:
        """Kill a task: queued ones end at once; placed ones are killed by their runner."""
        with self._db() as session:
            task = load_task(session, task_id)
            status = TaskStatus(task.status)
            if status in (TaskStatus.PENDING, TaskStatus.PENDING_APPROVAL):
                transition(
                    session, task, TaskStatus.KILLED, actor=actor, reason="killed while queued"
                )
                task.kill_requested = True
            elif status.holds_resources or status is TaskStatus.LOST:
                task.kill_requested = True
                note_task_changed(session, task)
            else:
                raise Conflict(f"task {task_id} has already ended ({status.value})")
            session.commit()
            info = task_info(task)
        if task.node and task.status != TaskStatus.KILLED.value and status is not TaskStatus.LOST:
            order = KillTask(order_id=new_id(), task_id=task_id, grace=self._scheduler.kill_grace)
            if not self._send(task.node, order):
                self.log.info("kill of task %s waits for node %s to reconnect", task_id, task.node)
        return info

    def approve(self, task_id: int, actor: str) -> TaskInfo:
        """Queue a task waiting for approval; its request is checked again against the nodes
        (400 if no node could ever run it now; it keeps waiting)."""
        with self._db() as session:
            task = load_task(session, task_id)
            if task.status != TaskStatus.PENDING_APPROVAL.value:
                raise Conflict(f"task {task_id} is {task.status}, not waiting for approval")
            reason = impossible_reason(request_of(task), self._registry.shapes())
            if reason:
                raise InvalidRequest(f"cannot approve task {task_id}: {reason}")
            transition(
                session, task, TaskStatus.PENDING, actor=actor, reason=f"approved by {actor}"
            )
            session.commit()
            info = task_info(task)
        self._scheduler.kick()
        return info

    def reject(self, task_id: int, reason: str, actor: str) -> TaskInfo:
        """Refuse a task waiting for approval (it ends ``rejected`` with the reason)."""
        with self._db() as session:
            task = load_task(session, task_id)
            if task.status != TaskStatus.PENDING_APPROVAL.value:
                raise Conflict(f"task {task_id} is {task.status}, not waiting for approval")
            transition(
                session,
                task,
                TaskStatus.REJECTED,
                actor=actor,
                reason=f"rejected by {actor}: {reason}",
            )
            session.commit()
            return task_info(task)

    def _control(self, task_id: int, expected: TaskStatus, verb: str) -> TaskInfo:
        with self._db() as session:
            task = load_task(session, task_id)
            info = task_info(task)
        if TaskStatus(task.status) is not expected:
            raise Conflict(
                f"task {task_id} is {task.status}; only a {expected.value} task can be {verb}d"
            )
        if not task.node or not self._is_connected(task.node):
            raise RunnerUnavailable(f"node {task.node} is not connected; try again when it is")
        order = (PauseTask if verb == "pause" else ResumeTask)(order_id=new_id(), task_id=task_id)
        self._send(task.node, order)
        return info

    def pause(self, task_id: int) -> TaskInfo:
        """Freeze a running task (the status changes when the runner confirms)."""
        return self._control(task_id, TaskStatus.RUNNING, "pause")

    def resume(self, task_id: int) -> TaskInfo:
        """Thaw a paused task (the status changes when the runner confirms)."""
        return self._control(task_id, TaskStatus.PAUSED, "resume")

    # -------------------------------------------------------------------------
    # Docker VPS: stop, start again, snapshots
    # -------------------------------------------------------------------------

    def _vps(self, session: Session, task_id: int) -> Task:
        task = load_task(session, task_id)
        if task.task_type != TaskType.VPS.value:
            raise Conflict(f"task {task_id} is a {task.task_type} task, not a VPS")
        return task

    def stop(self, task_id: int, snapshot: bool, actor: str) -> TaskInfo:
        """Stop a VPS (it ends as ``stopped``), committing a snapshot first if asked."""
        with self._db() as session:
            task = self._vps(session, task_id)
            status = TaskStatus(task.status)
            if status in (TaskStatus.PENDING, TaskStatus.PENDING_APPROVAL):
                transition(
                    session, task, TaskStatus.STOPPED, actor=actor, reason="stopped while queued"
                )
            elif status.holds_resources:
                task.kill_requested = True
                note_task_changed(session, task)
            else:
                raise Conflict(f"VPS {task_id} is not running ({status.value})")
            session.commit()
            info = task_info(task)
        if task.node and status.holds_resources:
            order = KillTask(
                order_id=new_id(),
                task_id=task_id,
                grace=self._scheduler.kill_grace,
                stop=True,
                snapshot=snapshot,
            )
            if not self._send(task.node, order):
                raise RunnerUnavailable(f"node {task.node} is not connected; try again when it is")
        return info

    def start(self, task_id: int, actor: str) -> TaskInfo:
        """Queue a stopped VPS again, on its node (where its snapshots are); it starts from
        its latest snapshot, or from its image when it has none."""
        with self._db() as session:
            task = self._vps(session, task_id)
            if task.status != TaskStatus.STOPPED.value:
                raise Conflict(f"VPS {task_id} is {task.status}; only a stopped VPS can be started")
            if task.node:
                task.target = task.node
            task.node = None
            task.assigned_cores, task.assigned_gpus, task.numa = [], [], None
            task.exit_code, task.ssh_port, task.kill_requested = None, None, False
            transition(session, task, TaskStatus.PENDING, actor=actor, reason="started again")
            task.finished_at = None
            session.commit()
            info = task_info(task)
        self._scheduler.kick(new_tasks_only=False)
        return info

    async def snapshot(
        self, task_id: int, action: str, tag: str | None = None
    ) -> list[SnapshotInfo]:
        """Create, list or delete a VPS's snapshots on its node; the snapshots after it."""
        with self._db() as session:
            task = self._vps(session, task_id)
            node, status = task.node or task.target, TaskStatus(task.status)
        if action == "create" and status not in (TaskStatus.RUNNING, TaskStatus.PAUSED):
            raise Conflict(
                f"VPS {task_id} is {status.value}; only a running VPS can be snapshotted"
            )
        if not node:
            raise Conflict(f"VPS {task_id} has not run on any node yet")
        order = Snapshot(order_id=new_id(), task_id=task_id, action=action, tag=tag)  # type: ignore[arg-type]
        result = await self._gateway.request(node.split(":")[0], order, self.snapshot_timeout)
        return [SnapshotInfo.model_validate(s) for s in result.get("snapshots", [])]
