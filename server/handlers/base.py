"""Base handler of the REST API: auth, JSON bodies, and the one place errors become HTTP."""

from __future__ import annotations

import functools
import getpass
import json
import re
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin

from kohakuriver_lab.errors import InvalidRequest, KohakuRiverError, NotFound

if TYPE_CHECKING:
    from ..services import ClusterServices

AUTH_RESOURCE = "kohakuriver"
MAX_BODY_BYTES = 1024 * 1024
MAX_SUBMIT_BYTES = 16 * 1024 * 1024
"""Submits may carry a notebook."""
ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


def validation_message(exc: pydantic.ValidationError) -> str:
    """A one-line, field-named summary of a validation error."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


@functools.cache
def host_owner() -> str:
    """The OS user running the host."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "owner"


def is_anonymous_token_user(user: Any) -> bool:
    """Whether Jupyter made this user up for a token-authenticated request."""
    username = str(getattr(user, "username", ""))
    display = str(getattr(user, "name", ""))
    return display.startswith("Anonymous ") and re.fullmatch(r"[0-9a-f]{32}", username) is not None


def parse_id(text: str, what: str = "task") -> int:
    """A snowflake ID from a URL segment (404 when it cannot be one)."""
    if not text.isdigit() or len(text) > 20:
        raise NotFound(f"{what} {text!r} not found")
    return int(text)


class ClusterAPIHandler(ExtensionHandlerMixin, APIHandler):
    """JSON API handler: Jupyter-authenticated, errors as ``{"message": ...}``."""

    auth_resource = AUTH_RESOURCE

    @property
    def services(self) -> ClusterServices:
        """The host's services."""
        return self.settings["kohakuriver_services"]  # type: ignore[no-any-return]

    @property
    def username(self) -> str:
        """Who is calling. Token-authenticated requests without a login get a fresh random
        "Anonymous ..." identity from Jupyter on every request; they are the server's owner
        (whoever holds its token), so they are recorded under the owner's OS user name."""
        user = self.current_user
        name = str(getattr(user, "username", None) or getattr(user, "name", None) or user)
        if is_anonymous_token_user(user):
            return host_owner()
        return name

    def parse_body(self, model: type[ModelT], limit: int = MAX_BODY_BYTES) -> ModelT:
        """Validate the JSON body against ``model`` (400 with the field names on failure)."""
        if len(self.request.body) > limit:
            raise InvalidRequest(f"request body is larger than {limit} bytes")
        try:
            data = json.loads(self.request.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidRequest("request body must be a JSON object")
        try:
            return model.model_validate(data)
        except pydantic.ValidationError as exc:
            raise InvalidRequest(validation_message(exc)) from None

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
            self.clear()
            self.set_status(e.status_code)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"message": e.message}))
            return
        super()._handle_request_exception(e)  # type: ignore[misc]
