"""Invitations: how lab members get an account with a password on the host.

An admin (or an operator, for ``viewer`` accounts only) creates an invitation: a random token
(``kri_...``) shown once with its registration URL, stored only as its SHA-256, with a role,
groups, an expiry and a number of uses. Whoever holds it registers a user name and a password
at ``/kohakuriver/register``; uses are counted atomically (one UPDATE with the limits in its
WHERE clause), so an invitation for one never makes two accounts. Everything is audited;
neither the token nor the password is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from traitlets import Integer
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.errors import Conflict, Forbidden, NotFound
from kohakuriver_lab.ids import new_id
from kohakuriver_lab.models import InvitationCreate, InvitationInfo, Role, UserInfo

from .audit import AuditLog
from .db.orm import Invitation
from .policy import Caller
from .throttle import Throttle
from .users import UserDirectory

INVITATION_PREFIX = "kri_"


def token_hash(token: str) -> str:
    """What is stored of an invitation token."""
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_info(
    row: Invitation, token: str | None = None, url: str | None = None
) -> InvitationInfo:
    """The API view of an invitation row (the secret only when just created)."""
    return InvitationInfo(
        invitation_id=row.invitation_id,
        role=Role(row.role),
        groups=list(row.groups or []),
        max_uses=row.max_uses,
        uses=row.uses,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
        token=token,
        url=url,
    )


@dataclass(frozen=True)
class Offer:
    """What a valid invitation grants."""

    invitation_id: int
    role: Role
    groups: tuple[str, ...]


def _refusal(row: Invitation | None, now: float) -> str | None:
    """Why this invitation cannot be used now (``None``: it can)."""
    if row is None:
        return "this invitation is not valid (check the link, or ask for a new one)"
    if row.revoked_at is not None:
        return "this invitation was revoked (ask for a new one)"
    if row.expires_at <= now:
        return "this invitation has expired (ask for a new one)"
    if row.uses >= row.max_uses:
        return "this invitation has been used up (ask for a new one)"
    return None


class InvitationService(LoggingConfigurable):
    """Create, list, revoke and redeem invitations."""

    registrations_per_minute = Integer(
        10,
        config=True,
        help="Registration attempts one address may make per minute (429 beyond).",
    )
    registrations_per_minute_total = Integer(
        100, config=True, help="Registration attempts from all addresses per minute."
    )

    def __init__(
        self,
        db: sessionmaker[Session],
        audit: AuditLog,
        users: UserDirectory,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._db = db
        self._audit = audit
        self._users = users
        self.throttle = Throttle(
            self.registrations_per_minute,
            self.registrations_per_minute_total,
            what="registration attempts",
        )

    def create(self, caller: Caller, body: InvitationCreate, register_url: str) -> InvitationInfo:
        """A new invitation; its token and URL are in this response only. Admins invite any
        role; operators only viewers."""
        if not caller.role.at_least(Role.ADMIN) and body.role is not Role.VIEWER:
            raise Forbidden(
                f"inviting a {body.role.value} needs the admin role "
                f"(operators may invite viewers only)"
            )
        now = time.time()
        secret = INVITATION_PREFIX + secrets.token_urlsafe(32)
        row = Invitation(
            invitation_id=new_id(),
            token_hash=token_hash(secret),
            role=body.role.value,
            groups=list(body.groups),
            max_uses=body.max_uses,
            uses=0,
            created_by=caller.username,
            created_at=now,
            expires_at=now + body.expires_in_hours * 3600,
        )
        with self._db() as session:
            session.add(row)
            self._audit.record(
                caller.username,
                "invitation.created",
                f"invitation:{row.invitation_id}",
                {
                    "role": row.role,
                    "groups": row.groups,
                    "max_uses": row.max_uses,
                    "expires_at": row.expires_at,
                },
                session=session,
            )
            session.commit()
            return invitation_info(row, secret, f"{register_url}?token={secret}")

    def list_invitations(self) -> list[InvitationInfo]:
        """Every invitation, newest first, without secrets."""
        query = select(Invitation).order_by(Invitation.invitation_id.desc())
        with self._db() as session:
            return [invitation_info(r) for r in session.scalars(query)]

    def revoke(self, invitation_id: int, caller: Caller) -> None:
        """Revoke an invitation (idempotent; accounts made with it stay)."""
        with self._db() as session:
            row = session.get(Invitation, invitation_id)
            if row is None:
                raise NotFound(f"invitation {invitation_id} not found")
            if row.revoked_at is None:
                row.revoked_at = time.time()
                self._audit.record(
                    caller.username,
                    "invitation.revoked",
                    f"invitation:{invitation_id}",
                    {"uses": row.uses, "max_uses": row.max_uses},
                    session=session,
                )
                session.commit()

    @staticmethod
    def _find(session: Session, token: str) -> Invitation | None:
        """The invitation of ``token``, looked up by its hash (the secret itself is never
        compared, so the lookup's timing says nothing about it)."""
        if not token.startswith(INVITATION_PREFIX) or len(token) > 200:
            return None
        digest = token_hash(token)
        row = session.scalars(select(Invitation).where(Invitation.token_hash == digest)).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return row

    def check(self, token: str) -> Offer:
        """What ``token`` grants, or :class:`Forbidden` with the reason (cheap: no hashing of
        passwords happens before this)."""
        with self._db() as session:
            row = self._find(session, token)
            reason = _refusal(row, time.time())
            if reason is not None or row is None:
                raise Forbidden(reason or "invalid invitation")
            return Offer(row.invitation_id, Role(row.role), tuple(row.groups or []))

    def redeem(
        self, token: str, username: str, password_hash: str, address: str | None
    ) -> UserInfo:
        """Create the account and count the use, in one transaction (403 when the invitation
        cannot be used, 409 when the name is taken)."""
        now = time.time()
        with self._db() as session:
            row = self._find(session, token)
            reason = _refusal(row, now)
            if reason is not None or row is None:
                raise Forbidden(reason or "invalid invitation")
            counted = cast(
                "CursorResult[Any]",
                session.execute(
                    update(Invitation)
                    .where(
                        Invitation.invitation_id == row.invitation_id,
                        Invitation.uses < Invitation.max_uses,
                        Invitation.revoked_at.is_(None),
                        Invitation.expires_at > now,
                    )
                    .values(uses=Invitation.uses + 1)
                    .execution_options(synchronize_session=False)
                ),
            )
            if counted.rowcount != 1:  # someone else took the last use meanwhile
                session.rollback()
                raise Forbidden("this invitation has been used up (ask for a new one)")
            invitation_id, role, groups = row.invitation_id, Role(row.role), list(row.groups or [])
            origin = f"invitation:{invitation_id}"
            self._users.add(username, role, groups, password_hash, origin, session)
            self._audit.record(
                username,
                "invitation.used",
                origin,
                {"username": username, "role": role.value, "groups": groups},
                address=address,
                session=session,
            )
            try:
                session.commit()
            except IntegrityError:  # the same name registered at the same moment
                session.rollback()
                raise Conflict(f"the user name {username!r} is taken") from None
        self.log.info("%s registered through invitation %s", username, invitation_id)
        return self._users.get(username)
