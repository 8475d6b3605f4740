"""Skip-or-fail rules for integration tests.

On a laptop without a daemon an integration test skips; under ``.ci/run``
(``KOHAKURIVER_REQUIRE_INTEGRATION=1``) the same absence fails the run.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_ENV = "KOHAKURIVER_REQUIRE_INTEGRATION"


def integration_required() -> bool:
    """Whether missing daemons must fail tests instead of skipping them."""
    return os.environ.get(REQUIRE_ENV) == "1"


def missing(reason: str) -> None:
    """Skip the current test, or fail it when integration is required."""
    if integration_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: a missing daemon is a failure, not a skip)")
    pytest.skip(reason)


def memory_cgroup_writable() -> bool:
    """Whether this process may create a memory-limited cgroup (v1 or v2)."""
    from kohakuriver_lab.runner.cgroups import TaskCgroups

    group = TaskCgroups.create(f"probe-{os.getpid()}", 64 << 20)
    try:
        return group.memory_limited
    finally:
        group.remove()


def require_cgroups() -> None:
    """Skip (or fail under CI) without a writable memory cgroup."""
    if not memory_cgroup_writable():
        missing("no writable memory cgroup on this machine")
