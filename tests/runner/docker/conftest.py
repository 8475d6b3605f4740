"""Fixtures for the docker backend tests: a reachable dockerd and the images of .ci/images.sh.

Without a daemon (or the images) these tests skip; under KOHAKURIVER_REQUIRE_INTEGRATION=1
they fail. Every container a test creates carries its own node label and is removed after.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from docker_helpers import BUSYBOX, PYTHON

from kohakuriver_lab.runner.backends.docker import DockerBackend
from kohakuriver_lab.testing.integration import missing

_nodes = itertools.count()


@pytest.fixture(scope="session")
def docker_api() -> Iterator[Any]:
    """A low-level client of the test daemon (skip or fail without one or its images)."""
    try:
        import docker
    except ImportError:
        missing("the docker SDK is not installed (pip install -e .[docker])")
    try:
        api = docker.APIClient(version="auto", timeout=30, **docker.utils.kwargs_from_env())
        api.ping()
    except Exception as exc:
        missing(f"no reachable Docker daemon ({exc}); see .ci/docker.sh")
    for image in (BUSYBOX, PYTHON):
        try:
            api.inspect_image(image)
        except docker.errors.ImageNotFound:
            missing(f"test image {image} missing: run bash .ci/images.sh")
    yield api
    api.close()


@pytest.fixture
def node(docker_api: Any) -> Iterator[str]:
    """A node name of this test's own; its containers are removed afterwards."""
    name = f"test-{os.getpid()}-{next(_nodes)}"
    yield name
    rows = docker_api.containers(all=True, filters={"label": f"kohakuriver.node={name}"})
    for row in rows:
        docker_api.remove_container(row["Id"], force=True)


@pytest.fixture
def make_backend(state_dir: Path, node: str) -> Callable[..., DockerBackend]:
    """``make_backend(**options)``: a docker backend on the test's state dir and node."""

    def make(state: Path | None = None, **options: Any) -> DockerBackend:
        return DockerBackend(state_dir=state or state_dir, node=node, options=options)

    return make
