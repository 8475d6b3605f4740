"""Password login to the host for lab members (accounts made with invitations).

``c.ServerApp.identity_provider_class = "kohakuriver_lab.server.identity.KohakuRiverIdentityProvider"``
adds a user name to Jupyter's login form: members log in with their name and password
(argon2id hashes in the cluster database); the host's owner leaves the name empty and uses
the server token (or the server's own password) as before. Logins and failed logins are
audited (never the password) and rate-limited per address.

:class:`MemberGate` is the part that works with any identity provider (e.g. JupyterHub's):
it keeps non-admins to the handlers of :func:`~.authorizer.member_may_reach` and makes sure
no page they get contains the server token (JupyterLab puts it in its page config, Jupyter
Server in every page it renders for a logged-in user).
"""

from __future__ import annotations

import html
import inspect
import json
import re
from typing import Any
from urllib.parse import quote

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider, User
from jupyter_server.auth.login import LoginFormHandler
from tornado import web
from tornado.escape import url_escape
from traitlets import Integer, default

from kohakuriver_lab.errors import TooManyRequests
from kohakuriver_lab.models import Role

from .authorizer import jupyter_role, member_may_reach
from .handlers.base import is_anonymous_token_user
from .pages import login_page
from .passwords import verify_password, verify_password_async
from .throttle import Throttle
from .users import host_owner

MEMBER_FLAG = "_kohakuriver_member"
"""Set on a request made by a non-admin: its responses are scrubbed of the server token."""
USERNAME_RE = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
MAX_PASSWORD = 1024


class TokenScrub(web.OutputTransform):
    """Removes the server token from every response to a non-admin (installed by
    :class:`MemberGate`; ``provider`` is set on the installed subclass)."""

    provider: IdentityProvider | None = None

    def __init__(self, request: Any) -> None:
        self.request = request

    def _secrets(self) -> list[bytes]:
        token = str(getattr(self.provider, "token", "") or "")
        if not token:
            return []
        forms = {token, quote(token, safe=""), json.dumps(token)[1:-1], html.escape(token)}
        return sorted((f.encode() for f in forms if f), key=len, reverse=True)

    def _scrub(self, chunk: bytes, keep_length: bool) -> bytes:
        """``chunk`` without the token (masked to the same length inside a stream)."""
        if not getattr(self.request, MEMBER_FLAG, False):
            return chunk
        for secret in self._secrets():
            if secret in chunk:
                chunk = chunk.replace(secret, b"*" * len(secret) if keep_length else b"")
        return chunk

    def transform_first_chunk(
        self, status_code: int, headers: Any, chunk: bytes, finishing: bool
    ) -> tuple[int, Any, bytes]:
        scrubbed = self._scrub(chunk, keep_length=not finishing)
        if len(scrubbed) != len(chunk) and "Content-Length" in headers:
            headers["Content-Length"] = str(len(scrubbed))
        return status_code, headers, scrubbed

    def transform_chunk(self, chunk: bytes, finishing: bool) -> bytes:
        return self._scrub(chunk, keep_length=True)


class MemberGate(IdentityProvider):
    """Mix in before any identity provider: non-admins reach only the allow-listed handlers,
    and never see the server token."""

    def accepts(self, handler: Any, user: User) -> bool:
        """Whether an identity found by the provider is still good (override: e.g. the
        account still exists)."""
        return True

    async def get_user(self, handler: web.RequestHandler) -> User | None:
        """The provider's user, once accepted; 403 for a non-admin outside the allow-list."""
        found = super().get_user(handler)
        user: User | None = await found if inspect.isawaitable(found) else found
        if user is None:
            return None
        if not self.accepts(handler, user):
            self.clear_login_cookie(handler)
            return None
        if jupyter_role(handler, user) is not Role.ADMIN:
            setattr(handler.request, MEMBER_FLAG, True)
            if not member_may_reach(handler):
                raise web.HTTPError(403, "only cluster admins may use this on the host")
        return user

    def validate_security(self, app: Any, ssl_options: dict[str, Any] | None = None) -> None:
        """Also install :class:`TokenScrub` first (before compression) on the web app."""
        super().validate_security(app, ssl_options)
        web_app = getattr(app, "web_app", None)
        if web_app is not None:
            web_app.transforms.insert(0, type("BoundTokenScrub", (TokenScrub,), {"provider": self}))


class KohakuRiverIdentityProvider(MemberGate, PasswordIdentityProvider):
    """Jupyter login with a cluster user name and password (see the module docstring)."""

    login_attempts_per_minute = Integer(
        10, config=True, help="Login attempts one address may make per minute (429 beyond)."
    )
    login_attempts_per_minute_total = Integer(
        100, config=True, help="Login attempts from all addresses per minute."
    )

    _throttle: Throttle | None = None

    @default("login_handler_class")
    def _default_login_handler_class(self) -> type[web.RequestHandler]:
        return KohakuRiverLoginHandler

    @property
    def auth_enabled(self) -> bool:
        """Always: members log in even when the owner configured no token or password."""
        return True

    @property
    def login_available(self) -> bool:
        return True

    @property
    def throttle(self) -> Throttle:
        if self._throttle is None:
            self._throttle = Throttle(
                self.login_attempts_per_minute,
                self.login_attempts_per_minute_total,
                what="login attempts",
            )
        return self._throttle

    def accepts(self, handler: Any, user: User) -> bool:
        """The owner's token identity, or an existing, active cluster account."""
        if is_anonymous_token_user(user):
            return True
        services = handler.settings.get("kohakuriver_services")
        return services is not None and services.users.active_role(user.username) is not None

    # ----- the login form -----

    def _form(self, handler: Any) -> tuple[str, str]:
        username = str(handler.get_argument("username", default="")).strip()
        password = str(handler.get_argument("password", default=""))
        return username, password

    def _stored_hash(self, handler: Any, username: str, password: str) -> str | None:
        """The password hash to check (``None``: no such account; a dummy is checked)."""
        self.throttle.attempt(handler.request.remote_ip or "?")
        services = handler.settings.get("kohakuriver_services")
        if services is None or not USERNAME_RE.match(username) or len(password) > MAX_PASSWORD:
            return None
        return services.users.password_hash(username)  # type: ignore[no-any-return]

    def _owner_login(self, handler: Any) -> User | None:
        """No user name: the server token or the server's password (Jupyter's own check)."""
        self.throttle.attempt(handler.request.remote_ip or "?")
        user = super().process_login_form(handler)
        self._audit(handler, user is not None, host_owner(), "token")
        return user

    def _member(self, handler: Any, username: str, ok: bool) -> User | None:
        self._audit(handler, ok, username[:64], "password")
        return User(username=username) if ok else None

    def _audit(self, handler: Any, ok: bool, who: str, via: str) -> None:
        services = handler.settings.get("kohakuriver_services")
        if services is None:
            return
        services.audit.record(
            who if ok else "anonymous",
            "login" if ok else "login.failed",
            who,
            {"via": via},
            address=handler.request.remote_ip,
        )

    async def login(self, handler: Any) -> User | None:
        """Check the login form (the slow hash runs in a bounded thread pool)."""
        username, password = self._form(handler)
        if not username:
            return self._owner_login(handler)
        stored = self._stored_hash(handler, username, password)
        ok = await verify_password_async(stored, password[:MAX_PASSWORD])
        return self._member(handler, username, ok)

    def process_login_form(self, handler: web.RequestHandler) -> User | None:
        """The same check, blocking (for Jupyter's stock login handler)."""
        username, password = self._form(handler)
        try:
            if not username:
                return self._owner_login(handler)
            stored = self._stored_hash(handler, username, password)
        except TooManyRequests as exc:
            self.log.warning("login refused: %s", exc.message)
            return None
        return self._member(handler, username, verify_password(stored, password[:MAX_PASSWORD]))


class KohakuRiverLoginHandler(LoginFormHandler):
    """Jupyter's login page with a user name field; the password check does not block the
    server."""

    def _render(self, message: dict[str, str] | None = None) -> None:
        next_url = self.get_argument("next", default=self.base_url)
        action = f"{self.base_url}login?next={url_escape(next_url)}"
        error = (message or {}).get("error")
        self.write(login_page(action, self.xsrf_form_html(), error=error))

    @allow_unauthenticated
    async def post(self) -> None:
        provider = self.identity_provider
        try:
            if isinstance(provider, KohakuRiverIdentityProvider):
                user = await provider.login(self)
            else:
                user = provider.process_login_form(self)
        except TooManyRequests as exc:
            self.set_status(429)
            self._render({"error": exc.message})
            return
        if user is None:
            self.set_status(401)
            self._render({"error": "Invalid user name or password"})
            return
        self.current_user = user
        self.log.info("%s logged in", user.username)
        provider.set_login_cookie(self, user)
        self._redirect_safe(self.get_argument("next", default=self.base_url))  # type: ignore[no-untyped-call]
