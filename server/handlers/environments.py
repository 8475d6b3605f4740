"""REST handlers of container environments, and the two routes nodes use to move images:
the upload of a committed version (one-time upload token) and its download (runner token)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from tornado import web

from kohakuriver_lab.errors import Forbidden, KohakuRiverError, Unauthorized
from kohakuriver_lab.models import (
    EnvironmentCommit,
    EnvironmentCreate,
    EnvironmentExec,
    Role,
    Scope,
)

from ..queryparams import ENVIRONMENT_DELETE
from .base import AUTH_RESOURCE, ClusterAPIHandler, parse_id, requires
from .bodies import declared_length
from .errors import JsonErrorsMixin

if TYPE_CHECKING:
    from ..environments import Upload
    from ..services import ClusterServices

CHUNK = 1 << 20
SHA256_HEADER = "X-Content-SHA256"


def _bearer(handler: web.RequestHandler, scheme: str) -> str | None:
    """The credential of ``Authorization: <scheme> <credential>``."""
    given, _, secret = handler.request.headers.get("Authorization", "").partition(" ")
    return secret.strip() if given.lower() == scheme and secret.strip() else None


class EnvironmentsHandler(ClusterAPIHandler):
    """``GET``: every environment; ``POST``: create one (starts its container on a node)."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    def get(self) -> None:
        envs = self.services.environments.list_environments()
        self.write_json({"environments": [e.model_dump(mode="json") for e in envs]})

    @web.authenticated
    @authorized
    @requires(Role.OPERATOR, Scope.ADMIN)
    async def post(self) -> None:
        body = self.parse_body(EnvironmentCreate)
        info = await self.services.environments.create(body, actor=self.username)
        self.write_json(info, status=201)


class EnvironmentHandler(ClusterAPIHandler):
    """``GET``: one environment; ``DELETE``: remove its container (``?versions=true``: and
    every stored version)."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    def get(self, name: str) -> None:
        self.write_json(self.services.environments.get(name))

    @web.authenticated
    @authorized
    @requires(Role.OPERATOR, Scope.ADMIN)
    async def delete(self, name: str) -> None:
        versions = ENVIRONMENT_DELETE["versions"].boolean(self)
        await self.services.environments.remove(name, versions=versions)
        self.set_status(204)
        self.finish()


class EnvironmentExecHandler(ClusterAPIHandler):
    """``POST``: run an argv in the environment's container; its exit code and output."""

    @web.authenticated
    @authorized
    @requires(Role.OPERATOR, Scope.ADMIN)
    async def post(self, name: str) -> None:
        body = self.parse_body(EnvironmentExec)
        self.write_json(await self.services.environments.exec(name, body))


class EnvironmentVersionsHandler(ClusterAPIHandler):
    """``GET``: the stored versions; ``POST``: commit + export a new one (waits for it)."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    def get(self, name: str) -> None:
        versions = self.services.environments.get(name).versions
        self.write_json({"versions": [v.model_dump(mode="json") for v in versions]})

    @web.authenticated
    @authorized
    @requires(Role.OPERATOR, Scope.ADMIN)
    async def post(self, name: str) -> None:
        body = self.parse_body(EnvironmentCommit)
        info = await self.services.environments.commit(name, body, actor=self.username)
        self.write_json(info, status=201)


class EnvironmentVersionHandler(ClusterAPIHandler):
    """``DELETE``: drop a stored version."""

    @web.authenticated
    @authorized
    @requires(Role.OPERATOR, Scope.ADMIN)
    def delete(self, name: str, version: str) -> None:
        self.services.environments.delete_version(name, parse_id(version, "version"))
        self.set_status(204)
        self.finish()


class EnvironmentImageHandler(ClusterAPIHandler):
    """``GET``: a version's ``docker save`` tarball, for runners (``Authorization: Bearer
    <runner token>``) and users; ``X-Content-SHA256`` carries its checksum."""

    def check_xsrf_cookie(self) -> None:
        """A runner token travels in a header, which cross-site pages cannot set."""
        if _bearer(self, "bearer") is not None:
            return None
        return super().check_xsrf_cookie()

    async def _authorize(self) -> None:
        secret = _bearer(self, "bearer")
        if secret is not None and self.services.tokens.verify(secret) is not None:
            return
        user = self.current_user
        if user is None:
            raise Unauthorized("a runner token or a Jupyter login is required")
        if not await ensure_async(self.authorizer.is_authorized(self, user, "read", AUTH_RESOURCE)):
            raise Forbidden("not allowed")
        self.caller.require(Role.OPERATOR, Scope.READ, "downloading an environment image")

    @allow_unauthenticated  # runner token or Jupyter auth, checked in _authorize
    async def get(self, name: str, version: str) -> None:
        await self._authorize()
        path, info = self.services.environments.tarball(name, parse_id(version, "version"))
        self.set_header("Content-Type", "application/x-tar")
        self.set_header("Content-Length", str(path.stat().st_size))
        self.set_header(SHA256_HEADER, info.sha256)
        self.set_header("Content-Disposition", f'attachment; filename="{name}-{info.tag}.tar"')
        loop = asyncio.get_running_loop()
        with open(path, "rb") as fh:
            while True:
                chunk = await loop.run_in_executor(None, fh.read, CHUNK)
                if not chunk:
                    break
                self.write(chunk)
                await self.flush()
        self.finish(set_content_type="application/x-tar")  # APIHandler.finish: JSON otherwise


@web.stream_request_body
class EnvironmentUploadHandler(JsonErrorsMixin, web.RequestHandler):
    """``PUT``: a node streams a committed version here (``Authorization: Upload <one-time
    token>`` from its ``env_commit`` order, ``X-Content-SHA256`` with the checksum).

    Not a Jupyter route: only the token of a pending commit opens it."""

    upload: Upload | None = None

    @property
    def services(self) -> ClusterServices:
        """The host's services."""
        return self.settings["kohakuriver_services"]  # type: ignore[no-any-return]

    def check_xsrf_cookie(self) -> None:
        """Authenticated by a header token only."""

    @allow_unauthenticated  # the one-time upload token is checked here
    def prepare(self) -> None:
        if self.request.method != "PUT":
            raise web.HTTPError(405)
        token = _bearer(self, "upload")
        if token is None:
            self._fail(401, "an upload token is required")
            return
        name, version = self.path_args
        try:
            self.upload = self.services.environments.begin_upload(
                name, parse_id(version, "version"), token
            )
        except KohakuRiverError as exc:
            self._fail(exc.status_code, exc.message)
            return
        try:
            length = declared_length(self.request)
        except KohakuRiverError as exc:
            length, message = None, exc.message
        else:
            message = ""
        if length is not None and length > self.upload.max_bytes:
            message = (
                f"environment image of {length} bytes is over the limit of "
                f"{self.upload.max_bytes} bytes (EnvironmentService.max_image_bytes)"
            )
        if message:  # refused on the headers, before any body byte is read
            self.upload.abort()
            self.upload = None
            self._fail(413 if length else 400, message)
            return
        self.request.connection.set_max_body_size(self.upload.max_bytes)  # type: ignore[union-attr]

    def data_received(self, chunk: bytes) -> None:
        if self.upload is not None:
            try:
                self.upload.write(chunk)
            except KohakuRiverError as exc:
                self.upload = None
                self._fail(413, exc.message)

    @allow_unauthenticated  # checked in prepare()
    def put(self, name: str, version: str) -> None:
        if self.upload is None:
            return
        try:
            digest = self.upload.finish(self.request.headers.get(SHA256_HEADER))
        except KohakuRiverError as exc:
            self._fail(exc.status_code, exc.message)
            return
        self.set_header("Content-Type", "application/json")
        self.finish({"sha256": digest, "size": self.upload.size})

    def on_connection_close(self) -> None:
        if self.upload is not None and self.upload.sha256 is None:
            self.upload.abort()

    def _fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish({"message": message})
