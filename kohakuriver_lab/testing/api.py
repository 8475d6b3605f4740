"""Test helpers for the host's API: a JSON call through pytest-jupyter's ``jp_fetch`` with
chosen credentials, waiting for a task's status, a one-cell parameterized notebook."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any


async def api_call(
    fetch: Callable[..., Awaitable[Any]],
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any = None,
) -> tuple[int, Any]:
    """``(status, JSON body or text)`` of ``method /kohakuriver/api{path}``; never raises for
    an HTTP error status. ``headers={}`` sends the server token (``jp_fetch``'s default)."""
    from tornado.httpclient import HTTPClientError

    parts = ["kohakuriver", "api", *path.strip("/").split("/")]
    kwargs: dict[str, Any] = {"method": method, "headers": headers}
    if method in ("POST", "PUT", "PATCH"):
        kwargs["body"] = json.dumps(body if body is not None else {})
    try:
        response = await fetch(*parts, **kwargs)
    except HTTPClientError as exc:
        text = exc.response.body.decode() if exc.response and exc.response.body else ""
        return exc.code, (json.loads(text) if text.startswith("{") else text)
    text = response.body.decode() if response.body else ""
    return int(response.code), (json.loads(text) if text.startswith(("{", "[")) else text)


async def wait_status(
    api: Any, task_id: str, wanted: set[str], timeout: float = 5.0
) -> dict[str, Any]:
    """Poll ``api.get(f"tasks/{task_id}")`` until the task's status is one of ``wanted``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        task = await api.get(f"tasks/{task_id}")
        if task["status"] in wanted:
            return task  # type: ignore[no-any-return]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"task {task_id} is {task['status']}, wanted {wanted}: {task}")
        await asyncio.sleep(0.02)


def parameterized_notebook() -> dict[str, Any]:
    """A notebook of one code cell tagged ``parameters`` (``alpha = 1``)."""
    cell: dict[str, Any] = {
        "cell_type": "code",
        "id": "a1",
        "metadata": {"tags": ["parameters"]},
        "source": "alpha = 1",
        "outputs": [],
        "execution_count": None,
    }
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]}
