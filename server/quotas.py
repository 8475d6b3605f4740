"""Quotas per user and per group (max concurrent GPUs, cores, tasks, VPS), and the usage
the scheduler checks them against. A task over quota stays ``pending`` with the reason."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.errors import NotFound
from kohakuriver_lab.models import ACTIVE_STATUSES, QuotaInfo

from .audit import AuditLog
from .db.orm import Quota, Task
from .policy import Caller

LIMITS = (("max_gpus", "GPUs"), ("max_cores", "cores"), ("max_tasks", "tasks"), ("max_vps", "VPS"))


@dataclass
class Usage:
    """What one user or group holds now (active tasks)."""

    gpus: int = 0
    cores: int = 0
    tasks: int = 0
    vps: int = 0

    def add(self, gpus: int, cores: int, vps: bool) -> None:
        self.gpus += gpus
        self.cores += cores
        self.tasks += 1
        self.vps += int(vps)

    def value(self, limit: str) -> int:
        return {"max_gpus": self.gpus, "max_cores": self.cores, "max_tasks": self.tasks}.get(
            limit, self.vps
        )


@dataclass
class QuotaCheck:
    """The quotas and current usage for one dispatch pass."""

    limits: dict[str, Quota]
    groups_of: Callable[[str], tuple[str, ...]]
    usage: dict[str, Usage] = field(default_factory=lambda: defaultdict(Usage))

    def subjects(self, owner: str) -> list[str]:
        return [f"user:{owner}", *(f"group:{g}" for g in self.groups_of(owner))]

    def refusal(self, owner: str, gpus: int, cores: int, vps: bool) -> str | None:
        """Why this request would break a quota (``None``: it fits)."""
        want = {"max_gpus": gpus, "max_cores": cores, "max_tasks": 1, "max_vps": int(vps)}
        for subject in self.subjects(owner):
            quota = self.limits.get(subject)
            if quota is None:
                continue
            used = self.usage[subject]
            for limit, label in LIMITS:
                cap = getattr(quota, limit)
                if cap is not None and want[limit] and used.value(limit) + want[limit] > cap:
                    return f"quota: {subject} uses {used.value(limit)} of {cap} {label}"
        return None

    def take(self, owner: str, gpus: int, cores: int, vps: bool) -> None:
        for subject in self.subjects(owner):
            self.usage[subject].add(gpus, cores, vps)


class QuotaService(LoggingConfigurable):
    """Stored quotas (cached) and the usage snapshot the scheduler needs."""

    def __init__(
        self,
        db: sessionmaker[Session],
        audit: AuditLog,
        groups_of: Callable[[str], tuple[str, ...]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._db = db
        self._audit = audit
        self._groups_of = groups_of
        self._limits: dict[str, Quota] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Quota]:
        with self._lock:
            if self._limits is None:
                with self._db() as session:
                    rows = session.scalars(select(Quota)).all()
                    session.expunge_all()
                self._limits = {r.subject: r for r in rows}
            return self._limits

    def list_quotas(self) -> list[QuotaInfo]:
        return [
            QuotaInfo(
                subject=q.subject,
                max_gpus=q.max_gpus,
                max_cores=q.max_cores,
                max_tasks=q.max_tasks,
                max_vps=q.max_vps,
            )
            for q in sorted(self._load().values(), key=lambda q: q.subject)
        ]

    def put(self, body: QuotaInfo, actor: Caller) -> QuotaInfo:
        """Set (replace) the quota of a user or group (admins; audited)."""
        with self._db() as session:
            row = session.get(Quota, body.subject) or Quota(subject=body.subject)
            for limit, _ in LIMITS:
                setattr(row, limit, getattr(body, limit))
            session.merge(row)
            self._audit.record(
                actor.username, "quota.set", body.subject, body.model_dump(), session=session
            )
            session.commit()
        with self._lock:
            self._limits = None
        return body

    def delete(self, subject: str, actor: Caller) -> None:
        try:  # a subject no quota can have (e.g. with a NUL, which PostgreSQL refuses)
            QuotaInfo(subject=subject)
        except ValidationError:
            raise NotFound(f"no quota for {subject!r}") from None
        with self._db() as session:
            if session.get(Quota, subject) is None:
                raise NotFound(f"no quota for {subject!r}")
            session.execute(delete(Quota).where(Quota.subject == subject))
            self._audit.record(actor.username, "quota.deleted", subject, session=session)
            session.commit()
        with self._lock:
            self._limits = None

    def check(self, session: Session) -> QuotaCheck | None:
        """The usage snapshot for a dispatch pass (``None`` when there are no quotas)."""
        limits = self._load()
        if not limits:
            return None
        check = QuotaCheck(dict(limits), self._groups_of)
        active = [s.value for s in ACTIVE_STATUSES]
        rows: Iterable[Any] = session.execute(
            select(Task.owner, Task.task_type, Task.assigned_cores, Task.assigned_gpus).where(
                Task.status.in_(active)
            )
        )
        for owner, task_type, cores, gpus in rows:
            check.take(owner, len(gpus or []), len(cores or []), task_type == "vps")
        return check
