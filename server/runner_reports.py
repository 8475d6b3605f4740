"""What runners report about tasks: reconciliation on ``hello``, ``task_state`` and ``log``
frames. A mixin of :class:`~.gateway.RunnerGateway` (which owns sessions and sending).

A runner may only report on tasks assigned to its own node. Task-state reports arriving in
one loop turn are applied in one transaction; when that fails, each is applied on its own, so
one report the database refuses never drops the others.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from kohakuriver_lab.ids import new_id
from kohakuriver_lab.models import LogStream, TaskStatus
from kohakuriver_lab.protocol import ForgetTask, KillTask, LogData, TaskReport, TaskState

from .db.orm import Task
from .events import note_task_changed
from .logstore import LogStore
from .scheduler import ACTIVE_VALUES, Scheduler
from .statemachine import can_transition, transition

ALIVE = {"running": TaskStatus.RUNNING, "paused": TaskStatus.PAUSED}

Followups = list[tuple[str, Any]]


class RunnerConnection(Protocol):
    """What the gateway needs from a runner's socket."""

    node: str | None
    token_id: int
    token_node: str | None
    address: str | None

    def write_message(self, message: str) -> Any:
        """Send one text frame."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close the socket."""


class ProtocolViolation(Exception):
    """A runner message that is well-formed but not allowed."""


class TaskReports:
    """Reconciliation and task reports (state and logs) of connected runners."""

    log: logging.Logger
    _db: sessionmaker[Session]
    _scheduler: Scheduler
    _logs: LogStore
    _task_nodes: dict[int, str]
    _pending_forget: dict[int, dict[LogStream, int]]
    _state_reports: list[tuple[RunnerConnection, TaskState]]
    _retired: set[int]

    def send(self, node: str, message: Any) -> bool:
        """Send to a node's runner (the gateway)."""
        raise NotImplementedError

    def _refuse(self, conn: RunnerConnection, exc: Exception) -> None:
        raise NotImplementedError

    @staticmethod
    def _node(conn: RunnerConnection) -> str:
        assert conn.node is not None
        return conn.node

    def _check_owner(self, conn: RunnerConnection, task_id: int) -> None:
        """Refuse reports about tasks not assigned to the sender's node (cached per task)."""
        node = self._task_nodes.get(task_id)
        if node is None:
            with self._db() as session:
                task = session.get(Task, task_id)
            if task is None or task.node is None:
                raise ProtocolViolation(f"task {task_id} is not assigned to node {conn.node}")
            node = self._task_nodes[task_id] = task.node
        if node != conn.node:
            raise ProtocolViolation(f"task {task_id} is not assigned to node {conn.node}")

    def _reconcile(self, session: Session, node: str, reports: list[TaskReport]) -> list[Any]:
        actor = f"runner:{node}"
        followups: list[Any] = []
        reported = {r.task_id for r in reports}
        for report in reports:
            task = session.get(Task, report.task_id)
            alive = report.state in ALIVE
            if task is None or task.node != node:
                self.log.warning("runner %s reports unknown task %s", node, report.task_id)
                followups.append(
                    self._kill(report.task_id, 0) if alive else ForgetTask(task_id=report.task_id)
                )
                continue
            self._task_nodes[task.task_id] = node
            status = TaskStatus(task.status)
            if alive:
                new = ALIVE[report.state]
                if status.is_final and status is not TaskStatus.LOST:
                    followups.append(self._kill(task.task_id, 0))
                    continue
                if status is not new:
                    transition(
                        session,
                        task,
                        new,
                        actor=actor,
                        reason="reported by the runner on (re)connect",
                    )
                if report.ssh_port is not None:
                    task.ssh_port = report.ssh_port
                if task.kill_requested:
                    followups.append(self._kill(task.task_id, self._scheduler.kill_grace))
            else:
                self._apply_outcome(
                    session, task, report.state, report.exit_code, report.reason, actor
                )
                self._pending_forget[task.task_id] = dict(report.log_sizes)
        missing = session.scalars(
            select(Task).where(Task.node == node, Task.status.in_(ACTIVE_VALUES))
        ).all()
        for task in missing:
            if task.task_id in reported:
                continue
            if task.status == TaskStatus.ASSIGNING.value and task.kill_requested:
                transition(
                    session, task, TaskStatus.KILLED, actor=actor, reason="killed before it started"
                )
            elif task.status == TaskStatus.ASSIGNING.value:
                followups.append(self._scheduler.order_for(task))
            else:
                transition(
                    session,
                    task,
                    TaskStatus.LOST,
                    actor=actor,
                    reason=f"runner {node} no longer has this task",
                )
        return followups

    def _kill(self, task_id: int, grace: float) -> KillTask:
        return KillTask(order_id=new_id(), task_id=task_id, grace=grace)

    def _apply_outcome(
        self,
        session: Session,
        task: Task,
        state: str,
        exit_code: int | None,
        reason: str | None,
        actor: str,
    ) -> bool:
        outcome = TaskStatus(state)
        current = TaskStatus(task.status)
        if current is outcome or not can_transition(current, outcome):
            if current is not outcome:
                self.log.info(
                    "ignoring %s for task %s (already %s)", state, task.task_id, current.value
                )
            return False
        task.exit_code = exit_code
        job_error = (task.progress or {}).get("error")
        if outcome is TaskStatus.FAILED and job_error:
            reason = str(job_error)  # the job said what failed (e.g. the notebook cell)
        transition(session, task, outcome, actor=actor, reason=reason)
        return True

    def _maybe_forget(self, task_id: int) -> None:
        expected = self._pending_forget.get(task_id)
        if expected is None:
            return
        if all(self._logs.size(task_id, s) >= size for s, size in expected.items()):
            node = self._task_nodes.pop(task_id, None)
            del self._pending_forget[task_id]
            if node:
                self.send(node, ForgetTask(task_id=task_id))
            self._logs.notify(task_id)

    # -------------------------------------------------------------------------
    # Task state and logs
    # -------------------------------------------------------------------------

    def on_task_state(self, conn: RunnerConnection, message: TaskState) -> None:
        """Queue a runner's report of a task's new state; reports arriving in one loop turn
        are applied in one transaction."""
        self._state_reports.append((conn, message))
        if len(self._state_reports) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.apply_state_reports)
            except RuntimeError:  # no loop (unit tests): apply now
                self.apply_state_reports()

    def apply_state_reports(self) -> None:
        """Apply every queued task-state report in one transaction, then send follow-ups.

        When that transaction fails (a report the database refuses), each report is
        applied on its own: the bad one is refused and logged, the others are kept."""
        reports, self._state_reports = self._state_reports, []
        reports = [(c, m) for c, m in reports if id(c) not in self._retired]
        if not reports:
            return
        try:
            outcome = self._apply_reports(reports)
        except Exception:
            if len(reports) == 1:
                self._report_failed(*reports[0])
                return
            self.log.warning(
                "%d task-state reports failed together; applying each alone", len(reports)
            )
            for report in reports:
                try:
                    outcome = self._apply_reports([report])
                except Exception:
                    self._report_failed(*report)
                    continue
                self._after_reports(*outcome)
            return
        self._after_reports(*outcome)

    def _report_failed(self, conn: RunnerConnection, message: TaskState) -> None:
        self.log.exception(
            "could not apply runner %s's report on task %s", conn.node, message.task_id
        )
        self._refuse(conn, ProtocolViolation(f"report on task {message.task_id} was refused"))

    def _apply_reports(
        self, reports: list[tuple[RunnerConnection, TaskState]]
    ) -> tuple[list[tuple[str, Any]], list[int], list[tuple[RunnerConnection, ProtocolViolation]]]:
        """Apply reports in one transaction; the follow-ups, the ended task IDs, the
        refusals (nothing is sent: a failed transaction leaves no trace)."""
        followups: list[tuple[str, Any]] = []
        ended: list[int] = []
        refused: list[tuple[RunnerConnection, ProtocolViolation]] = []
        with self._db() as session:
            ids = {m.task_id for _, m in reports}
            tasks = {
                t.task_id: t for t in session.scalars(select(Task).where(Task.task_id.in_(ids)))
            }
            for conn, message in reports:
                node = self._node(conn)
                task = tasks.get(message.task_id)
                if task is None:  # e.g. an orphan the host told it to kill: let it go
                    self.log.info("runner %s reports unknown task %s", node, message.task_id)
                    if message.state in ALIVE:
                        followups.append((node, self._kill(message.task_id, 0)))
                    else:
                        followups.append((node, ForgetTask(task_id=message.task_id)))
                    continue
                if task.node != node:
                    violation = ProtocolViolation(
                        f"task {message.task_id} is not assigned to node {node}"
                    )
                    refused.append((conn, violation))
                    continue
                status = TaskStatus(task.status)
                actor = f"runner:{node}"
                if message.state in ALIVE:
                    new = ALIVE[message.state]
                    if status.is_final and status is not TaskStatus.LOST:
                        followups.append((node, self._kill(task.task_id, 0)))
                    elif status is not new:
                        transition(session, task, new, actor=actor, reason=message.reason)
                    if message.ssh_port is not None and task.ssh_port != message.ssh_port:
                        task.ssh_port = message.ssh_port
                        note_task_changed(session, task)
                    continue
                if self._apply_outcome(
                    session, task, message.state, message.exit_code, message.reason, actor
                ):
                    ended.append(task.task_id)
                # The runner sends every log byte before a final state: the logs are complete.
                followups.append((node, ForgetTask(task_id=message.task_id)))
            session.commit()
        return followups, ended, refused

    def _after_reports(
        self,
        followups: list[tuple[str, Any]],
        ended: list[int],
        refused: list[tuple[RunnerConnection, ProtocolViolation]],
    ) -> None:
        for conn, violation in refused:
            self._refuse(conn, violation)
        for node, order in followups:
            self.send(node, order)
            if isinstance(order, ForgetTask):
                self._task_nodes.pop(order.task_id, None)
                self._logs.notify(order.task_id)
        if ended:
            self._scheduler.kick()

    def on_log(self, conn: RunnerConnection, message: LogData) -> None:
        """Store a log chunk."""
        self._check_owner(conn, message.task_id)
        try:
            data = base64.b64decode(message.data, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolViolation("log data is not valid base64") from None
        try:
            self._logs.write(message.task_id, message.stream, message.offset, data)
        except ValueError as exc:
            self.log.debug("task %s: %s", message.task_id, exc)
            return
        if message.task_id in self._pending_forget:
            self._maybe_forget(message.task_id)

    def waiting_for_logs(self, task_id: int) -> bool:
        """Whether a finished task's logs are still being resent by its runner."""
        return task_id in self._pending_forget
