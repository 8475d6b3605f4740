"""The ``docker`` runner backend (entry point ``kohakuriver_lab.runner_backends:docker``)."""

from kohakuriver_lab.runner.backends.docker.backend import DockerBackend

__all__ = ["DockerBackend"]
