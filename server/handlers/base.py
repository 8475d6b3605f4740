"""Base handler of the REST API: auth, JSON bodies, and the one place errors become HTTP."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic
from jupyter_server.auth.identity import User
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from kohakuriver_lab._client_config import API_TOKEN_PREFIX
from kohakuriver_lab.errors import (
    InvalidRequest,
    KohakuRiverError,
    NotFound,
    Unauthorized,
)
from kohakuriver_lab.models import Role, Scope, TaskInfo

from ..policy import Caller
from ..users import host_owner
from .bodies import BoundedBodyMixin
from .errors import JsonErrorsMixin, send_json_error
from .validation import check_body_schema

if TYPE_CHECKING:
    from ..services import ClusterServices

AUTH_RESOURCE = "kohakuriver"
MAX_BODY_BYTES = 1024 * 1024
"""The default of ``CostLimits.max_body_bytes`` (client mode's proxy uses these too)."""
MAX_SUBMIT_BYTES = 16 * 1024 * 1024
"""Submits may carry a notebook (``CostLimits.max_notebook_bytes`` + ``max_body_bytes``)."""
MAX_ID = 2**63 - 1
"""IDs are 63-bit snowflakes: anything larger cannot be one (and overflows a BIGINT)."""
ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


def requires(role: Role, scope: Scope = Scope.READ) -> Callable[[F], F]:
    """Refuse (403) callers below ``role`` or whose API token lacks ``scope``; the pair is
    kept on the method for the authorization-matrix test."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def checked(self: ClusterAPIHandler, *args: Any, **kwargs: Any) -> Any:
            self.caller.require(role, scope, f"{self.request.method} {self.request.path}")
            return method(self, *args, **kwargs)

        checked.__kohakuriver_access__ = (role, scope)  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return decorate


def api_token_of(handler: Any) -> str | None:
    """A personal API token in ``Authorization: Bearer kra_...`` or Jupyter's own form
    ``Authorization: token kra_...`` (else ``None``)."""
    scheme, _, secret = handler.request.headers.get("Authorization", "").partition(" ")
    secret = str(secret).strip()
    if scheme.lower() in ("bearer", "token") and secret.startswith(API_TOKEN_PREFIX):
        return secret
    return None


def validation_message(exc: pydantic.ValidationError) -> str:
    """A one-line, field-named summary of a validation error."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def is_anonymous_token_user(user: Any) -> bool:
    """Whether Jupyter made this user up for a token-authenticated request."""
    username = str(getattr(user, "username", ""))
    display = str(getattr(user, "name", ""))
    return display.startswith("Anonymous ") and re.fullmatch(r"[0-9a-f]{32}", username) is not None


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _no_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON (and PostgreSQL's JSON refuses them)."""
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    """``1e400`` is valid JSON but no finite float (``inf`` that no database stores)."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _check_strings(data: Any) -> None:
    """Refuse strings that no text column and no UTF-8 response can hold: NUL characters
    (PostgreSQL text) and lone surrogates (``"\\ud800"``, not UTF-8)."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                raise InvalidRequest(
                    "request body: strings must not contain NUL characters or lone surrogates"
                )
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def is_id(text: str) -> bool:
    """Whether ``text`` is an ID: ASCII digits (not '²' or '٣', which ``isdigit`` accepts)
    of a value that fits the database's 64-bit integers."""
    return text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_ID


def parse_id(text: str, what: str = "task") -> int:
    """A snowflake ID from a URL segment (404 when it cannot be one)."""
    if not is_id(text):
        raise NotFound(f"{what} {text!r} not found")
    return int(text)


class CallerMixin:
    """Who is calling, for every user-facing handler (REST and WebSocket): a Jupyter
    identity, or a personal API token (``Authorization: Bearer kra_...``) checked before
    Jupyter looks at the request; and the role/scope checks on tasks."""

    request: Any
    settings: dict[str, Any]
    current_user: Any
    _jupyter_current_user: Any
    _api_token: tuple[int, str, frozenset[Scope] | None] | None = None
    _token_expires_at: float | None = None
    _caller: Caller | None = None

    @property
    def services(self) -> ClusterServices:
        """The host's services."""
        return self.settings["kohakuriver_services"]  # type: ignore[no-any-return]

    async def prepare(self, *args: Any, **kwargs: Any) -> Any:
        """A personal API token authenticates its user before Jupyter looks at the request."""
        secret = api_token_of(self)
        if secret is not None:
            record = self.services.api_tokens.verify(secret)
            if record is None:
                raise Unauthorized("invalid, expired or revoked API token")
            self._api_token = (record.token_id, record.username, record.scopes)
            self._token_expires_at = record.expires_at
            self._jupyter_current_user = User(username=record.username, name=record.username)
        return await super().prepare(*args, **kwargs)  # type: ignore[misc]

    def check_xsrf_cookie(self) -> None:
        """An API token travels in a header, which cross-site pages cannot set."""
        if self._api_token is not None:
            return None
        return super().check_xsrf_cookie()  # type: ignore[misc,no-any-return]

    @property
    def username(self) -> str:
        """Who is calling. Token-authenticated requests without a login get a fresh random
        "Anonymous ..." identity from Jupyter on every request; they are the server's owner
        (whoever holds its token), so they are recorded under the owner's OS user name."""
        if self._api_token is not None:
            return self._api_token[1]
        user = self.current_user
        name = str(getattr(user, "username", None) or getattr(user, "name", None) or user)
        if is_anonymous_token_user(user):
            return host_owner()
        return name

    @property
    def caller(self) -> Caller:
        """The cluster identity (role, token scopes) of this request; 403 if it has none."""
        if self._caller is None:
            if self.current_user is None:
                raise Unauthorized("authentication required")
            token = self._api_token
            self._caller = self.services.users.caller(
                self.username,
                scopes=token[2] if token else None,
                via="api-token" if token else "jupyter",
                token_id=token[0] if token else None,
            )
        return self._caller

    def task_with_details(self, task_id: str) -> TaskInfo:
        """The task, once the caller may see its details (owner, operators, admins)."""
        info = self.services.tasks.get(parse_id(task_id))
        self.caller.require_details(info.owner, f"task {info.task_id}")
        return info

    def task_for_control(self, task_id: str, action: str) -> TaskInfo:
        """The task, once the caller may act on it (owner with submit rights, operators)."""
        info = self.services.tasks.get(parse_id(task_id))
        self.caller.require_control(info.owner, f"to {action} task {info.task_id}")
        return info


@web.stream_request_body
class ClusterAPIHandler(
    JsonErrorsMixin, BoundedBodyMixin, CallerMixin, ExtensionHandlerMixin, APIHandler
):
    """JSON API handler: Jupyter-authenticated, errors as ``{"message": ...}`` (``errors``);
    bodies only from authenticated callers, at most ``CostLimits.max_body_bytes``."""

    auth_resource = AUTH_RESOURCE

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        """Authenticate, then refuse a body this caller may not send, before reading it."""
        await super().prepare(*args, **kwargs)
        if not self._finished:
            await self.check_body()

    def body_limit(self) -> tuple[int, str]:
        return int(self.services.costs.max_body_bytes), "CostLimits.max_body_bytes"

    async def body_allowed(self) -> None:
        """Only authenticated callers send bodies (401 before the body is read)."""
        if self.current_user is None:
            raise Unauthorized("authentication required")

    def parse_body(self, model: type[ModelT], limit: int | None = None) -> ModelT:
        """Validate the JSON body against ``model`` (400 with the field names on failure)."""
        body = self.request_body()
        limit = self._body_limit[0] if limit is None else limit
        if len(body) > limit:
            raise InvalidRequest(f"request body is larger than {limit} bytes")
        try:
            data = json.loads(body or b"{}", parse_constant=_no_constant, parse_float=_finite_float)
        except RecursionError:
            raise InvalidRequest("request body is nested too deeply") from None
        except ValueError as exc:  # not JSON, not UTF-8, an integer of over 4300 digits
            raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidRequest("request body must be a JSON object")
        _check_strings(data)
        try:
            parsed = model.model_validate(data)
        except pydantic.ValidationError as exc:
            raise InvalidRequest(validation_message(exc)) from None
        check_body_schema(model.__name__, data)
        return parsed

    def write_json(self, payload: Any, status: int = 200) -> None:
        """Send a pydantic model or plain data as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        if isinstance(payload, pydantic.BaseModel):
            self.finish(payload.model_dump_json())
        else:
            self.finish(json.dumps(payload))

    def _handle_request_exception(self, e: BaseException) -> None:
        """Translate domain errors into JSON HTTP errors; everything else stays a 500."""
        if isinstance(e, KohakuRiverError) and not self._finished:
            self.log.info(
                "%s %s -> %d: %s", self.request.method, self.request.path, e.status_code, e.message
            )
            send_json_error(self, e.status_code, e.message)
            return
        super()._handle_request_exception(e)  # type: ignore[misc]
