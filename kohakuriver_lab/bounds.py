"""Static bounds of request fields: sizes, indices, environment variables, working
directories. Every integer a request carries is bounded here, so none can overflow a
database column, a float conversion or the scheduler's arithmetic (400, never 500)."""

from __future__ import annotations

import posixpath
import re

MAX_MEMORY = 1 << 60
"""1 EiB: far above any node, far below a BIGINT."""
MIN_MEMORY = 4 << 20
"""4 MiB: below it no interpreter starts (the task would die ``killed_oom`` at once)."""
MAX_GPU_INDEX = 1023
MAX_NUMA_NODE = 1023
MAX_COUNTER = 2**31 - 1
"""Progress counters of a notebook job (cells)."""

ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""Used with ``fullmatch``: ``re.match("...$")`` would accept ``"FOO\\n"``."""
MAX_ENV_VARS = 1024
MAX_ENV_KEY_CHARS = 256
MAX_ENV_VALUE_BYTES = 128 * 1024
"""Linux refuses a single environment string over 128 KiB (``MAX_ARG_STRLEN``)."""
MAX_ENV_BYTES = 1024 * 1024
MAX_WORKDIR_CHARS = 4096
"""Linux ``PATH_MAX``."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_env(env: dict[str, str]) -> dict[str, str]:
    """Environment variables of a task: POSIX-style names (full match), bounded values."""
    if len(env) > MAX_ENV_VARS:
        raise ValueError(f"at most {MAX_ENV_VARS} environment variables")
    total = 0
    for key, value in env.items():
        if len(key) > MAX_ENV_KEY_CHARS or not ENV_KEY.fullmatch(key):
            raise ValueError(
                f"invalid environment variable name {key[:80]!r}: letters, digits and '_', "
                f"not starting with a digit (at most {MAX_ENV_KEY_CHARS} characters)"
            )
        if "\x00" in value:
            raise ValueError(f"environment variable {key} contains a NUL byte")
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_ENV_VALUE_BYTES:
            raise ValueError(f"environment variable {key} is over {MAX_ENV_VALUE_BYTES} bytes")
        total += len(key) + 1 + size
    if total > MAX_ENV_BYTES:
        raise ValueError(f"the environment is over {MAX_ENV_BYTES} bytes in all")
    return env


def check_workdir(path: str | None) -> str | None:
    """A working directory: absolute, no ``..`` segment, no control characters, at most
    :data:`MAX_WORKDIR_CHARS`; returned normalized (``//`` and ``.`` segments dropped).

    Where a task may run is the node's policy; the host only refuses malformed paths."""
    if path is None:
        return None
    if len(path) > MAX_WORKDIR_CHARS:
        raise ValueError(f"workdir is longer than {MAX_WORKDIR_CHARS} characters")
    if _CONTROL.search(path):
        raise ValueError("workdir must not contain NUL or control characters")
    if not path.startswith("/"):
        raise ValueError("workdir must be an absolute path")
    if ".." in path.split("/"):
        raise ValueError("workdir must not contain '..' segments")
    normalized = posixpath.normpath(path)
    return "/" + normalized.lstrip("/")  # normpath keeps a leading '//'


def check_memory(size: int) -> int:
    """A memory size in bytes: :data:`MIN_MEMORY` .. :data:`MAX_MEMORY`."""
    if size <= 0:
        raise ValueError("memory must be positive")
    if size < MIN_MEMORY:
        raise ValueError(
            f"memory must be at least {MIN_MEMORY} bytes (4 MiB, e.g. '4M'); got {size} bytes"
        )
    if size > MAX_MEMORY:
        raise ValueError(f"memory must be at most {MAX_MEMORY} bytes (1 EiB)")
    return size


def check_gpu_index(index: int) -> int:
    """A GPU index: 0 .. :data:`MAX_GPU_INDEX`."""
    if not 0 <= index <= MAX_GPU_INDEX:
        raise ValueError(f"GPU indices must be between 0 and {MAX_GPU_INDEX}")
    return index
