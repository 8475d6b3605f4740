"""The host's URL table (relative to the server's base URL)."""

from __future__ import annotations

from typing import Any

from .handlers.api import (
    ClusterHandler,
    MeHandler,
    NodeHandler,
    NodesHandler,
    OpenAPIHandler,
    RunnerTokenHandler,
    RunnerTokensHandler,
    TaskActionHandler,
    TaskEventsHandler,
    TaskHandler,
    TaskLogsHandler,
    TasksHandler,
    TaskSnapshotHandler,
    TaskSnapshotsHandler,
)
from .handlers.environments import (
    EnvironmentExecHandler,
    EnvironmentHandler,
    EnvironmentImageHandler,
    EnvironmentsHandler,
    EnvironmentUploadHandler,
    EnvironmentVersionHandler,
    EnvironmentVersionsHandler,
)
from .handlers.errors import UnknownRouteHandler
from .handlers.invitations import InvitationHandler, InvitationsHandler, RegisterHandler
from .handlers.jobs import (
    BatchResultsHandler,
    TaskArtifactHandler,
    TaskJobHandler,
    TaskProgressHandler,
    TaskResultsHandler,
)
from .handlers.sockets import EventsHandler, LogFollowHandler, RunnerSocketHandler
from .handlers.users import (
    ApiTokenHandler,
    ApiTokensHandler,
    AuditHandler,
    QuotaHandler,
    QuotasHandler,
    SettingsHandler,
    UserHandler,
    UsersHandler,
)

API_PREFIX = "/kohakuriver/api"
_ID = r"(\d{1,20})"
_ENV = r"([a-z0-9][a-z0-9_.-]{0,62})"

ROUTES: list[tuple[str, type[Any]]] = [
    (r"/tasks", TasksHandler),
    (rf"/tasks/{_ID}", TaskHandler),
    (rf"/tasks/{_ID}/events", TaskEventsHandler),
    (rf"/tasks/{_ID}/(kill|pause|resume|stop|start|approve|reject)", TaskActionHandler),
    (rf"/tasks/{_ID}/snapshots", TaskSnapshotsHandler),
    (rf"/tasks/{_ID}/snapshots/([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})", TaskSnapshotHandler),
    (rf"/tasks/{_ID}/logs", TaskLogsHandler),
    (rf"/tasks/{_ID}/logs/follow", LogFollowHandler),
    (rf"/tasks/{_ID}/job", TaskJobHandler),
    (rf"/tasks/{_ID}/progress", TaskProgressHandler),
    (rf"/tasks/{_ID}/results", TaskResultsHandler),
    (rf"/tasks/{_ID}/artifacts/([A-Za-z0-9][A-Za-z0-9._-]{{0,99}})", TaskArtifactHandler),
    (rf"/batches/{_ID}/results", BatchResultsHandler),
    (r"/environments", EnvironmentsHandler),
    (rf"/environments/{_ENV}", EnvironmentHandler),
    (rf"/environments/{_ENV}/exec", EnvironmentExecHandler),
    (rf"/environments/{_ENV}/versions", EnvironmentVersionsHandler),
    (rf"/environments/{_ENV}/versions/{_ID}", EnvironmentVersionHandler),
    (rf"/environments/{_ENV}/versions/{_ID}/image", EnvironmentImageHandler),
    (rf"/environments/{_ENV}/versions/{_ID}/upload", EnvironmentUploadHandler),
    (r"/nodes", NodesHandler),
    (r"/nodes/([A-Za-z0-9._-]{1,63})", NodeHandler),
    (r"/cluster", ClusterHandler),
    (r"/me", MeHandler),
    (r"/users", UsersHandler),
    (r"/users/([A-Za-z0-9][A-Za-z0-9._@-]{0,199})", UserHandler),
    (r"/invitations", InvitationsHandler),
    (rf"/invitations/{_ID}", InvitationHandler),
    (r"/tokens", ApiTokensHandler),
    (rf"/tokens/{_ID}", ApiTokenHandler),
    (r"/settings", SettingsHandler),
    (r"/audit", AuditHandler),
    (r"/quotas", QuotasHandler),
    (r"/quotas/([^/]{1,300})", QuotaHandler),
    (r"/events", EventsHandler),
    (r"/runner-tokens", RunnerTokensHandler),
    (rf"/runner-tokens/{_ID}", RunnerTokenHandler),
    (r"/runners/connect", RunnerSocketHandler),
    (r"/openapi.json", OpenAPIHandler),
]
"""(pattern under :data:`API_PREFIX`, handler) pairs."""

PUBLIC_ROUTES: list[tuple[str, type[Any]]] = [
    (r"/kohakuriver/register", RegisterHandler),
]
"""(full pattern, handler) pairs that need no credentials (``allow_unauthenticated``): the
registration page, where the invitation is the credential."""


CATCH_ALL = (API_PREFIX + r"(?:/.*)?", UnknownRouteHandler)
"""Last: any other path under the prefix is a JSON 404, not Jupyter's HTML page."""


def handlers() -> list[tuple[str, type[Any]]]:
    """The URL patterns for ``ExtensionApp.handlers`` (base URL is prefixed by jupyter_server)."""
    api = [(API_PREFIX + pattern, handler) for pattern, handler in ROUTES]
    return [*api, *PUBLIC_ROUTES, CATCH_ALL]
