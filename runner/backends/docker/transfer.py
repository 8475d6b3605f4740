"""Moving environment images between a node and the host, over HTTP, checksummed.

- :meth:`ImageTransfer.ensure` (a task needs ``kohakuriver/{name}:{tag}``): when the local
  image is absent or has another ID, download the version's tarball from the host (runner
  token), check its size and SHA-256, ``docker load`` it and check the loaded image ID.
  Concurrent calls for one image share one download.
- :meth:`ImageTransfer.upload` (an ``env_commit``): ``docker save`` to a temp file (hashing as
  it goes), then ``PUT`` it to the host with the checksum, which the host verifies.

Blocking: call from threads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx

from kohakuriver_lab.protocol import ImageFetch
from kohakuriver_lab.runner.backends.base import HostLink
from kohakuriver_lab.runner.backends.docker.engine import Engine
from kohakuriver_lab.runner.backends.docker.errors import ImageExportError, ImageImportError

CHUNK = 1 << 20
SHA256_HEADER = "X-Content-SHA256"
TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class ImageTransfer:
    """Downloads and uploads of environment images for one node."""

    def __init__(self, engine: Engine, tmp_dir: Path, log: logging.Logger) -> None:
        self.engine = engine
        self.tmp_dir = tmp_dir
        self.log = log
        self.host: HostLink | None = None
        self.downloads = 0
        """Tarballs downloaded by this runner (tests and logs)."""
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _client(self) -> httpx.Client:
        if self.host is None:
            raise ImageImportError("this runner has no host link to fetch images over")
        return httpx.Client(
            base_url=self.host.url if self.host.url.endswith("/") else self.host.url + "/",
            verify=self.host.ssl_context if self.host.ssl_context is not None else True,
            timeout=TIMEOUT,
        )

    def _lock(self, image: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(image, threading.Lock())

    # ===== download =====

    def ensure(self, image: str, fetch: ImageFetch) -> bool:
        """Make ``image`` present as ``fetch.image_id``; whether a download was needed."""
        with self._lock(image):
            if self.engine.image_id(image) == fetch.image_id:
                return False
            started = time.monotonic()
            path = self._download(image, fetch)
            try:
                with open(path, "rb") as fh:
                    self.engine.load(fh)
            finally:
                path.unlink(missing_ok=True)
            loaded = self.engine.image_id(image)
            if loaded != fetch.image_id:
                raise ImageImportError(
                    f"the tarball of {image} loaded as {loaded}, expected {fetch.image_id}"
                )
            self.downloads += 1
            self.log.info(
                "fetched %s from the host: %d bytes, SHA-256 ok, %.1f s",
                image,
                fetch.size,
                time.monotonic() - started,
            )
            return True

    def _download(self, image: str, fetch: ImageFetch) -> Path:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="fetch-", suffix=".tar", dir=self.tmp_dir)
        path = Path(name)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out, self._client() as client:
                token = self.host.token if self.host is not None else ""
                headers = {"Authorization": f"Bearer {token}"}
                with client.stream("GET", fetch.path, headers=headers) as response:
                    if response.status_code != 200:
                        response.read()
                        raise ImageImportError(
                            f"cannot download {image} from the host: HTTP "
                            f"{response.status_code} {_message(response)}"
                        )
                    for chunk in response.iter_bytes(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
        except httpx.HTTPError as exc:
            path.unlink(missing_ok=True)
            raise ImageImportError(f"cannot download {image} from the host: {exc}") from exc
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if size != fetch.size or digest.hexdigest() != fetch.sha256:
            path.unlink(missing_ok=True)
            raise ImageImportError(
                f"download of {image} is corrupted: {size} bytes with SHA-256 "
                f"{digest.hexdigest()}, expected {fetch.size} bytes with {fetch.sha256}"
            )
        return path

    # ===== upload =====

    def upload(self, image: str, path: str, token: str) -> dict[str, object]:
        """``docker save`` the image and ``PUT`` it to the host; size and SHA-256."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="save-", suffix=".tar", dir=self.tmp_dir)
        tar = Path(name)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.engine.save(image):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            sha256 = digest.hexdigest()
            headers = {
                "Authorization": f"Upload {token}",
                SHA256_HEADER: sha256,
                "Content-Type": "application/x-tar",
                "Content-Length": str(size),
            }
            with open(tar, "rb") as body, self._client() as client:
                response = client.put(path, content=_chunks(body), headers=headers)
            if response.status_code != 200:
                raise ImageExportError(
                    f"the host refused the upload of {image}: HTTP {response.status_code} "
                    f"{_message(response)}"
                )
        except httpx.HTTPError as exc:
            raise ImageExportError(f"cannot upload {image} to the host: {exc}") from exc
        finally:
            tar.unlink(missing_ok=True)
        return {"size": size, "sha256": sha256}


def _chunks(body: IO[bytes]) -> Iterator[bytes]:
    while True:
        chunk = body.read(CHUNK)
        if not chunk:
            return
        yield chunk


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", ""))
    except ValueError:
        return response.text[:200]
