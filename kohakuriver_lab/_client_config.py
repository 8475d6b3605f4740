"""Where the client finds the host: arguments, then environment, then a config file."""

from __future__ import annotations

import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from kohakuriver_lab.errors import KohakuRiverError

URL_ENV = "KOHAKURIVER_URL"
TOKEN_ENV = "KOHAKURIVER_TOKEN"
CONFIG_ENV = "KOHAKURIVER_CONFIG"
CA_FILE_ENV = "KOHAKURIVER_CA_FILE"


API_TOKEN_PREFIX = "kra_"
"""Personal API tokens start with this (see ``server/users.py``)."""


class ClientConfigError(KohakuRiverError):
    """The client does not know which host to talk to, or its config file is unreadable."""


@dataclass(frozen=True)
class ClientConfig:
    """A resolved host address: the Jupyter server's base URL (ending in ``/``) and a token."""

    url: str
    token: str | None
    ca_file: str | None = None
    """PEM bundle of the CAs to trust for an ``https://`` host (None: the default ones)."""

    @property
    def api_url(self) -> str:
        """Base of the REST API, ending in ``/``."""
        return f"{self.url}kohakuriver/api/"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context trusting :attr:`ca_file`; None when there is none (the defaults)."""
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None

    def ws_ssl(self, url: str) -> ssl.SSLContext | None:
        """The ``ssl`` argument of a WebSocket ``connect`` to ``url`` (None for ``ws://``)."""
        return self.ssl_context() if url.startswith("wss:") else None

    def auth_headers(self) -> dict[str, str]:
        """``Authorization`` for the token: a personal API token (``kra_...``) as ``Bearer``,
        a Jupyter server token as ``token``."""
        if not self.token:
            return {}
        scheme = "Bearer" if self.token.startswith(API_TOKEN_PREFIX) else "token"
        return {"Authorization": f"{scheme} {self.token}"}


def config_path() -> Path:
    """The client config file: ``$KOHAKURIVER_CONFIG`` or ``~/.config/kohakuriver/client.json``."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "kohakuriver" / "client.json"


def _read_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClientConfigError(f"cannot read client config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ClientConfigError(f"client config {path} must be a JSON object with 'url', 'token'")
    keys = ("url", "token", "ca_file")
    return {k: v for k, v in data.items() if k in keys and isinstance(v, str) and v}


def resolve_config(
    url: str | None = None, token: str | None = None, ca_file: str | None = None
) -> ClientConfig:
    """Resolve each setting from the argument, else its environment variable, else the file."""
    url = url or os.environ.get(URL_ENV) or None
    token = token or os.environ.get(TOKEN_ENV) or None
    ca_file = ca_file or os.environ.get(CA_FILE_ENV) or None
    if url is None or token is None:  # the file's ca_file goes with its host
        path = config_path()
        stored = _read_file(path)
        url = url or stored.get("url")
        token = token or stored.get("token")
        ca_file = ca_file or stored.get("ca_file")
    if not url:
        raise ClientConfigError(
            "no kohakuriver host configured: pass url=..., set "
            f"{URL_ENV} (and {TOKEN_ENV}), or write {config_path()} "
            'as {"url": "http://host:8888/", "token": "..."}'
        )
    if not url.startswith(("http://", "https://")):
        raise ClientConfigError(f"host URL must start with http:// or https://, got {url!r}")
    if ca_file is not None:
        ca_file = os.path.expanduser(ca_file)
        if not os.path.isfile(ca_file):
            raise ClientConfigError(f"CA file {ca_file} (trusted for the host's TLS) not found")
    return ClientConfig(url=url if url.endswith("/") else url + "/", token=token, ca_file=ca_file)
