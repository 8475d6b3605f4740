"""What running jobs report back: progress, glued results, artifacts (notebook jobs)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from traitlets.config import LoggingConfigurable

from kohakuriver_lab.errors import InvalidRequest, NotFound, TooLarge
from kohakuriver_lab.models import JobProgress, JobResult

from .artifacts import ArtifactStore, ArtifactUpload
from .costs import ArtifactBudget
from .db.orm import Task
from .events import EventBus
from .tasks import load_task

MAX_RESULTS_BYTES = 1024 * 1024


class JobService(LoggingConfigurable):
    """Progress, results and artifacts of tasks, as their jobs report them."""

    def __init__(
        self,
        db: sessionmaker[Session],
        artifacts: ArtifactStore,
        events: EventBus,
        budget: ArtifactBudget,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._db = db
        self.artifacts = artifacts
        self._events = events
        self.budget = budget

    def begin_artifact(self, task_id: int, name: str, declared: int | None) -> ArtifactUpload:
        """Start receiving a job's upload, bounded by the artifact limits of one file, the
        task and its owner (413 naming the limit when ``declared`` is already over)."""
        with self._db() as session:
            owner = load_task(session, task_id).owner
        replaced = self.artifacts.size(task_id, name)
        room, text = self.budget.room(owner, self.artifacts.job_bytes(task_id), replaced)
        if declared is not None and declared > room:
            self.log.info(
                "task %s: artifact %s of %d bytes refused: %s", task_id, name, declared, text
            )
            raise TooLarge(f"artifact {name} of {declared} bytes refused: {text}")
        upload = self.artifacts.begin(task_id, name, room, text)
        upload.owner, upload.replaced = owner, replaced
        return upload

    def commit_artifact(self, upload: ArtifactUpload) -> None:
        """Put a received artifact in place and count it for its owner."""
        size = upload.commit()
        self.budget.add(upload.owner, size - upload.replaced)

    def job_info(self, task_id: int) -> dict[str, Any]:
        """What the job wrapper needs besides its input files."""
        with self._db() as session:
            task = load_task(session, task_id)
            return {"parameters": task.parameters or {}, "notebook_name": task.name}

    def record_progress(self, task_id: int, progress: JobProgress) -> None:
        """Store a job's progress and push it to live subscribers."""
        with self._db() as session:
            task = load_task(session, task_id)
            task.progress = progress.model_dump()
            session.commit()
        payload = {"type": "progress", "task_id": str(task_id), **progress.model_dump()}
        self._events.publish_for_task(task, payload)

    def record_result(self, task_id: int, result: JobResult) -> None:
        """Store one glued value (a later value of the same name replaces it)."""
        with self._db() as session:
            task = load_task(session, task_id)
            results = dict(task.results or {})
            results[result.name] = result.value
            if len(json.dumps(results)) > MAX_RESULTS_BYTES:
                raise InvalidRequest(f"a task's results may hold at most {MAX_RESULTS_BYTES} bytes")
            task.results = results
            session.commit()

    def results(self, task_id: int) -> dict[str, Any]:
        """A task's glued values."""
        with self._db() as session:
            return dict(load_task(session, task_id).results or {})

    def batch_results(self, batch_id: int) -> list[dict[str, Any]]:
        """Every task of a batch (e.g. a sweep) with its parameters and results."""
        with self._db() as session:
            rows = session.execute(
                select(Task.task_id, Task.status, Task.parameters, Task.results)
                .where(Task.batch_id == batch_id)
                .order_by(Task.task_id)
            ).all()
        if not rows:
            raise NotFound(f"batch {batch_id} not found")
        return [
            {
                "task_id": str(r.task_id),
                "status": r.status,
                "parameters": r.parameters or {},
                "results": r.results or {},
            }
            for r in rows
        ]

    def set_output_path(self, task_id: int, path: str) -> None:
        """Remember where the executed notebook was saved in the Jupyter contents."""
        with self._db() as session:
            task = load_task(session, task_id)
            task.output_path = path
            session.commit()
