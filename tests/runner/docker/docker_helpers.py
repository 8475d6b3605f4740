"""Names shared by the docker backend tests (importable: conftest puts this dir on sys.path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from kohakuriver_lab.runner.backends.docker import DockerBackend

BUSYBOX = "kohakuriver-test/busybox"
PYTHON = "kohakuriver-test/python"

MakeBackend = Callable[..., DockerBackend]


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (fail after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
