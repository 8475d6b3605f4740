"""A JSON call through pytest-jupyter's ``jp_fetch`` with chosen credentials (tests)."""

from __future__ import annotations

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
