"""The task state machine: legal transitions, terminal statuses, revival of lost tasks."""

from __future__ import annotations

import pytest

from kohakuriver_lab.errors import Conflict
from kohakuriver_lab.models import FINAL_STATUSES
from kohakuriver_lab.models import TaskStatus as S
from kohakuriver_lab.server.db.orm import Task, TaskEvent
from kohakuriver_lab.server.statemachine import can_transition, transition


class FakeSession:
    def __init__(self) -> None:
        self.added: list[object] = []
        self.info: dict[str, object] = {}

    def add(self, obj: object) -> None:
        self.added.append(obj)


def make_task(status: S) -> Task:
    return Task(task_id=1, status=status.value, submitted_at=0.0)


def test_every_status_has_a_rule() -> None:
    from kohakuriver_lab.server.statemachine import ALLOWED

    assert set(ALLOWED) == set(S) | {None}


@pytest.mark.parametrize(
    "final", sorted(FINAL_STATUSES - {S.LOST, S.STOPPED}, key=lambda s: s.value)
)
def test_terminal_statuses_never_change(final: S) -> None:
    for new in S:
        assert not can_transition(final, new), (final, new)


def test_a_stopped_vps_can_only_be_queued_again() -> None:
    assert [new for new in S if can_transition(S.STOPPED, new)] == [S.PENDING]
    assert can_transition(S.PENDING, S.STOPPED)  # a queued VPS stopped before it ran


def test_lost_revives_only_from_runner_reports() -> None:
    assert can_transition(S.LOST, S.RUNNING)
    assert can_transition(S.LOST, S.COMPLETED)
    assert can_transition(S.LOST, S.KILLED_OOM)
    assert not can_transition(S.LOST, S.PENDING)
    assert not can_transition(S.LOST, S.ASSIGNING)


def test_queue_rules() -> None:
    assert can_transition(None, S.PENDING)
    assert not can_transition(None, S.RUNNING)
    assert can_transition(S.PENDING, S.ASSIGNING)
    assert not can_transition(S.PENDING, S.RUNNING)  # must be placed first
    assert can_transition(S.RUNNING, S.PAUSED) and can_transition(S.PAUSED, S.RUNNING)


def test_transition_records_event_and_times() -> None:
    session = FakeSession()
    task = make_task(S.ASSIGNING)
    transition(session, task, S.RUNNING, actor="runner:a", reason="started", now=10.0)  # type: ignore[arg-type]
    assert task.status == "running" and task.started_at == 10.0 and task.finished_at is None
    transition(session, task, S.FAILED, actor="runner:a", reason="exit code 3", now=12.0)  # type: ignore[arg-type]
    assert task.finished_at == 12.0
    events = [e for e in session.added if isinstance(e, TaskEvent)]
    assert [(e.from_status, e.to_status, e.actor, e.reason) for e in events] == [
        ("assigning", "running", "runner:a", "started"),
        ("running", "failed", "runner:a", "exit code 3"),
    ]


def test_illegal_transition_is_refused_and_records_nothing() -> None:
    session = FakeSession()
    task = make_task(S.COMPLETED)
    with pytest.raises(Conflict, match="cannot go from completed to running"):
        transition(session, task, S.RUNNING, actor="x")  # type: ignore[arg-type]
    assert task.status == "completed" and session.added == []


def test_revival_clears_finish_time() -> None:
    session = FakeSession()
    task = make_task(S.RUNNING)
    transition(session, task, S.LOST, actor="host", now=5.0)  # type: ignore[arg-type]
    assert task.finished_at == 5.0
    transition(session, task, S.RUNNING, actor="runner:a", now=6.0)  # type: ignore[arg-type]
    assert task.finished_at is None and task.status == "running"
