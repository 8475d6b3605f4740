"""Routes a running job calls back with its task token (``Authorization: Task <token>``):
job parameters, input and output files, progress, glued results. Users (Jupyter auth) may
read them too. Bodies are accepted only once the token or login is checked; uploads stream
to disk within the ``CostLimits`` artifact limits (413 naming the limit)."""

from __future__ import annotations

from typing import Any

import nbformat
from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from tornado import web

from kohakuriver_lab.errors import Forbidden, InvalidRequest, Unauthorized
from kohakuriver_lab.models import JobProgress, JobResult, Role, Scope

from ..artifacts import ArtifactUpload
from ..tasks import OUTPUT_NOTEBOOK
from .base import AUTH_RESOURCE, ClusterAPIHandler, parse_id, requires


class JobAPIHandler(ClusterAPIHandler):
    """Authenticated by a task token for that task, or as a Jupyter user."""

    def _task_token(self) -> str | None:
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "task" and token.strip() else None

    def check_xsrf_cookie(self) -> None:
        """A task token travels in a header, which cross-site pages cannot set."""
        if self._task_token() is not None:
            return None
        return super().check_xsrf_cookie()

    async def body_allowed(self) -> None:
        """A body only with a valid task token for this task, or a Jupyter login."""
        token = self._task_token()
        if token is not None:
            ident = parse_id(self.path_args[0])
            if not self.services.task_tokens.verify(ident, token):
                raise Forbidden(f"this task token is not for task {ident}")
        elif self.current_user is None:
            raise Unauthorized("a Jupyter login or this task's token is required")

    async def authorize_task(self, task_id: str, action: str) -> int:
        """The task ID, once the caller may ``action`` it; 401/403 otherwise."""
        ident = parse_id(task_id)
        token = self._task_token()
        if token is not None:
            if not self.services.task_tokens.verify(ident, token):
                raise Forbidden(f"this task token is not for task {ident}")
            return ident
        user = self.current_user
        if user is None:
            raise Unauthorized("a Jupyter login or this task's token is required")
        if not await ensure_async(self.authorizer.is_authorized(self, user, action, AUTH_RESOURCE)):
            raise Forbidden("not allowed")
        if action == "read":
            self.task_with_details(task_id)
        else:
            self.task_for_control(task_id, "write to")
        return ident


class TaskJobHandler(JobAPIHandler):
    """``GET``: the job's parameters."""

    @allow_unauthenticated  # task token or Jupyter auth, checked in authorize_task
    async def get(self, task_id: str) -> None:
        ident = await self.authorize_task(task_id, "read")
        self.write_json(self.services.jobs.job_info(ident))


class TaskProgressHandler(JobAPIHandler):
    """``POST``: a job reports how far it got (and the error that stopped it)."""

    @allow_unauthenticated  # task token or Jupyter auth, checked in authorize_task
    async def post(self, task_id: str) -> None:
        ident = await self.authorize_task(task_id, "write")
        self.services.jobs.record_progress(ident, self.parse_body(JobProgress))
        self.set_status(204)
        self.finish()


class TaskResultsHandler(JobAPIHandler):
    """``GET``: a task's glued values; ``POST``: glue one."""

    @allow_unauthenticated  # task token or Jupyter auth, checked in authorize_task
    async def get(self, task_id: str) -> None:
        ident = await self.authorize_task(task_id, "read")
        self.write_json({"results": self.services.jobs.results(ident)})

    @allow_unauthenticated  # task token or Jupyter auth, checked in authorize_task
    async def post(self, task_id: str) -> None:
        ident = await self.authorize_task(task_id, "write")
        self.services.jobs.record_result(ident, self.parse_body(JobResult))
        self.set_status(204)
        self.finish()


class TaskArtifactHandler(JobAPIHandler):
    """``GET``/``PUT`` one file of a task (``input.ipynb``, ``output.ipynb``, ...); a
    ``PUT`` streams into a temp file, refused (413) past the artifact limits."""

    upload: ArtifactUpload | None = None

    def body_limit(self) -> tuple[int, str]:
        if self.request.method == "PUT":
            return int(self.services.costs.max_artifact_bytes), "CostLimits.max_artifact_bytes"
        return super().body_limit()

    async def begin_body(self, length: int | None) -> None:
        if self.request.method != "PUT":
            return await super().begin_body(length)
        task_id, name = self.path_args
        ident = await self.authorize_task(task_id, "write")
        self.upload = self.services.jobs.begin_artifact(ident, name, length)
        return None

    def consume(self, chunk: bytes) -> None:
        if self.upload is None:
            return super().consume(chunk)
        self.upload.write(chunk)
        return None

    def body_refused(self) -> None:
        self._drop_upload()

    def on_connection_close(self) -> None:
        self._drop_upload()
        super().on_connection_close()

    def on_finish(self) -> None:
        self._drop_upload()
        super().on_finish()

    def _drop_upload(self) -> None:
        if self.upload is not None:
            self.upload.abort()
            self.upload = None

    @allow_unauthenticated  # task token or Jupyter auth, checked in authorize_task
    async def get(self, task_id: str, name: str) -> None:
        ident = await self.authorize_task(task_id, "read")
        data = self.services.jobs.artifacts.read(ident, name)
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        self.finish(data, set_content_type="application/octet-stream")  # APIHandler: not JSON

    @allow_unauthenticated  # task token or Jupyter auth, checked in authorize_task
    async def put(self, task_id: str, name: str) -> None:
        ident = await self.authorize_task(task_id, "write")
        upload, jobs = self.upload, self.services.jobs
        if upload is None:  # refused while it arrived
            return
        try:
            if name == OUTPUT_NOTEBOOK:
                path = await self._save_to_contents(ident, upload.data())
                jobs.commit_artifact(upload)
                jobs.set_output_path(ident, path)
            else:
                jobs.commit_artifact(upload)
        finally:
            self._drop_upload()
        self.set_status(204)
        self.finish()

    async def _save_to_contents(self, task_id: int, data: bytes) -> str:
        try:
            notebook = nbformat.reads(data.decode("utf-8"), as_version=4)  # type: ignore[no-untyped-call]
        except Exception as exc:  # nbformat raises many kinds
            raise InvalidRequest(f"output.ipynb is not a notebook: {exc}") from None
        app: Any = self.extensionapp  # ClusterHostApp
        folder = str(app.jobs_dir).strip("/")
        manager: Any = self.contents_manager
        parts = [*folder.split("/"), str(task_id)]
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            if not await ensure_async(manager.dir_exists(path)):
                try:
                    await ensure_async(manager.save({"type": "directory"}, path))
                except Exception:  # the contents manager wraps FileExistsError in a 500
                    if not await ensure_async(manager.dir_exists(path)):
                        raise
                    # another job's upload made the folder meanwhile
        path = "/".join([*parts, OUTPUT_NOTEBOOK])
        model: dict[str, Any] = {"type": "notebook", "format": "json", "content": notebook}
        await ensure_async(manager.save(model, path))
        return path


class BatchResultsHandler(ClusterAPIHandler):
    """``GET``: every task of a batch (a sweep) with its parameters, status and results."""

    @web.authenticated
    @authorized
    @requires(Role.VIEWER, Scope.READ)
    def get(self, batch_id: str) -> None:
        ident = parse_id(batch_id, "batch")
        self.task_with_details(batch_id)  # a batch's ID is its first task's; one owner
        self.write_json({"results": self.services.jobs.batch_results(ident)})
