"""Request bodies read only once the caller may send one, and only up to a limit.

Tornado buffers a whole body before a handler runs, unless the handler streams it
(``@tornado.web.stream_request_body``): then ``prepare()`` runs on the headers alone, the
per-request ``set_max_body_size`` applies, and the body arrives through ``data_received``.
:class:`BoundedBodyMixin` uses that for every kohakuriver route: ``prepare`` refuses an
unauthenticated body (``body_allowed``) and a declared ``Content-Length`` over the
handler's limit (413) before any body byte is accepted; the body is then collected up to
the limit (a chunked body is cut off at it, 413). The server-wide
``ServerApp.max_body_size`` stays as it is: the host may run inside a user's JupyterLab,
whose contents uploads need it.
"""

from __future__ import annotations

from typing import Any

from tornado.httputil import HTTPInputError, HTTPServerRequest

from kohakuriver_lab.errors import InvalidRequest, KohakuRiverError, TooLarge

BACKSTOP = 1024 * 1024
"""Slack over a handler's limit for tornado's own cut-off (chunked bodies are refused by
``data_received`` at the limit first, with a 413 and a message)."""


def declared_length(request: Any) -> int | None:
    """The request's ``Content-Length`` (``None`` without one; 400 when unreadable)."""
    raw = request.headers.get("Content-Length")
    if raw is None:
        return None
    text = raw.split(",")[0].strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise InvalidRequest("Content-Length must be a number of bytes")
    return int(text)


def has_body(request: Any) -> bool:
    """Whether the request says a body follows."""
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        return True
    length = declared_length(request)
    return bool(length)


class BoundedBodyMixin:
    """Streams request bodies into memory after the checks above; :meth:`request_body`
    returns the body (and parses form bodies into the request's arguments)."""

    request: HTTPServerRequest
    _finished: bool
    _body_chunks: list[bytes] | None = None
    _body_received = 0
    _body_limit: tuple[int, str] = (0, "")
    _body_ready = False

    def body_limit(self) -> tuple[int, str]:
        """The largest body this request may have, and the setting that says so."""
        raise NotImplementedError

    async def body_allowed(self) -> None:
        """Raise when this caller may not send a body (the default: anyone may)."""

    async def check_body(self) -> None:
        """Refuse, on the headers alone, bodies this request may not have."""
        if has_body(self.request):
            await self.body_allowed()
        limit, setting = self._body_limit = self.body_limit()
        length = declared_length(self.request)
        if length is not None and length > limit:
            raise TooLarge(
                f"request body of {length} bytes is over the limit of {limit} bytes ({setting})"
            )
        self.request.connection.set_max_body_size(limit + BACKSTOP)  # type: ignore[union-attr]
        await self.begin_body(length)

    async def begin_body(self, length: int | None) -> None:
        """Get ready to receive a body (the default: collect it in memory)."""
        self._body_chunks = []

    def consume(self, chunk: bytes) -> None:
        """Take one piece of the body (the default: keep it)."""
        assert self._body_chunks is not None
        self._body_chunks.append(chunk)

    def data_received(self, chunk: bytes) -> None:
        """Tornado's streaming hook: count, bound and consume the body."""
        if self._finished:
            return
        self._body_received += len(chunk)
        limit, setting = self._body_limit
        try:
            if self._body_received > limit:
                raise TooLarge(
                    f"request body is over the limit of {limit} bytes ({setting}); refused "
                    f"after {self._body_received} bytes"
                )
            self.consume(chunk)
        except KohakuRiverError as exc:
            self._body_chunks = None
            self.body_refused()
            self.body_error(exc)

    def body_refused(self) -> None:
        """Called when the body is refused midway (drop what was taken)."""

    def body_error(self, exc: KohakuRiverError) -> None:
        """Answer a refusal that came while the body was arriving."""
        self._handle_request_exception(exc)  # type: ignore[attr-defined]

    def request_body(self) -> bytes:
        """The whole body, once received (``b""`` when there was none)."""
        if not self._body_ready:
            self._body_ready = True
            self.request.body = b"".join(self._body_chunks or [])
            self._body_chunks = None
            try:  # form fields into body_arguments, as tornado does
                self.request._parse_body()
            except HTTPInputError as exc:  # e.g. multipart/form-data without a boundary
                raise InvalidRequest(f"request body: {exc}") from None
        return self.request.body
