"""Cost bounds of the host (``c.CostLimits.*``): request bodies, sweeps and batches, queued
tasks per user, notebook and artifact bytes. Every refusal names its limit and trait."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from traitlets import Integer
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.errors import InvalidRequest, TooLarge, TooManyRequests
from kohakuriver_lab.models import TaskStatus

from .db.orm import Task

MiB = 1024 * 1024
QUEUED = (TaskStatus.PENDING.value, TaskStatus.PENDING_APPROVAL.value)


def _trait(name: str) -> str:
    return f"CostLimits.{name}"


class CostLimits(LoggingConfigurable):
    """What one request, one job and one user may cost the host."""

    max_body_bytes = Integer(
        1 * MiB,
        config=True,
        help="Largest JSON body of an API request (bytes); larger ones get 413 before they "
        "are read. Submits may add max_notebook_bytes.",
    )
    max_notebook_bytes = Integer(
        15 * MiB,
        config=True,
        help="Largest notebook a notebook job (or sweep) may carry (bytes, as stored).",
    )
    max_parameter_sets = Integer(
        1000, config=True, help="Most parameter sets in one notebook sweep (at most 10000)."
    )
    max_batch_tasks = Integer(
        1000, config=True, help="Most tasks one submit may create (targets x parameter sets)."
    )
    max_queued_tasks = Integer(
        5000,
        config=True,
        help="Most tasks one user may have waiting (pending + pending_approval); 0: no limit.",
    )
    max_artifact_bytes = Integer(
        64 * MiB, config=True, help="Largest single artifact a job may upload (bytes)."
    )
    max_job_artifact_bytes = Integer(
        256 * MiB, config=True, help="Most artifact bytes one task may store (input included)."
    )
    max_user_artifact_bytes = Integer(
        20 * 1024 * MiB,
        config=True,
        help="Most artifact bytes all tasks of one user may store (bytes).",
    )

    def submit_body_bytes(self) -> int:
        """The body limit of ``POST /tasks``: a notebook plus the usual fields."""
        return int(self.max_notebook_bytes) + int(self.max_body_bytes)

    def check_submit(self, db: sessionmaker[Session], owner: str, sets: int, tasks: int) -> None:
        """Refuse a submit over the sweep, batch or queue limits (400/429)."""
        if sets > self.max_parameter_sets:
            raise InvalidRequest(
                f"a sweep may have at most {self.max_parameter_sets} parameter sets, not {sets} "
                f"({_trait('max_parameter_sets')})"
            )
        if tasks > self.max_batch_tasks:
            raise InvalidRequest(
                f"one submit may create at most {self.max_batch_tasks} tasks, not {tasks} "
                f"({_trait('max_batch_tasks')})"
            )
        if self.max_queued_tasks <= 0:
            return
        with db() as session:
            queued = session.scalar(
                select(func.count())
                .select_from(Task)
                .where(Task.owner == owner, Task.status.in_(QUEUED))
            )
        if int(queued or 0) + tasks > self.max_queued_tasks:
            raise TooManyRequests(
                f"{owner} has {queued} queued tasks; {tasks} more would pass the limit of "
                f"{self.max_queued_tasks} ({_trait('max_queued_tasks')})"
            )

    def check_notebook(self, size: int) -> None:
        """Refuse a notebook over :attr:`max_notebook_bytes` (413)."""
        if size > self.max_notebook_bytes:
            raise TooLarge(
                f"the notebook is {size} bytes, over the limit of {self.max_notebook_bytes} "
                f"({_trait('max_notebook_bytes')})"
            )


class ArtifactBudget:
    """Artifact bytes per user, counted from disk once per user and kept up to date by the
    writes that go through it (hard-linked copies count once)."""

    def __init__(
        self,
        limits: CostLimits,
        db: sessionmaker[Session],
        folder_of: Callable[[int], str],
    ) -> None:
        self.limits = limits
        self._db = db
        self._folder_of = folder_of
        self._used: dict[str, int] = {}

    def used(self, owner: str) -> int:
        """Bytes the user's tasks store now."""
        if owner not in self._used:
            with self._db() as session:
                ids = session.scalars(select(Task.task_id).where(Task.owner == owner)).all()
            seen: set[tuple[int, int]] = set()
            total = 0
            for task_id in ids:
                total += _folder_bytes(self._folder_of(task_id), seen)
            self._used[owner] = total
        return self._used[owner]

    def add(self, owner: str, delta: int) -> None:
        """Account bytes written (or removed: a negative ``delta``); a user not counted
        yet is counted from disk, with these bytes, when first needed."""
        if owner in self._used:
            self._used[owner] = max(0, self._used[owner] + delta)

    def forget(self, owner: str) -> None:
        """Count the user again from disk next time (after deletions)."""
        self._used.pop(owner, None)

    def room(self, owner: str, job_bytes: int, replaced: int) -> tuple[int, str]:
        """How many bytes one more artifact may have, and the limit that says so."""
        limits = self.limits
        options = [
            (int(limits.max_artifact_bytes), "max_artifact_bytes", "an artifact"),
            (
                int(limits.max_job_artifact_bytes) - (job_bytes - replaced),
                "max_job_artifact_bytes",
                "a task's artifacts in all",
            ),
            (
                int(limits.max_user_artifact_bytes) - (self.used(owner) - replaced),
                "max_user_artifact_bytes",
                f"the artifacts of {owner}'s tasks in all",
            ),
        ]
        room, name, what = min(options, key=lambda o: o[0])
        limit = getattr(limits, name)
        return max(0, room), f"{what} may hold at most {limit} bytes ({_trait(name)})"

    def check_new(self, owner: str, size: int) -> None:
        """Refuse storing ``size`` more bytes for the user (413)."""
        cap = int(self.limits.max_user_artifact_bytes)
        used = self.used(owner)
        if used + size > cap:
            raise TooLarge(
                f"{owner}'s tasks store {used} artifact bytes; {size} more would pass the limit "
                f"of {cap} ({_trait('max_user_artifact_bytes')})"
            )


def _folder_bytes(folder: str, seen: set[tuple[int, int]]) -> int:
    total = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            stat: Any = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        key = (stat.st_dev, stat.st_ino)
        if key not in seen:
            seen.add(key)
            total += int(stat.st_size)
    return total
