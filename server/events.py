"""Live events for the panel, widgets and clients: task and node changes, pushed.

Task changes are collected where they happen (``note_task_changed``, called by the state
machine) and published once their transaction commits, so subscribers never see a state the
database does not hold: one event per task per commit, carrying its state after the commit
(two transitions in one transaction, e.g. a quick task's running + completed, give one event). Node changes are published by the registry. Each subscriber has a
bounded queue; one that falls behind is dropped (its client reconnects and re-reads REST).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker
from traitlets import Integer
from traitlets.config import LoggingConfigurable

from .db.orm import Task

_CHANGED = "kohakuriver_changed_tasks"


def note_task_changed(session: Session, task: Task) -> None:
    """Remember that ``task`` changed in this session (published after commit)."""
    session.info.setdefault(_CHANGED, {})[task.task_id] = task


Delivery = tuple[dict[str, Any], str | None]
"""An event and the owner of the task it is about (``None``: not about a task); the socket
shows it through :func:`~.policy.event_view` when it sends it, with the caller's rights then."""


@dataclass(eq=False)
class Subscription:
    """One subscriber: which topics it wants and its queue of events."""

    topics: frozenset[str]
    task_ids: frozenset[int] | None = None
    batch_id: int | None = None
    queue: asyncio.Queue[Delivery | None] = field(default_factory=lambda: asyncio.Queue())
    dropped: bool = False

    def wants(self, topic: str, task: Any = None) -> bool:
        """Whether this event is for this subscriber."""
        if topic not in self.topics:
            return False
        if task is None:
            return True
        if self.task_ids is not None and task.task_id not in self.task_ids:
            return False
        return self.batch_id is None or task.batch_id == self.batch_id


class EventBus(LoggingConfigurable):
    """Fan-out of task and node events to WebSocket subscribers."""

    max_queue = Integer(
        2000, config=True, help="Events buffered per subscriber before it is dropped as too slow."
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._subs: set[Subscription] = set()
        self.task_view: Callable[[Task], dict[str, Any]] | None = None

    def attach(self, db: sessionmaker[Session]) -> None:
        """Publish task changes of every session of ``db`` after it commits."""

        @event.listens_for(db, "after_commit")
        def _after_commit(session: Session) -> None:
            changed = session.info.pop(_CHANGED, None)
            if changed:
                self.publish_tasks(list(changed.values()))

        @event.listens_for(db, "after_rollback")
        def _after_rollback(session: Session) -> None:
            session.info.pop(_CHANGED, None)

    # -------------------------------------------------------------------------
    # Subscribers
    # -------------------------------------------------------------------------

    def subscribe(
        self,
        topics: frozenset[str],
        task_ids: frozenset[int] | None = None,
        batch_id: int | None = None,
    ) -> Subscription:
        """A new subscription (bounded queue)."""
        sub = Subscription(topics, task_ids, batch_id, asyncio.Queue(self.max_queue))
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub``."""
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        """How many subscribers there are."""
        return len(self._subs)

    def _deliver(self, sub: Subscription, payload: dict[str, Any], owner: str | None) -> None:
        try:
            sub.queue.put_nowait((payload, owner))
        except asyncio.QueueFull:
            self.log.warning("dropping a live-events subscriber that fell behind")
            sub.dropped = True
            self._subs.discard(sub)
            sub.queue = asyncio.Queue()
            sub.queue.put_nowait(None)  # wake the sender, which closes the socket

    # -------------------------------------------------------------------------
    # Publishing
    # -------------------------------------------------------------------------

    def publish_tasks(self, tasks: list[Task]) -> None:
        """Send ``{"type": "task", "task": {...}}`` for each changed task."""
        if not self._subs or self.task_view is None:
            return
        for task in tasks:
            payload: dict[str, Any] | None = None
            for sub in list(self._subs):
                if sub.wants("tasks", task):
                    payload = payload or {"type": "task", "task": self.task_view(task)}
                    self._deliver(sub, payload, task.owner)

    def publish_for_task(self, task: Any, payload: dict[str, Any]) -> None:
        """Send ``payload`` to the subscribers that follow ``task``."""
        for sub in list(self._subs):
            if sub.wants("tasks", task):
                self._deliver(sub, payload, task.owner)

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Send a ready-made event to every subscriber of ``topic``."""
        for sub in list(self._subs):
            if sub.wants(topic):
                self._deliver(sub, payload, None)
