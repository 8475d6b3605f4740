"""Who may use what of the host's Jupyter server: the cluster for members, everything for admins.

Whoever can run a kernel, open a terminal or write a file on the host owns it, so with
``c.ServerApp.authorizer_class = "kohakuriver_lab.server.authorizer.KohakuRiverAuthorizer"``
only cluster **admins** (the host's owner with the server token, ``admin_users``, accounts with
the admin role) keep the whole Jupyter server. Every other identity may use the cluster API
(``kohakuriver``: its handlers check roles themselves) and read what the JupyterLab page asks
for: ``/api/me``, ``/api/status``, ``/api/spec.yaml`` (``api``) and the frontend config
sections (``config``, read-only JSON). Kernels, kernel specs, sessions, terminals, contents,
files, nbconvert, events (they would show the owner's activity), LSP, config changes and
shutdown are refused (403).

Some handlers never ask the Authorizer (JupyterLab's own: settings, workspaces, the extension
manager, which installs packages; many third-party extensions): :func:`member_may_reach` is
the allow-list for those, applied by :class:`~.identity.MemberGate` when it identifies the
caller.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.authorizer import Authorizer

from kohakuriver_lab.errors import KohakuRiverError
from kohakuriver_lab.models import Role

from .handlers.base import AUTH_RESOURCE, is_anonymous_token_user

MEMBER_RESOURCES = frozenset({("api", "read"), ("config", "read")})
"""(resource, action) pairs of Jupyter Server that non-admins get: /api/me, /api/status,
/api/spec.yaml, GET /api/config/{section} (read-only, nothing about files or kernels)."""

_ANY_METHOD = ("kohakuriver_lab.",)
"""Handlers that check cluster roles themselves (and the login and registration pages)."""
_AUTHORIZED = ("jupyter_server.",)
"""Handlers whose every action asks the Authorizer (login, logout, static files too)."""
_READ_ONLY = (
    "jupyterlab_server.",  # the lab page, settings, themes, translations, listings, licenses
    "jupyterlab.handlers.announcements.",  # news and update checks
    "jupyterlab.handlers.error_handler.",
)
"""Handlers members may only read (GET): what the JupyterLab page needs to load."""
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def member_may_reach(handler: Any) -> bool:
    """Whether a non-admin may call this handler at all (the Authorizer may still refuse).
    Everything not listed is refused: JupyterLab's extension, plugin and build managers,
    settings and workspace writes, and handlers of other server extensions."""
    module = type(handler).__module__ + "."
    if module.startswith(_ANY_METHOD + _AUTHORIZED):
        return True
    method = str(handler.request.method or "").upper()
    return method in _READ_METHODS and module.startswith(_READ_ONLY)


def jupyter_role(handler: Any, user: Any) -> Role | None:
    """The cluster role of a Jupyter identity (``None``: not an active member). The server
    token's anonymous identity is the host's owner; other identities are looked up (and a
    new one joins with ``UserDirectory.new_user_role``)."""
    if is_anonymous_token_user(user):
        return Role.ADMIN
    services = handler.settings.get("kohakuriver_services")
    username = str(getattr(user, "username", "") or "")
    if services is None or not username:
        return None
    try:
        return services.users.caller(username).role  # type: ignore[no-any-return]
    except KohakuRiverError:  # deactivated, or not a member
        return None


class KohakuRiverAuthorizer(Authorizer):
    """Cluster admins may do everything; other identities the cluster API and what the lab
    page reads (``api``, ``config``)."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        """See the module docstring."""
        if resource == AUTH_RESOURCE:
            return True  # the cluster's handlers check roles and scopes themselves
        if jupyter_role(handler, user) is Role.ADMIN:
            return True
        allowed = (resource, action) in MEMBER_RESOURCES
        if not allowed:
            self.log.info(
                "kohakuriver: %s may not %s %s (cluster admins only)",
                getattr(user, "username", "?"),
                action,
                resource,
            )
        return allowed
