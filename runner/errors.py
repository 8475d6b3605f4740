"""Runner-side errors: the backend hierarchy, translated from OS errors in one place."""

from __future__ import annotations

import errno

from kohakuriver_lab.errors import KohakuRiverError


class BackendError(KohakuRiverError):
    """A backend could not do what was asked."""


class TaskNotFound(BackendError):
    """The backend has no record of this task."""

    status_code = 404


class TaskStartError(BackendError):
    """The task could not be started (it is recorded as ``failed``)."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class InvalidTaskState(BackendError):
    """The order does not fit the task's state (e.g. pausing a finished task)."""

    status_code = 409


class UnsupportedOperation(BackendError):
    """The backend cannot do this at all (e.g. pause without freezer or signals)."""

    status_code = 400


def translate_os_error(exc: OSError, what: str) -> BackendError:
    """Turn an ``OSError`` raised while doing ``what`` into a :class:`BackendError`."""
    if exc.errno in (errno.ENOENT, errno.ESRCH):
        return TaskNotFound(f"{what}: {exc.strerror or exc}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return BackendError(f"{what}: permission denied")
    return BackendError(f"{what}: {exc.strerror or exc}")
