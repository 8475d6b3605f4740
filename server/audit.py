"""The audit log: security-relevant actions (logins, tokens, roles, approvals, kills of others'
tasks, settings), readable by admins. Never holds secrets."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.ids import new_id
from kohakuriver_lab.models import AuditEventInfo

from .db.orm import AuditEvent

MAX_PAGE = 500


class AuditLog(LoggingConfigurable):
    """Append and read audit events."""

    def __init__(self, db: sessionmaker[Session], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._db = db

    def record(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
        *,
        address: str | None = None,
        session: Session | None = None,
    ) -> None:
        """Add an event (in ``session`` when given: committed with the change it records)."""
        row = AuditEvent(
            event_id=new_id(),
            at=time.time(),
            actor=actor,
            action=action,
            target=target,
            detail=detail,
            address=address,
        )
        self.log.info("audit: %s %s %s", actor, action, target or "")
        if session is not None:
            session.add(row)
            return
        with self._db() as own:
            own.add(row)
            own.commit()

    def list_events(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[AuditEventInfo]:
        """Events, newest first."""
        query = select(AuditEvent).order_by(AuditEvent.event_id.desc())
        if actor:
            query = query.where(AuditEvent.actor == actor)
        if action:
            query = query.where(AuditEvent.action == action)
        if before is not None:
            query = query.where(AuditEvent.event_id < before)
        with self._db() as session:
            rows = session.scalars(query.limit(max(1, min(limit, MAX_PAGE)))).all()
            return [
                AuditEventInfo(
                    event_id=r.event_id,
                    at=r.at,
                    actor=r.actor,
                    action=r.action,
                    target=r.target,
                    detail=r.detail,
                    address=r.address,
                )
                for r in rows
            ]
