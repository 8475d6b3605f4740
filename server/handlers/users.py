"""REST handlers of cluster users, personal API tokens, settings and the audit log."""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from tornado import web

from kohakuriver_lab.models import (
    ApiTokenCreate,
    ClusterSettings,
    QuotaInfo,
    Role,
    Scope,
    UserCreate,
    UserUpdate,
)

from ..queryparams import AUDIT, TOKEN_LIST
from .base import ClusterAPIHandler, parse_id, requires


class UsersHandler(ClusterAPIHandler):
    """``GET``: every cluster user (operators and admins); ``POST``: add one (admins)."""

    @web.authenticated
    @authorized
    @requires(Role.OPERATOR, Scope.READ)
    def get(self) -> None:
        users = self.services.users.list_users()
        self.write_json({"users": [u.model_dump(mode="json") for u in users]})

    @web.authenticated
    @authorized
    @requires(Role.ADMIN, Scope.ADMIN)
    def post(self) -> None:
        body = self.parse_body(UserCreate)
        self.write_json(self.services.users.create(body, self.caller), status=201)


class UserHandler(ClusterAPIHandler):
    """``GET`` one user; ``PATCH`` role, groups, active (admins; audited)."""

    @web.authenticated
    @authorized
    @requires(Role.OPERATOR, Scope.READ)
    def get(self, username: str) -> None:
        self.write_json(self.services.users.get(username))

    @web.authenticated
    @authorized
    @requires(Role.ADMIN, Scope.ADMIN)
    def patch(self, username: str) -> None:
        body = self.parse_body(UserUpdate)
        self.write_json(self.services.users.update(username, body, self.caller))


class ApiTokensHandler(ClusterAPIHandler):
    """``GET``: the caller's API tokens (admins: ``?all=true`` for everyone's); ``POST``:
    a new one, its secret shown once."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    def get(self) -> None:
        everyone = TOKEN_LIST["all"].boolean(self)
        if everyone:
            self.caller.require(Role.ADMIN, Scope.READ, "listing everyone's API tokens")
        tokens = self.services.api_tokens.list_tokens(None if everyone else self.caller.username)
        self.write_json({"tokens": [t.model_dump(mode="json") for t in tokens]})

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.ADMIN)
    def post(self) -> None:
        body = self.parse_body(ApiTokenCreate)
        self.write_json(self.services.api_tokens.create(self.caller, body), status=201)


class ApiTokenHandler(ClusterAPIHandler):
    """``DELETE``: revoke one of your tokens (admins: anyone's)."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.ADMIN)
    def delete(self, token_id: str) -> None:
        self.services.api_tokens.revoke(parse_id(token_id, "API token"), self.caller)
        self.set_status(204)
        self.finish()


class SettingsHandler(ClusterAPIHandler):
    """``GET``: the cluster settings; ``PATCH``: change some (admins; audited)."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    def get(self) -> None:
        self.write_json(self.services.cluster_settings.get())

    @web.authenticated
    @authorized
    @requires(Role.ADMIN, Scope.ADMIN)
    def patch(self) -> None:
        changes = self.parse_body(ClusterSettings).model_dump(exclude_unset=True)
        raw = json.loads(self.request.body or b"{}")
        changes = {k: v for k, v in changes.items() if k in raw}
        self.write_json(self.services.cluster_settings.update(changes, self.caller))


class AuditHandler(ClusterAPIHandler):
    """``GET``: the audit log, newest first (admins); ``actor``, ``action``, ``limit``,
    ``before`` (an event ID, for the next page)."""

    @web.authenticated
    @authorized
    @requires(Role.ADMIN, Scope.READ)
    def get(self) -> None:
        events = self.services.audit.list_events(
            actor=AUDIT["actor"].text(self),
            action=AUDIT["action"].text(self),
            limit=AUDIT["limit"].integer(self),
            before=AUDIT["before"].ident(self),
        )
        self.write_json({"events": [e.model_dump(mode="json") for e in events]})


class QuotasHandler(ClusterAPIHandler):
    """``GET``: every quota (operators); ``PUT``: set one (admins; audited)."""

    @web.authenticated
    @authorized
    @requires(Role.OPERATOR, Scope.READ)
    def get(self) -> None:
        quotas = self.services.quotas.list_quotas()
        self.write_json({"quotas": [q.model_dump(mode="json") for q in quotas]})

    @web.authenticated
    @authorized
    @requires(Role.ADMIN, Scope.ADMIN)
    def put(self) -> None:
        body = self.parse_body(QuotaInfo)
        self.write_json(self.services.quotas.put(body, self.caller))
        self.services.scheduler.kick()


class QuotaHandler(ClusterAPIHandler):
    """``DELETE``: drop the quota of ``user:NAME`` or ``group:NAME`` (admins; audited)."""

    @web.authenticated
    @authorized
    @requires(Role.ADMIN, Scope.ADMIN)
    def delete(self, subject: str) -> None:
        self.services.quotas.delete(subject, self.caller)
        self.services.scheduler.kick()
        self.set_status(204)
        self.finish()
