"""The error hierarchy shared by every side of kohakuriver-lab.

Domain code raises these; the host translates them into HTTP statuses in exactly one place
(``kohakuriver_lab.server.handlers.base``), and the client turns HTTP errors back into them.
"""

from __future__ import annotations


class KohakuRiverError(Exception):
    """Root of every kohakuriver-lab error."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(KohakuRiverError):
    """The request is malformed or can never be satisfied (400)."""

    status_code = 400


class Unauthorized(KohakuRiverError):
    """No valid credentials (401)."""

    status_code = 401


class Forbidden(KohakuRiverError):
    """Valid credentials without the right to do this (403)."""

    status_code = 403


class NotFound(KohakuRiverError):
    """The named task, node or token does not exist (404)."""

    status_code = 404


class Conflict(KohakuRiverError):
    """The request does not fit the object's current state (409), e.g. pausing a pending task."""

    status_code = 409


class TooLarge(KohakuRiverError):
    """A body, a file or a stored total over a configured size limit (413)."""

    status_code = 413


class TooManyRequests(KohakuRiverError):
    """Too many attempts from one address (or in all) in a short time, e.g. logins (429)."""

    status_code = 429


class RunnerUnavailable(KohakuRiverError):
    """The node that holds the task is not connected right now (409)."""

    status_code = 409


class RunnerRequestFailed(KohakuRiverError):
    """A node tried and could not do what was asked, e.g. a missing base image (422)."""

    status_code = 422


ERRORS_BY_STATUS: dict[int, type[KohakuRiverError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    422: RunnerRequestFailed,
    429: TooManyRequests,
}
