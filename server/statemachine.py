"""The task state machine: which transitions are legal, and recording them.

Rules (architecture §5): terminal statuses never change, except that a ``lost`` task comes
back when its runner reconnects and reports it alive or finished, and a ``stopped`` VPS is
queued again when it is started again. Every transition is written
to ``task_events`` with its actor and reason, in the caller's transaction.
"""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from kohakuriver_lab.errors import Conflict
from kohakuriver_lab.ids import new_id
from kohakuriver_lab.models import TaskStatus as S

from .db.orm import Task, TaskEvent
from .events import note_task_changed

_RUNNER_OUTCOMES = {S.COMPLETED, S.FAILED, S.KILLED, S.KILLED_OOM, S.STOPPED}

ALLOWED: dict[S | None, frozenset[S]] = {
    None: frozenset({S.PENDING_APPROVAL, S.PENDING}),
    S.PENDING_APPROVAL: frozenset({S.PENDING, S.REJECTED, S.KILLED}),
    S.PENDING: frozenset({S.ASSIGNING, S.KILLED, S.STOPPED}),
    # A runner may report a very short task's end before its start reached us.
    S.ASSIGNING: frozenset({S.RUNNING, S.PAUSED, S.PENDING, S.LOST} | _RUNNER_OUTCOMES),
    S.RUNNING: frozenset({S.PAUSED, S.LOST} | _RUNNER_OUTCOMES),
    S.PAUSED: frozenset({S.RUNNING, S.LOST} | _RUNNER_OUTCOMES),
    # Revival by a reconnecting runner that still has (or has finished) the task.
    S.LOST: frozenset({S.RUNNING, S.PAUSED, S.COMPLETED, S.FAILED, S.KILLED, S.KILLED_OOM}),
    S.REJECTED: frozenset(),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.KILLED: frozenset(),
    S.KILLED_OOM: frozenset(),
    S.STOPPED: frozenset({S.PENDING}),  # a VPS started again (TaskService.start)
}


def can_transition(current: S | None, new: S) -> bool:
    """Whether ``current → new`` is a legal transition."""
    return new in ALLOWED[current]


def transition(
    session: Session,
    task: Task,
    new: S,
    *,
    actor: str,
    reason: str | None = None,
    now: float | None = None,
) -> TaskEvent:
    """Move ``task`` to ``new`` (``reason`` becomes the task's reason), stamp its times and
    add the event row (no commit).

    Raises :class:`~kohakuriver_lab.errors.Conflict` for an illegal transition.
    """
    current = S(task.status)
    if not can_transition(current, new):
        raise Conflict(f"task {task.task_id} cannot go from {current.value} to {new.value}")
    now = time.time() if now is None else now
    task.status = new.value
    task.reason = reason
    if new is S.ASSIGNING:
        task.assigned_at = now
    elif new is S.RUNNING and task.started_at is None:
        task.started_at = now
    if new.is_final:
        task.finished_at = now
    elif current is S.LOST:
        task.finished_at = None
    event = TaskEvent(
        event_id=new_id(),
        task_id=task.task_id,
        from_status=current.value,
        to_status=new.value,
        actor=actor,
        reason=reason,
        at=now,
    )
    session.add(event)
    note_task_changed(session, task)
    return event


def record_creation(session: Session, task: Task, *, actor: str, reason: str | None) -> None:
    """Add the first event of a new task (``(new) → status``)."""
    session.add(
        TaskEvent(
            event_id=new_id(),
            task_id=task.task_id,
            from_status=None,
            to_status=task.status,
            actor=actor,
            reason=reason,
            at=task.submitted_at,
        )
    )
    note_task_changed(session, task)
