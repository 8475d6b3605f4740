"""``kohakuriver_lab.glue(name, value)``: record a result from inside a job.

In a task (``KOHAKURIVER_TASK_TOKEN`` set by the host, in scripts and in notebook jobs'
kernels alike) the value is posted to ``tasks/{id}/results``; ``task.result()`` and
``%kohaku result ID`` read it back. Outside a job it only warns, so a notebook that glues
still runs interactively.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

__all__ = ["GlueWarning", "glue"]

MAX_VALUE_BYTES = 1 << 20


class GlueWarning(UserWarning):
    """``glue`` was called outside a kohakuriver job; nothing was recorded."""


def glue(name: str, value: Any) -> bool:
    """Record ``value`` (JSON-serializable) as the job's result ``name``; same name overwrites.

    Returns True when recorded, False (with a :class:`GlueWarning`) outside a job.
    """
    if not isinstance(name, str) or not name or len(name) > 200:
        raise ValueError("a result name is a non-empty string of at most 200 characters")
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"glue({name!r}, ...) needs a JSON-serializable value (numbers, strings, lists, "
            f"dicts; no NaN): {exc}"
        ) from None
    if len(encoded) > MAX_VALUE_BYTES:
        raise ValueError(f"glue({name!r}, ...): the value is larger than 1 MiB as JSON")
    token = os.environ.get("KOHAKURIVER_TASK_TOKEN")
    task_id = os.environ.get("KOHAKURIVER_TASK_ID")
    url = os.environ.get("KOHAKURIVER_URL")
    if not (token and task_id and url):
        warnings.warn(
            f"kohakuriver_lab.glue({name!r}): not running inside a kohakuriver job, "
            "so the result is not recorded",
            GlueWarning,
            stacklevel=2,
        )
        return False
    from kohakuriver_lab import _http as api
    from kohakuriver_lab.nbjob import HostLink

    link = HostLink(url, task_id, token, retry_for=60)
    try:
        link.run(api.post_result(task_id, name, json.loads(encoded)))
    finally:
        link.close()
    return True
