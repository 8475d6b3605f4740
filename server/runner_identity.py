"""Which runner token may speak for which node name.

A node name is claimed by exactly one runner token, remembered on the node row
(``nodes.token_id``). A token created without a node binds to the name of its first accepted
``hello`` (``runner_tokens.node``) and from then on may only be that node. Another token may
take a claimed name only when

- the owning token is revoked (or gone), or
- an admin created the token for that very name after the owner claimed it (rotation: the
  newer, explicitly bound token wins; the older one can never take the name back).

Everything else is refused; the gateway closes the socket and writes an audit entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from .db.orm import Node, RunnerToken

CLOSE_WRONG_NODE = 1008
"""The token is bound to another name (a configuration error on that runner)."""
CLOSE_NAME_TAKEN = 4003
"""The name belongs to another runner token."""
CLOSE_REPLACED = 4004
"""A newer session of the same node replaced this one."""


@dataclass(frozen=True)
class Refusal:
    """Why a hello was refused, and the close code that says so."""

    code: int
    message: str


def claim(session: Session, token_id: int, node: str) -> Refusal | None:
    """Check that token ``token_id`` may be ``node`` and record the claim in ``session``
    (token bound to the name, node row owned by the token; the caller commits).
    ``None`` when allowed."""
    token = session.get(RunnerToken, token_id)
    if token is None or token.revoked_at is not None:
        return Refusal(4001, "this runner token was revoked")
    if token.node is not None and token.node != node:
        return Refusal(CLOSE_WRONG_NODE, f"this token is for node {token.node}")
    row = session.get(Node, node)
    owner = row.token_id if row is not None else None
    if owner is not None and owner != token_id:
        held = session.get(RunnerToken, owner)
        live = held is not None and held.revoked_at is None
        rotation = token.node == node and token_id > owner
        if live and not rotation:
            return Refusal(CLOSE_NAME_TAKEN, f"node {node} belongs to another runner token")
    if token.node is None:
        token.node = node  # bound from now on
    if row is not None:
        row.token_id = token_id
    return None
