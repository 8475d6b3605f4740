"""Query parameters: one declaration per parameter, read by the handlers and written into the
OpenAPI document, so that what the document allows is what the handlers accept.

Rules (docs/api.md, "Query parameters"): a text filter given empty (``?actor=``) is the same
as leaving it out; an ID is ASCII digits (empty: left out; past 64 bits: matches nothing); a
boolean is ``true`` or ``false`` and an integer is decimal digits in its range (anything
else, the empty value included, is a 400 naming the parameter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kohakuriver_lab.errors import InvalidRequest
from kohakuriver_lab.models import TaskStatus

MAX_ID = 2**63 - 1
_INTEGER = re.compile(r"-?[0-9]{1,20}")


@dataclass(frozen=True)
class Query:
    """One query parameter: ``kind`` is text, id, ids, boolean, integer or enum."""

    name: str
    description: str
    kind: str = "text"
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    default: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        """The parameter's JSON Schema in the document."""
        if self.kind == "boolean":
            schema: dict[str, Any] = {"type": "boolean"}
        elif self.kind == "integer":
            schema = {"type": "integer"}
            if self.minimum is not None:
                schema["minimum"] = self.minimum
            if self.maximum is not None:
                schema["maximum"] = self.maximum
        elif self.kind == "enum":
            schema = {"type": "string", "enum": list(self.choices)}
        elif self.kind == "id":
            schema = {"type": "string", "pattern": "^[0-9]{0,20}$"}
        elif self.kind == "ids":
            schema = {"type": "string", "pattern": "^([0-9]{1,20}(,[0-9]{1,20})*)?$"}
        else:
            schema = {"type": "string"}
        if self.default is not None:
            schema["default"] = self.default
        return {**schema, **self.extra}

    def openapi(self) -> dict[str, Any]:
        """The parameter object of the document."""
        return {
            "name": self.name,
            "in": "query",
            "required": False,
            "schema": self.schema(),
            "description": self.description,
        }

    # ----- reading -----

    def raw(self, handler: Any) -> str | None:
        value = handler.get_query_argument(self.name, None)
        return None if value is None else str(value)

    def text(self, handler: Any) -> str | None:
        """A text filter (empty: none)."""
        return self.raw(handler) or None

    def boolean(self, handler: Any) -> bool:
        raw = self.raw(handler)
        if raw is None:
            return bool(self.default)
        if raw not in ("true", "false"):
            raise InvalidRequest(f"query parameter '{self.name}' must be true or false")
        return raw == "true"

    def integer(self, handler: Any) -> int:
        raw = self.raw(handler)
        if raw is None:
            return int(self.default)
        low = self.minimum if self.minimum is not None else -MAX_ID
        high = self.maximum if self.maximum is not None else MAX_ID
        if not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
            raise InvalidRequest(
                f"query parameter '{self.name}' must be an integer from {low} to {high}"
            )
        return int(raw)

    def choice(self, handler: Any) -> str:
        raw = self.raw(handler)
        if raw is None:
            return str(self.default)
        if raw not in self.choices:
            what = self.extra.get("x-what", self.name)
            raise InvalidRequest(f"unknown {what} {raw!r} (valid: {', '.join(self.choices)})")
        return raw

    def ident(self, handler: Any) -> int | None:
        """An ID (empty: none); one past 64 bits is clamped (it matches no object)."""
        raw = self.raw(handler)
        if not raw:
            return None
        return _id(self.name, raw)

    def idents(self, handler: Any) -> frozenset[int] | None:
        """Comma-separated IDs (empty: none)."""
        raw = self.raw(handler)
        if not raw:
            return None
        return frozenset(_id(self.name, part) for part in raw.split(","))


def _id(name: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise InvalidRequest(f"query parameter '{name}' must be an ID (ASCII digits)")
    return min(int(text), MAX_ID)


# =============================================================================
# The parameters of each operation
# =============================================================================

_STATUS = "(" + "|".join(s.value for s in TaskStatus) + ")"
TASK_LIST = {
    "status": Query(
        "status",
        "comma-separated statuses (empty: all)",
        extra={"pattern": f"^({_STATUS}(,{_STATUS})*)?$"},
    ),
    "node": Query("node", "node name (empty: all)"),
    "owner": Query("owner", "owner user name (empty: all)"),
    "batch": Query("batch", "batch ID (empty: all)", "id"),
    "type": Query(
        "type",
        "task type",
        "enum",
        choices=("command", "vps", "notebook"),
        extra={"x-what": "task type"},
    ),
    "count": Query("count", "add the total of matching tasks", "boolean", default=False),
    "limit": Query("limit", "page size", "integer", 1, 500, default=100),
    "cursor": Query("cursor", "next_cursor of the previous page (empty: first page)", "id"),
}
LOG_READ = {
    "stream": Query(
        "stream", "which stream", "enum", choices=("stdout", "stderr"), default="stdout"
    ),
    "offset": Query("offset", "byte offset", "integer", 0, 2**62, default=0),
    "limit": Query("limit", "most bytes to return", "integer", 1, 1024 * 1024, default=1024 * 1024),
}
LOG_FOLLOW = {
    "stream": Query(
        "stream", "which streams", "enum", choices=("stdout", "stderr", "both"), default="both"
    ),
    "offset": Query("offset", "start offset", "integer", 0, MAX_ID, default=0),
}
EVENTS = {
    "topics": Query("topics", "comma-separated subset of tasks,nodes (empty: the default)"),
    "tasks": Query("tasks", "only these task IDs (comma-separated; empty: all)", "ids"),
    "batch": Query("batch", "only tasks of this batch (empty: all)", "id"),
}
TOKEN_LIST = {"all": Query("all", "everyone's (admins)", "boolean", default=False)}
AUDIT = {
    "actor": Query("actor", "only this actor (empty: all)"),
    "action": Query("action", "only this action (empty: all)"),
    "limit": Query("limit", "page size", "integer", 1, 500, default=100),
    "before": Query("before", "event ID: older events only (empty: the newest)", "id"),
}
ENVIRONMENT_DELETE = {
    "versions": Query("versions", "also delete every stored version", "boolean", default=False)
}


def parameters(specs: dict[str, Query]) -> list[dict[str, Any]]:
    """The document's parameter objects of one operation."""
    return [spec.openapi() for spec in specs.values()]
