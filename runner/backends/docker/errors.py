"""The ``DockerError`` hierarchy (seed names), rooted in the runner's :class:`BackendError`.

Docker SDK exceptions become these in exactly one place: :func:`engine.translate`.
"""

from __future__ import annotations

from kohakuriver_lab.runner.errors import BackendError, TaskNotFound


class DockerError(BackendError):
    """Docker could not do what was asked."""


class DockerConnectionError(DockerError):
    """The Docker daemon cannot be reached."""

    status_code = 503


class ContainerNotFoundError(DockerError, TaskNotFound):
    """No such container."""

    status_code = 404


class ContainerCreationError(DockerError):
    """A container could not be created or started."""


class ContainerExecutionError(DockerError):
    """A command inside a container failed."""


class ImageNotFoundError(DockerError):
    """The image is not present on this node (and may not be pulled)."""

    status_code = 404


class ImageBuildError(DockerError):
    """An image could not be built or committed."""


class ImageExportError(DockerError):
    """An image could not be saved to a tarball."""


class ImageImportError(DockerError):
    """An image tarball could not be loaded."""


class ResourceAllocationError(DockerError):
    """Docker refused the requested resources (cores, memory, GPUs)."""
