"""SQLAlchemy 2.0 models of the host's state.

Times are UNIX seconds (float). IDs are 64-bit snowflakes. JSON columns hold lists and dicts
whose shape is fixed by the typed ``Mapped[...]`` annotations.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of every host table."""


# =============================================================================
# Tasks
# =============================================================================


class Task(Base):
    """A unit of work: a command, a VPS or a notebook job."""

    __tablename__ = "tasks"

    task_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    batch_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    task_type: Mapped[str] = mapped_column(String(16), default="command")
    owner: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    command: Mapped[list[str]] = mapped_column(JSON)
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    workdir: Mapped[str | None] = mapped_column(String(4096))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    backend: Mapped[str | None] = mapped_column(String(32))
    image: Mapped[str | None] = mapped_column(String(255))
    environment: Mapped[str | None] = mapped_column(String(200))
    mounts: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    ssh_public_key: Mapped[str | None] = mapped_column(Text)
    ssh_port: Mapped[int | None] = mapped_column(Integer)
    req_cores: Mapped[int] = mapped_column(Integer, default=1)
    req_memory: Mapped[int | None] = mapped_column(BigInteger)
    req_gpus: Mapped[Any] = mapped_column(JSON, nullable=True)
    target: Mapped[str | None] = mapped_column(String(300))
    node: Mapped[str | None] = mapped_column(String(63))
    assigned_cores: Mapped[list[int]] = mapped_column(JSON, default=list)
    assigned_gpus: Mapped[list[int]] = mapped_column(JSON, default=list)
    numa: Mapped[int | None] = mapped_column(Integer)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    kill_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    parameters: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    output_path: Mapped[str | None] = mapped_column(String(1024))
    submitted_at: Mapped[float] = mapped_column(Float)
    assigned_at: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index("ix_tasks_status_priority", "status", "priority", "task_id"),
        Index("ix_tasks_node_status", "node", "status"),
        Index("ix_tasks_owner_task", "owner", "task_id"),
    )


class TaskEvent(Base):
    """One status transition of a task, with who made it and why."""

    __tablename__ = "task_events"

    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    task_id: Mapped[int] = mapped_column(BigInteger, index=True)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float)


# =============================================================================
# Nodes and runner credentials
# =============================================================================


class Node(Base):
    """A compute node, as its runner last registered it."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(16), default="offline")
    cores: Mapped[list[int]] = mapped_column(JSON, default=list)
    numa: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    memory_total: Mapped[int] = mapped_column(BigInteger, default=0)
    gpus: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    backends: Mapped[list[str]] = mapped_column(JSON, default=list)
    version: Mapped[str] = mapped_column(String(64), default="")
    registered_at: Mapped[float] = mapped_column(Float)
    last_heartbeat: Mapped[float | None] = mapped_column(Float)
    token_id: Mapped[int | None] = mapped_column(BigInteger)
    """The runner token that owns this name (``None``: unclaimed)."""


class RunnerToken(Base):
    """A credential a runner dials in with; only its SHA-256 is stored."""

    __tablename__ = "runner_tokens"

    token_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(100))
    node: Mapped[str | None] = mapped_column(String(63))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float)
    last_used_at: Mapped[float | None] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)


# =============================================================================
# Environments
# =============================================================================


class Environment(Base):
    """A container environment: built in a container on one node, exported as versions."""

    __tablename__ = "environments"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    node: Mapped[str | None] = mapped_column(String(63))
    base_image: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float)


class EnvironmentVersion(Base):
    """One exported image of an environment; the tarball lives in the host's data dir."""

    __tablename__ = "environment_versions"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tag: Mapped[str] = mapped_column(String(128))
    image_id: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_environment_versions_tag", "name", "tag", unique=True),)


# =============================================================================
# People: users, API tokens, invitations, quotas, settings, audit
# =============================================================================


class User(Base):
    """A cluster user: a Jupyter identity (or an invited account) with a role."""

    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    password_hash: Mapped[str | None] = mapped_column(String(300))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float | None] = mapped_column(Float)


class ApiToken(Base):
    """A personal API token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    token_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    username: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float)
    last_used_at: Mapped[float | None] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)


class Invitation(Base):
    """An invitation to create an account; only its SHA-256 is stored."""

    __tablename__ = "invitations"

    invitation_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_uses: Mapped[int] = mapped_column(Integer, default=1)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)


class Quota(Base):
    """Limits for a user (``user:NAME``) or a group (``group:NAME``); NULL: no limit."""

    __tablename__ = "quotas"

    subject: Mapped[str] = mapped_column(String(210), primary_key=True)
    max_gpus: Mapped[int | None] = mapped_column(Integer)
    max_cores: Mapped[int | None] = mapped_column(Integer)
    max_tasks: Mapped[int | None] = mapped_column(Integer)
    max_vps: Mapped[int | None] = mapped_column(Integer)


class Setting(Base):
    """A cluster setting changed at run time by admins (e.g. whether approvals are on)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)


class AuditEvent(Base):
    """A security-relevant action: who did what to what, when."""

    __tablename__ = "audit_events"

    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    address: Mapped[str | None] = mapped_column(String(64))
