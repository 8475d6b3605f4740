"""Which backends this machine can offer its embedded runner: ``local`` always, ``docker``
when a Docker daemon answers a ping."""

from __future__ import annotations

import importlib
from typing import Any

PROBE_TIMEOUT = 2.0
"""Seconds a ping to dockerd may take before Docker counts as absent."""


def probe_docker(timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """``(True, "Docker 24.0.7")`` when dockerd answers (``$DOCKER_HOST`` or its socket),
    else ``(False, why not)``."""
    try:
        docker: Any = importlib.import_module("docker")
    except ImportError:
        return False, "the docker package is not installed (pip install 'kohakuriver-lab[docker]')"
    try:
        api = docker.APIClient(timeout=timeout, **docker.utils.kwargs_from_env())
        try:
            api.ping()
            version = api.version().get("Version", "?")
        finally:
            api.close()
    except Exception as exc:
        return False, f"no Docker daemon answers ({str(exc)[:200]})"
    return True, f"Docker {version}"


def embedded_backends(timeout: float = PROBE_TIMEOUT) -> tuple[str, str]:
    """The ``--backend`` value for an embedded runner and the reason, for the log."""
    found, detail = probe_docker(timeout)
    if found:
        return "docker,local", f"{detail} answers: tasks with an image run in containers"
    return "local", f"{detail}: local processes only"
