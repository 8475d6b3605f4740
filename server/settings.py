"""Run-time cluster settings admins change over the API (stored in the ``settings`` table)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.models import ClusterSettings

from .audit import AuditLog
from .db.orm import Setting
from .policy import Caller


class SettingsService(LoggingConfigurable):
    """Read (cached) and change the :class:`ClusterSettings`."""

    def __init__(self, db: sessionmaker[Session], audit: AuditLog, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._db = db
        self._audit = audit
        self._current: ClusterSettings | None = None

    def get(self) -> ClusterSettings:
        if self._current is None:
            with self._db() as session:
                stored = {row.key: row.value for row in session.scalars(select(Setting))}
            known = {k: v for k, v in stored.items() if k in ClusterSettings.model_fields}
            self._current = ClusterSettings.model_validate(known)
        return self._current

    def update(self, changes: dict[str, Any], actor: Caller) -> ClusterSettings:
        """Apply a partial update (validated; unknown keys are a 400 via the model)."""
        merged = ClusterSettings.model_validate({**self.get().model_dump(), **changes})
        with self._db() as session:
            for key, value in merged.model_dump().items():
                row = session.get(Setting, key)
                if row is None:
                    session.add(Setting(key=key, value=value))
                elif row.value != value:
                    row.value = value
            self._audit.record(actor.username, "settings.updated", None, changes, session=session)
            session.commit()
        self._current = merged
        return merged
