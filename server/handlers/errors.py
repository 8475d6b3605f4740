"""One error shape for every answer under ``/kohakuriver/api``: JSON ``{"message": ...}``.

Jupyter's handlers answer some refusals themselves (``@web.authenticated``, the XSRF check,
an undeclared method, a WebSocket route called without an upgrade); :class:`JsonErrorsMixin`
makes those JSON too, turns "no credentials" into 401 with ``WWW-Authenticate`` (403 stays
for a known caller without the right), and gives 405 its ``Allow`` header.
:class:`UnknownRouteHandler` answers every path under the prefix that no route matches.
"""

from __future__ import annotations

import json
from http.client import responses
from typing import Any

from jupyter_server.base.handlers import APIHandler
from tornado import web

from kohakuriver_lab.errors import KohakuRiverError

AUTH_CHALLENGE = 'Bearer realm="kohakuriver", Token realm="jupyter"'
"""``WWW-Authenticate`` of a 401: an API token (``Bearer kra_...``) or Jupyter's token."""
AUTH_REQUIRED = (
    "authentication required: Authorization: Bearer <API token> (or token <Jupyter token>)"
)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(handler_class: type[Any]) -> list[str]:
    """The methods ``handler_class`` implements (for ``Allow``)."""
    return [
        m
        for m in METHODS
        if getattr(handler_class, m.lower(), None) is not getattr(web.RequestHandler, m.lower())
    ]


def send_json_error(handler: Any, status: int, message: str) -> None:
    """Answer ``{"message": message}`` with ``status`` and the headers that status needs."""
    handler.clear()
    handler.set_status(status)
    if status == 401:
        handler.set_header("WWW-Authenticate", AUTH_CHALLENGE)
    if status == 405:
        handler.set_header("Allow", ", ".join(allowed_methods(type(handler))))
    if status == 426:
        handler.set_header("Upgrade", "websocket")
    handler.set_header("Content-Type", "application/json")
    handler.finish(json.dumps({"message": message}))


def _identified(handler: Any) -> bool:
    """Whether the request carries a credential the host accepted (a Jupyter identity or
    an API token); ``False`` before authentication ran."""
    if getattr(handler, "_api_token", None) is not None:
        return True
    try:
        return handler.current_user is not None
    except Exception:  # Jupyter raises when asked before prepare() authenticated
        return False


class JsonErrorsMixin:
    """``write_error`` in the API's shape (put before Jupyter's handler classes); a domain
    error (:class:`KohakuRiverError`) raised by a handler is its status, not a 500."""

    _finished: bool

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, KohakuRiverError) and not self._finished:
            send_json_error(self, e.status_code, e.message)
            return
        super()._handle_request_exception(e)  # type: ignore[misc]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, KohakuRiverError):
            message = exc.message
        elif isinstance(exc, web.HTTPError) and exc.log_message and status_code < 500:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = responses.get(status_code, "Unknown")
        if status_code == 403 and not _identified(self):
            why = "" if message == "Forbidden" else f" ({message})"
            status_code, message = 401, AUTH_REQUIRED + why
        send_json_error(self, status_code, message)


class UnknownRouteHandler(JsonErrorsMixin, APIHandler):
    """Every path under the API prefix that no route matches: a JSON 404 for any method."""

    async def prepare(self) -> None:  # type: ignore[override]
        raise web.HTTPError(404)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """404 whatever the method (tornado refuses TRACE with 405 before ``prepare``)."""
        message = f"no route {self.request.method} {self.request.path}"
        send_json_error(self, 404, message + " (the routes: GET /kohakuriver/api/openapi.json)")
