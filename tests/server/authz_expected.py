"""The authorization matrix's expected table, written out by hand (issue 10).

Nothing here is read from the handlers (``test_authz_matrix`` checks that this module imports
nothing but ``dataclasses``): a handler whose ``@requires`` says something else than this table
fails the matrix. Sources: docs/api.md and docs/security.md ("The panel by role").

Keys are ``(METHOD, path)``; API paths are relative to ``/kohakuriver/api``, public ones are
full paths. Placeholders: ``{task}`` is a task owned by the matrix's ``user_own``; ``{id}`` and
``{name}`` are values the route accepts (an unknown one: allowed callers may get 404).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MinRole = Literal["anonymous", "viewer", "user", "operator", "admin", "nobody"]
"""Who passes: ``anonymous`` everyone (no credentials needed); ``nobody`` no user at all, not
even an admin (another credential opens the route: a runner or one-time upload token)."""
TaskRule = Literal["", "details", "control"]
"""On top of the role, for a task of someone else: ``details`` (env, logs, files) and
``control`` (kill, pause, snapshots, job writes) need ``operator``; the owner passes."""
RANKS: tuple[str, ...] = ("viewer", "user", "operator", "admin")


@dataclass(frozen=True)
class Rule:
    """The expected access of one route."""

    role: MinRole
    task: TaskRule = ""
    runner: bool = False  # a runner token (``Authorization: Bearer krr_...``) passes
    socket: bool = False  # a WebSocket (walked with a real upgrade)
    note: str = ""


VIEWER = Rule("viewer")
USER = Rule("user")
OPERATOR = Rule("operator")
ADMIN = Rule("admin")
DETAILS = Rule("viewer", "details")
CONTROL = Rule("user", "control")

API: dict[tuple[str, str], Rule] = {
    # ----- tasks -----
    ("GET", "/tasks"): Rule("viewer", note="others' tasks redacted"),
    ("POST", "/tasks"): USER,
    ("GET", "/tasks/{task}"): Rule("viewer", note="others' tasks redacted"),
    ("GET", "/tasks/{task}/events"): DETAILS,
    ("POST", "/tasks/{task}/kill"): CONTROL,
    ("POST", "/tasks/{task}/pause"): CONTROL,
    ("POST", "/tasks/{task}/resume"): CONTROL,
    ("POST", "/tasks/{task}/stop"): CONTROL,
    ("POST", "/tasks/{task}/start"): CONTROL,
    ("POST", "/tasks/{task}/approve"): OPERATOR,
    ("POST", "/tasks/{task}/reject"): OPERATOR,
    ("GET", "/tasks/{task}/snapshots"): DETAILS,
    ("POST", "/tasks/{task}/snapshots"): CONTROL,
    ("DELETE", "/tasks/{task}/snapshots/{name}"): CONTROL,
    ("GET", "/tasks/{task}/logs"): DETAILS,
    ("GET", "/tasks/{task}/logs/follow"): Rule("viewer", "details", socket=True),
    # ----- notebook jobs (also a task token; see test_jobs.py) -----
    ("GET", "/tasks/{task}/job"): DETAILS,
    ("POST", "/tasks/{task}/progress"): CONTROL,
    ("GET", "/tasks/{task}/results"): DETAILS,
    ("POST", "/tasks/{task}/results"): CONTROL,
    ("GET", "/tasks/{task}/artifacts/{name}"): DETAILS,
    ("PUT", "/tasks/{task}/artifacts/{name}"): CONTROL,
    ("GET", "/batches/{task}/results"): Rule("viewer", "details", note="a batch ID is a task's"),
    # ----- environments -----
    ("GET", "/environments"): VIEWER,
    ("POST", "/environments"): OPERATOR,
    ("GET", "/environments/{name}"): VIEWER,
    ("DELETE", "/environments/{name}"): OPERATOR,
    ("POST", "/environments/{name}/exec"): OPERATOR,
    ("GET", "/environments/{name}/versions"): VIEWER,
    ("POST", "/environments/{name}/versions"): OPERATOR,
    ("DELETE", "/environments/{name}/versions/{id}"): OPERATOR,
    ("GET", "/environments/{name}/versions/{id}/image"): Rule("operator", runner=True),
    ("PUT", "/environments/{name}/versions/{id}/upload"): Rule(
        "nobody", note="a node's one-time upload token only"
    ),
    # ----- nodes and the cluster -----
    ("GET", "/nodes"): VIEWER,
    ("GET", "/nodes/{name}"): VIEWER,
    ("DELETE", "/nodes/{name}"): ADMIN,
    ("GET", "/cluster"): VIEWER,
    ("GET", "/me"): VIEWER,
    ("GET", "/openapi.json"): VIEWER,
    ("GET", "/events"): Rule("viewer", socket=True),
    # ----- people -----
    ("GET", "/users"): OPERATOR,
    ("POST", "/users"): ADMIN,
    ("GET", "/users/{name}"): OPERATOR,
    ("PATCH", "/users/{name}"): ADMIN,
    ("GET", "/invitations"): ADMIN,
    # {} invites a `user`, which only admins may; operators may invite viewers (test_login.py)
    ("POST", "/invitations"): Rule("admin", note="body {}: role user"),
    ("DELETE", "/invitations/{id}"): ADMIN,
    ("GET", "/tokens"): Rule("viewer", note="one's own tokens"),
    ("POST", "/tokens"): Rule("viewer", note="one's own tokens"),
    ("DELETE", "/tokens/{id}"): Rule("viewer", note="one's own; admins: anyone's"),
    ("GET", "/settings"): VIEWER,
    ("PATCH", "/settings"): ADMIN,
    ("GET", "/audit"): ADMIN,
    ("GET", "/quotas"): OPERATOR,
    ("PUT", "/quotas"): ADMIN,
    ("DELETE", "/quotas/{name}"): ADMIN,
    # ----- runners -----
    ("GET", "/runner-tokens"): ADMIN,
    ("POST", "/runner-tokens"): ADMIN,
    ("DELETE", "/runner-tokens/{id}"): ADMIN,
    ("GET", "/runners/connect"): Rule("nobody", runner=True, socket=True),
}
"""Every route under ``/kohakuriver/api``."""

PUBLIC: dict[tuple[str, str], Rule] = {
    ("GET", "/kohakuriver/register"): Rule("anonymous", note="the invitation is the credential"),
    ("POST", "/kohakuriver/register"): Rule("anonymous", note="the invitation is the credential"),
}
"""Full paths outside the API."""

PENDING_ROUTES: set[tuple[str, str]] = set()
"""Rows for routes that are not registered yet (the only rows allowed to have no route)."""


def passes(rule: Rule, role: str | None, own: bool) -> bool:
    """Whether a caller with ``role`` (``None``: no user) passes; ``own``: owns ``{task}``."""
    if rule.role == "anonymous":
        return True
    if role is None or rule.role == "nobody":
        return False
    if RANKS.index(role) < RANKS.index(rule.role):
        return False
    if rule.task in ("details", "control"):
        return own or RANKS.index(role) >= RANKS.index("operator")
    return True
