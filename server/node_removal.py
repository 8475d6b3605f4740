"""Removing a node (``DELETE /kohakuriver/api/nodes/{name}``, admins).

Refused (409) while the node is online or its runner connected, while it holds assigning,
running or paused tasks, or while pending tasks target it. Its history stays (ended tasks keep
their node name). The runner tokens bound to the name are revoked, so the name is free and
the removed machine cannot come back with its old credentials; a node added again under the
name needs a new token.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from kohakuriver_lab.errors import Conflict, NotFound
from kohakuriver_lab.models import ACTIVE_STATUSES, NodeStatus, TaskStatus, parse_target

from .db.orm import RunnerToken, Task

if TYPE_CHECKING:
    from .services import ClusterServices

WAITING = [TaskStatus.PENDING.value, TaskStatus.PENDING_APPROVAL.value]


def remove_node(services: ClusterServices, name: str, actor: str, address: str | None) -> None:
    """Remove node ``name`` (see the module doc); audited as ``node.removed``."""
    registry, gateway = services.registry, services.gateway
    state = registry.get(name)
    if state is None:
        raise NotFound(f"node {name!r} not found")
    if state.status is NodeStatus.ONLINE or gateway.is_connected(name):
        raise Conflict(f"node {name} is online: stop its runner first")
    with services.db() as session:
        active = session.scalar(
            select(func.count())
            .select_from(Task)
            .where(Task.node == name, Task.status.in_([s.value for s in ACTIVE_STATUSES]))
        )
        if active:
            raise Conflict(f"node {name} holds {active} assigning, running or paused task(s)")
        targets = session.scalars(
            select(Task.target).where(
                Task.status.in_(WAITING), Task.target.startswith(name, autoescape=True)
            )
        ).all()
        waiting = sum(1 for t in targets if t and parse_target(t).node == name)
        if waiting:
            raise Conflict(f"{waiting} pending task(s) target node {name}: kill them first")
        revoked = []
        for token in session.scalars(
            select(RunnerToken).where(RunnerToken.node == name, RunnerToken.revoked_at.is_(None))
        ):
            token.revoked_at = time.time()
            revoked.append(str(token.token_id))
        registry.remove(session, name)
        services.audit.record(
            actor,
            "node.removed",
            f"node:{name}",
            {"revoked_runner_tokens": revoked},
            address=address,
            session=session,
        )
        session.commit()
    registry.forget(name)
