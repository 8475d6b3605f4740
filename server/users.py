"""Cluster users and their personal API tokens.

A Jupyter identity becomes a cluster user the first time it calls the API: the host's owner
(and ``UserDirectory.admin_users``) as ``admin``, anyone else with ``new_user_role``. Roles,
groups and deactivation are changed by admins (audited). API tokens (``kra_...``) are stored
as SHA-256, shown once, expire, may carry scopes, and are revocable; their last use is kept
in memory and written in batches (no DB write per request).
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from traitlets import Enum, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from kohakuriver_lab._client_config import API_TOKEN_PREFIX
from kohakuriver_lab.errors import Conflict, Forbidden, InvalidRequest, NotFound
from kohakuriver_lab.ids import new_id
from kohakuriver_lab.models import (
    ApiTokenCreate,
    ApiTokenInfo,
    Role,
    Scope,
    UserCreate,
    UserInfo,
    UserUpdate,
)

from .audit import AuditLog
from .db.orm import ApiToken, User
from .livesockets import SocketRegistry
from .policy import Caller


@functools.cache
def host_owner() -> str:
    """The OS user running the host (always a cluster admin)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "owner"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def user_info(row: User) -> UserInfo:
    """The API view of a user row."""
    return UserInfo(
        username=row.username,
        role=Role(row.role),
        active=row.active,
        groups=list(row.groups or []),
        has_password=row.password_hash is not None,
        created_by=row.created_by,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
    )


@dataclass(frozen=True)
class _Member:
    role: Role
    active: bool
    groups: tuple[str, ...]


class UserDirectory(LoggingConfigurable):
    """Cluster users: roles, groups, deactivation (cached in memory; one host process)."""

    admin_users = List(
        Unicode(),
        default_value=[],
        config=True,
        help="User names that are always cluster admins (the host's owner always is).",
    )
    new_user_role = Enum(
        ["none", "viewer", "user"],
        default_value="viewer",
        config=True,
        help="Role of a Jupyter identity the cluster has not seen before ('none': refused "
        "until an admin adds them). Invited accounts get their invitation's role.",
    )

    def __init__(self, db: sessionmaker[Session], audit: AuditLog, owner: str, **kwargs: Any):
        super().__init__(**kwargs)
        self._db = db
        self._audit = audit
        self.owner = owner
        self._members: dict[str, _Member] = {}
        self._lock = threading.Lock()
        self.sockets: SocketRegistry | None = None
        """Open sockets, re-checked when a role or the active flag changes."""

    def _is_admin_by_config(self, username: str) -> bool:
        return username == self.owner or username in self.admin_users

    def _load(self, username: str) -> _Member | None:
        with self._lock:
            member = self._members.get(username)
        if member is not None:
            return member
        with self._db() as session:
            row = session.get(User, username)
            if row is None:
                if self._is_admin_by_config(username):
                    role = Role.ADMIN
                elif self.new_user_role == "none":
                    return None
                else:
                    role = Role(self.new_user_role)
                row = User(
                    username=username,
                    role=role.value,
                    active=True,
                    groups=[],
                    created_by="first login",
                    created_at=time.time(),
                    last_seen_at=time.time(),
                )
                session.add(row)
                self._audit.record(
                    "host", "user.created", username, {"role": role.value}, session=session
                )
                session.commit()
                self.log.info("new cluster user %s (%s)", username, role.value)
            elif self._is_admin_by_config(username) and row.role != Role.ADMIN.value:
                row.role = Role.ADMIN.value  # configured admins stay admins
                session.commit()
            member = _Member(Role(row.role), row.active, tuple(row.groups or []))
        with self._lock:
            self._members[username] = member
        return member

    def caller(
        self,
        username: str,
        *,
        scopes: frozenset[Scope] | None = None,
        via: str = "jupyter",
        token_id: int | None = None,
    ) -> Caller:
        """The cluster identity of ``username`` (403 when deactivated or not a member)."""
        member = self._load(username)
        if member is None:
            raise Forbidden(f"{username} is not a member of this cluster (ask an admin)")
        if not member.active:
            raise Forbidden(f"the account {username} is deactivated")
        return Caller(username, member.role, member.groups, scopes, via, token_id)

    def groups_of(self, username: str) -> tuple[str, ...]:
        member = self._load(username)
        return member.groups if member else ()

    # ----- admin operations -----

    def list_users(self) -> list[UserInfo]:
        with self._db() as session:
            return [user_info(r) for r in session.scalars(select(User).order_by(User.username))]

    def get(self, username: str) -> UserInfo:
        with self._db() as session:
            row = session.get(User, username)
            if row is None:
                raise NotFound(f"user {username!r} not found")
            return user_info(row)

    def update(self, username: str, body: UserUpdate, actor: Caller) -> UserInfo:
        """Change a user's role, groups or active flag (admins; audited)."""
        with self._db() as session:
            row = session.get(User, username)
            if row is None:
                raise NotFound(f"user {username!r} not found")
            changes: dict[str, Any] = {}
            if body.role is not None and body.role.value != row.role:
                if self._is_admin_by_config(username) and body.role is not Role.ADMIN:
                    raise Conflict(f"{username} is an admin by configuration")
                changes["role"] = [row.role, body.role.value]
                row.role = body.role.value
            if body.active is not None and body.active != row.active:
                if not body.active and (
                    username == actor.username or self._is_admin_by_config(username)
                ):
                    raise Conflict(f"{username} cannot be deactivated")
                changes["active"] = [row.active, body.active]
                row.active = body.active
            if body.groups is not None and list(body.groups) != list(row.groups or []):
                changes["groups"] = [list(row.groups or []), list(body.groups)]
                row.groups = list(body.groups)
            if changes:
                self._audit.record(
                    actor.username, "user.updated", username, changes, session=session
                )
            session.commit()
            info = user_info(row)
        with self._lock:
            self._members.pop(username, None)
        if self.sockets is not None:  # open sockets follow at once
            if "active" in changes and not info.active:
                self.sockets.user_deactivated(username)
            elif "role" in changes:
                self.sockets.role_changed(username)
        return info

    def create(self, body: UserCreate, actor: Caller) -> UserInfo:
        """Add a member ahead of their first login (admins; audited)."""
        with self._db() as session:
            self.add(body.username, body.role, list(body.groups), None, actor.username, session)
            self._audit.record(
                actor.username,
                "user.created",
                body.username,
                {"role": body.role.value, "groups": list(body.groups)},
                session=session,
            )
            session.commit()
        return self.get(body.username)

    def add(
        self,
        username: str,
        role: Role,
        groups: list[str],
        password_hash: str | None,
        created_by: str,
        session: Session,
    ) -> None:
        """Create an account (registration through an invitation); 409 if it exists."""
        if session.get(User, username) is not None or self._is_admin_by_config(username):
            raise Conflict(f"the user name {username!r} is taken")
        session.add(
            User(
                username=username,
                role=role.value,
                active=True,
                groups=list(groups),
                password_hash=password_hash,
                created_by=created_by,
                created_at=time.time(),
            )
        )

    def active_role(self, username: str) -> Role | None:
        """The role of an existing, active account (``None`` otherwise); never creates one
        (for checking a login cookie)."""
        if self._is_admin_by_config(username):
            member = self._load(username)  # kept an admin
        else:
            with self._lock:
                member = self._members.get(username)
        if member is None:
            with self._db() as session:
                row = session.get(User, username)
                if row is None:
                    return None
                member = _Member(Role(row.role), row.active, tuple(row.groups or []))
            with self._lock:
                self._members[username] = member
        return member.role if member.active else None

    def password_hash(self, username: str) -> str | None:
        """The stored password hash of an active account, if it has one."""
        with self._db() as session:
            row = session.get(User, username)
            return row.password_hash if row is not None and row.active else None


@dataclass
class _TokenRecord:
    token_id: int
    username: str
    scopes: frozenset[Scope] | None
    expires_at: float | None
    revoked: bool


def token_info(row: ApiToken, token: str | None = None) -> ApiTokenInfo:
    """The API view of a token row."""
    return ApiTokenInfo(
        token_id=row.token_id,
        username=row.username,
        name=row.name,
        scopes=[Scope(s) for s in row.scopes] if row.scopes is not None else None,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked=row.revoked_at is not None,
        token=token,
    )


class ApiTokenService(LoggingConfigurable):
    """Personal API tokens (``Authorization: Bearer kra_...``)."""

    max_tokens_per_user = Integer(50, config=True, help="Live API tokens one user may hold.")

    def __init__(self, db: sessionmaker[Session], audit: AuditLog, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._db = db
        self._audit = audit
        self._cache: dict[str, _TokenRecord] = {}
        self._used: dict[int, float] = {}
        self._lock = threading.Lock()
        self.sockets: SocketRegistry | None = None
        """Open sockets, closed when their token is revoked."""

    def create(self, caller: Caller, body: ApiTokenCreate) -> ApiTokenInfo:
        """A new token for the caller (admins: for ``body.username``); the secret is in this
        response only."""
        now = time.time()
        if body.scopes is not None and not body.scopes:
            raise InvalidRequest("scopes: give at least one scope, or omit it for all")
        owner = body.username or caller.username
        if owner != caller.username and caller.role is not Role.ADMIN:
            raise Forbidden("only admins issue tokens to other users")
        with self._db() as session:
            if session.get(User, owner) is None:
                raise NotFound(f"user {owner!r} not found")
            live = session.scalars(
                select(ApiToken).where(ApiToken.username == owner, ApiToken.revoked_at.is_(None))
            ).all()
            if (
                len([t for t in live if not t.expires_at or t.expires_at > now])
                >= self.max_tokens_per_user
            ):
                raise Conflict(f"you already have {self.max_tokens_per_user} tokens; revoke some")
            secret = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
            row = ApiToken(
                token_id=new_id(),
                username=owner,
                name=body.name,
                token_hash=_hash(secret),
                scopes=[s.value for s in body.scopes] if body.scopes is not None else None,
                created_at=now,
                expires_at=now + body.expires_in_days * 86400 if body.expires_in_days else None,
            )
            session.add(row)
            self._audit.record(
                caller.username,
                "token.created",
                f"token:{row.token_id}",
                {"name": body.name, "scopes": row.scopes, "owner": owner},
                session=session,
            )
            session.commit()
            return token_info(row, secret)

    def list_tokens(self, username: str | None) -> list[ApiTokenInfo]:
        """One user's tokens (``None``: everyone's), newest first, without secrets."""
        self.flush_last_used()
        query = select(ApiToken).order_by(ApiToken.token_id.desc())
        if username is not None:
            query = query.where(ApiToken.username == username)
        with self._db() as session:
            return [token_info(r) for r in session.scalars(query)]

    def revoke(self, token_id: int, caller: Caller) -> None:
        """Revoke a token (its owner or an admin)."""
        with self._db() as session:
            row = session.get(ApiToken, token_id)
            if row is None or (row.username != caller.username and caller.role is not Role.ADMIN):
                raise NotFound(f"API token {token_id} not found")
            if row.revoked_at is None:
                row.revoked_at = time.time()
                self._audit.record(
                    caller.username,
                    "token.revoked",
                    f"token:{token_id}",
                    {"owner": row.username},
                    session=session,
                )
                session.commit()
            token_hash = row.token_hash
        with self._lock:
            self._cache.pop(token_hash, None)
        if self.sockets is not None:
            self.sockets.token_revoked(token_id)

    def verify(self, secret: str) -> _TokenRecord | None:
        """The live token for this secret (``None``: unknown, expired or revoked)."""
        if not secret.startswith(API_TOKEN_PREFIX) or len(secret) > 200:
            return None
        token_hash = _hash(secret)
        with self._lock:
            record = self._cache.get(token_hash)
        if record is None:
            with self._db() as session:
                row = session.scalars(
                    select(ApiToken).where(ApiToken.token_hash == token_hash)
                ).first()
                if row is None:
                    return None
                scopes = frozenset(Scope(s) for s in row.scopes) if row.scopes is not None else None
                record = _TokenRecord(
                    row.token_id, row.username, scopes, row.expires_at, row.revoked_at is not None
                )
            with self._lock:
                self._cache[token_hash] = record
        now = time.time()
        if record.revoked or (record.expires_at is not None and record.expires_at <= now):
            return None
        with self._lock:
            self._used[record.token_id] = now
        return record

    def flush_last_used(self) -> int:
        """Write the remembered last-use times (called periodically); how many."""
        with self._lock:
            used, self._used = self._used, {}
        if not used:
            return 0
        with self._db() as session:
            for row in session.scalars(select(ApiToken).where(ApiToken.token_id.in_(list(used)))):
                row.last_used_at = used[row.token_id]
            session.commit()
        return len(used)
