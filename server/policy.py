"""Who may do what: the caller of a request, role and scope checks, and task redaction.

Roles include each other (viewer < user < operator < admin). An API token may narrow its
user's rights with scopes: ``read`` (GET only), ``submit`` (also submit and control own
tasks), ``admin`` (everything the role allows). A user sees and controls the details of
their own tasks only; operators and admins see and control all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kohakuriver_lab.errors import Forbidden
from kohakuriver_lab.models import Role, Scope, TaskInfo

VISIBLE_TO_OTHERS = frozenset(
    {
        "task_id",
        "batch_id",
        "task_type",
        "owner",
        "status",
        "priority",
        "backend",
        "environment",
        "req_cores",
        "req_memory",
        "req_gpus",
        "target",
        "node",
        "assigned_cores",
        "assigned_gpus",
        "numa",
        "exit_code",
        "kill_requested",
        "submitted_at",
        "started_at",
        "finished_at",
    }
)
"""The one list of task fields everyone who may list tasks sees: what and where it runs, its
state and timing. Every other field (name, command, env, workdir, image, mounts, reason,
parameters, progress, output path, SSH port, and any field added later) is blanked for
those who may not see the task's details, on REST and on the events socket alike."""


def _blank(name: str, value: Any) -> Any:
    """The empty value a hidden field is shown with (its model default, else empty)."""
    field = TaskInfo.model_fields.get(name)
    if field is not None and field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    if field is not None and not field.is_required():
        return field.default
    return [] if isinstance(value, list) else None


@dataclass(frozen=True)
class Caller:
    """The cluster identity of one request."""

    username: str
    role: Role
    groups: tuple[str, ...] = ()
    scopes: frozenset[Scope] | None = None
    """``None``: not narrowed (a Jupyter login or the server token)."""
    via: str = "jupyter"
    token_id: int | None = None

    def has_scope(self, scope: Scope) -> bool:
        """Whether the token (if any) allows ``scope`` (``admin`` ⊃ ``submit`` ⊃ ``read``)."""
        if self.scopes is None:
            return True
        order = [Scope.READ, Scope.SUBMIT, Scope.ADMIN]
        return any(order.index(s) >= order.index(scope) for s in self.scopes)

    def require(self, role: Role, scope: Scope, what: str) -> None:
        """403 unless the caller's role and token scope allow ``what``."""
        if not self.role.at_least(role):
            raise Forbidden(f"{what} needs the {role.value} role (you are {self.role.value})")
        if not self.has_scope(scope):
            raise Forbidden(f"{what} needs an API token with the '{scope.value}' scope")

    def sees_details_of(self, owner: str) -> bool:
        """Whether the caller may see a task's command, env, logs, files and results."""
        return owner == self.username or self.role.at_least(Role.OPERATOR)

    def require_details(self, owner: str, what: str) -> None:
        if not self.sees_details_of(owner):
            raise Forbidden(f"{what}: only its owner, operators and admins may")

    def require_control(self, owner: str, what: str) -> None:
        """403 unless the caller may act on a task owned by ``owner``."""
        self.require(Role.USER, Scope.SUBMIT, what)
        if owner != self.username and not self.role.at_least(Role.OPERATOR):
            raise Forbidden(f"{what}: you may only act on your own tasks")


def redact(task: dict[str, Any]) -> dict[str, Any]:
    """A task as someone without access to its details sees it (JSON form)."""
    shown = {k: v if k in VISIBLE_TO_OTHERS else _blank(k, v) for k, v in task.items()}
    shown["redacted"] = True
    return shown


def task_view(caller: Caller, task: dict[str, Any]) -> dict[str, Any]:
    """The caller's view of a task (JSON form)."""
    return task if caller.sees_details_of(str(task.get("owner"))) else redact(task)


def event_view(caller: Caller, payload: dict[str, Any], owner: str | None) -> dict[str, Any] | None:
    """The caller's view of an events-socket frame about a task of ``owner`` (``None``: not
    about a task), or ``None`` when it must not see it: task frames are redacted, and the
    other task frames (``progress``: a job's cell and error) go to those who see details."""
    if payload.get("type") == "task":
        return {**payload, "task": task_view(caller, payload["task"])}
    if owner is None or caller.sees_details_of(owner):
        return payload
    return None
