"""Runner tokens: random secrets shown once, stored as SHA-256, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.errors import NotFound
from kohakuriver_lab.ids import new_id
from kohakuriver_lab.models import RunnerTokenCreate, RunnerTokenInfo

from .db.orm import RunnerToken

TOKEN_PREFIX = "krr_"


def hash_token(token: str) -> str:
    """The stored form of a token (tokens are 256-bit random, so a plain hash suffices)."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_info(row: RunnerToken, token: str | None = None) -> RunnerTokenInfo:
    """The API view of a token row."""
    return RunnerTokenInfo(
        token_id=row.token_id,
        name=row.name,
        node=row.node,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked=row.revoked_at is not None,
        token=token,
    )


class RunnerTokenService(LoggingConfigurable):
    """Create, list, verify and revoke runner tokens."""

    def __init__(self, db: sessionmaker[Session], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._db = db

    def create(self, body: RunnerTokenCreate, created_by: str) -> RunnerTokenInfo:
        """Make a token; the secret is in the returned object and nowhere else."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = RunnerToken(
            token_id=new_id(),
            name=body.name,
            node=body.node,
            token_hash=hash_token(token),
            created_by=created_by,
            created_at=time.time(),
        )
        with self._db() as session:
            session.add(row)
            session.commit()
        self.log.info("runner token %s (%s) created by %s", row.token_id, row.name, created_by)
        return token_info(row, token)

    def list_tokens(self) -> list[RunnerTokenInfo]:
        """Every token, newest first, without secrets."""
        with self._db() as session:
            rows = session.scalars(select(RunnerToken).order_by(RunnerToken.token_id.desc()))
            return [token_info(r) for r in rows]

    def revoke(self, token_id: int) -> None:
        """Revoke a token (idempotent)."""
        with self._db() as session:
            row = session.get(RunnerToken, token_id)
            if row is None:
                raise NotFound(f"runner token {token_id} not found")
            if row.revoked_at is None:
                row.revoked_at = time.time()
                session.commit()

    def revoke_named(self, name: str) -> None:
        """Revoke every live token with this name (used for the embedded runner's token)."""
        with self._db() as session:
            for row in session.scalars(
                select(RunnerToken).where(
                    RunnerToken.name == name, RunnerToken.revoked_at.is_(None)
                )
            ):
                row.revoked_at = time.time()
            session.commit()

    def verify(self, token: str) -> RunnerToken | None:
        """The live token row for a presented secret, or ``None``."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = hash_token(token)
        with self._db() as session:
            row = session.scalars(
                select(RunnerToken).where(RunnerToken.token_hash == digest)
            ).first()
            if row is None or row.revoked_at is not None:
                return None
            if not hmac.compare_digest(row.token_hash, digest):
                return None
            row.last_used_at = time.time()
            session.commit()
            return row
