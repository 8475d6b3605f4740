"""Invitations (REST, admins and operators) and the registration page (anyone with one)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pydantic
from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from kohakuriver_lab.errors import Conflict, InvalidRequest, KohakuRiverError
from kohakuriver_lab.models import InvitationCreate, Registration, Role, Scope

from ..identity import KohakuRiverIdentityProvider
from ..pages import register_page, registered_page
from ..passwords import hash_password_async
from .base import (
    MAX_BODY_BYTES,
    ClusterAPIHandler,
    _check_strings,
    parse_id,
    requires,
    validation_message,
)
from .bodies import BoundedBodyMixin
from .errors import JsonErrorsMixin

if TYPE_CHECKING:
    from ..services import ClusterServices

REGISTER_PATH = "kohakuriver/register"
"""Under the server's base URL."""


class InvitationsHandler(ClusterAPIHandler):
    """``POST``: a new invitation, its token and URL shown once (admins: any role; operators:
    viewers only); ``GET``: every invitation without secrets (admins)."""

    @web.authenticated
    @authorized
    @requires(Role.OPERATOR, Scope.ADMIN)
    def post(self) -> None:
        body = self.parse_body(InvitationCreate)
        url = f"{self.request.protocol}://{self.request.host}{self.base_url}{REGISTER_PATH}"
        info = self.services.invitations.create(self.caller, body, url)
        self.write_json(info, status=201)

    @web.authenticated
    @authorized
    @requires(Role.ADMIN, Scope.READ)
    def get(self) -> None:
        invitations = self.services.invitations.list_invitations()
        self.write_json({"invitations": [i.model_dump(mode="json") for i in invitations]})


class InvitationHandler(ClusterAPIHandler):
    """``DELETE``: revoke an invitation (admins; accounts made with it stay)."""

    @web.authenticated
    @authorized
    @requires(Role.ADMIN, Scope.ADMIN)
    def delete(self, invitation_id: str) -> None:
        self.services.invitations.revoke(parse_id(invitation_id, "invitation"), self.caller)
        self.set_status(204)
        self.finish()


@web.stream_request_body
class RegisterHandler(JsonErrorsMixin, BoundedBodyMixin, JupyterHandler):
    """``GET /kohakuriver/register?token=...``: the registration form; ``POST``: create the
    account (JSON ``Registration`` or the form). No credentials by nature: the invitation is
    the credential. Cost-bounded: attempts are rate-limited per address and in all, the
    invitation is checked (one SHA-256 and one indexed lookup) before the slow password hash,
    and hashing runs in a small bounded pool. Bodies over ``CostLimits.max_body_bytes`` are
    refused (413) before they are read."""

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        """Refuse an oversized body on its headers (the registration is public)."""
        await super().prepare(*args, **kwargs)
        if self._finished:
            return
        try:
            await self.check_body()
        except KohakuRiverError as exc:
            self._refuse(exc)

    def body_limit(self) -> tuple[int, str]:
        return int(self.services.costs.max_body_bytes), "CostLimits.max_body_bytes"

    def body_error(self, exc: KohakuRiverError) -> None:
        self._refuse(exc)

    @property
    def services(self) -> ClusterServices:
        return self.settings["kohakuriver_services"]  # type: ignore[no-any-return]

    def check_xsrf_cookie(self) -> None:
        """Nothing here rides on a cookie (the caller is anonymous and the invitation is in
        the request), so there is nothing to forge; JSON clients need no XSRF dance."""
        return None

    def _wants_json(self) -> bool:
        return self.request.headers.get("Content-Type", "").startswith("application/json")

    def _action(self) -> str:
        return f"{self.base_url}{REGISTER_PATH}"

    def _login_enabled(self) -> bool:
        return isinstance(self.identity_provider, KohakuRiverIdentityProvider)

    @allow_unauthenticated
    def get(self) -> None:
        token = self.get_query_argument("token", "")[:200]
        self.set_header("Cache-Control", "no-store")
        self.set_header("Referrer-Policy", "no-referrer")
        self.finish(register_page(self._action(), self.xsrf_form_html(), token))

    def _registration(self) -> Registration:
        """The request as a :class:`Registration` (400 with the field names otherwise)."""
        if len(self.request_body()) > MAX_BODY_BYTES:
            raise InvalidRequest(f"request body is larger than {MAX_BODY_BYTES} bytes")
        if self._wants_json():
            try:
                data: Any = json.loads(self.request.body or b"{}")
            except (ValueError, RecursionError):
                raise InvalidRequest("request body is not valid JSON") from None
            if not isinstance(data, dict):
                raise InvalidRequest("request body must be a JSON object")
        else:
            data = {
                key: self.get_body_argument(key, "") for key in ("token", "username", "password")
            }
            if data["password"] != self.get_body_argument("password2", data["password"]):
                raise InvalidRequest("the two passwords differ")
        _check_strings(data)
        try:
            return Registration.model_validate(data)
        except pydantic.ValidationError as exc:
            raise InvalidRequest(validation_message(exc)) from None

    @allow_unauthenticated
    async def post(self) -> None:
        self.set_header("Cache-Control", "no-store")
        address = self.request.remote_ip
        invitations = self.services.invitations
        try:
            self.request_body()  # the form's fields, for _refuse too
            invitations.throttle.attempt(address or "?")
            if not self._login_enabled():
                raise Conflict("password login is not enabled on this host (ask an admin)")
            body = self._registration()
            invitations.check(body.token)  # cheap refusals before the slow hash
            password_hash = await hash_password_async(body.password)
            user = invitations.redeem(body.token, body.username, password_hash, address)
        except KohakuRiverError as exc:
            self._refuse(exc)
            return
        self.set_status(201)
        if self._wants_json():
            self.set_header("Content-Type", "application/json")
            self.finish(user.model_dump_json())
        else:
            login = f"{self.base_url}login"
            self.finish(registered_page(user.username, user.role.value, login))

    def _refuse(self, exc: KohakuRiverError) -> None:
        self.log.info("registration refused (%d): %s", exc.status_code, exc.message)
        self.set_status(exc.status_code)
        if self._wants_json():
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"message": exc.message}))
            return
        token = self.get_body_argument("token", "")[:200]
        username = self.get_body_argument("username", "")[:64]
        self.finish(
            register_page(
                self._action(), self.xsrf_form_html(), token, username=username, error=exc.message
            )
        )
