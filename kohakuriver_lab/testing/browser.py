"""Headless Chromium for the panel's browser tests (Playwright's sync API, the system Chromium)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from .integration import missing

CHROMIUM = os.environ.get("KOHAKURIVER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def labextension_installed() -> bool:
    """Whether this Python's JupyterLab has the built kohakuriver-lab labextension."""
    return (Path(sys.prefix) / "share/jupyter/labextensions/kohakuriver-lab/package.json").exists()


def require_browser() -> None:
    """Skip (or fail under CI) without Chromium, Playwright or the built labextension."""
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        missing("no Chromium (apt-get install chromium chromium-driver)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("no Playwright (pip install -e .[test])")
    if not labextension_installed():
        missing("the kohakuriver-lab labextension is not installed (pip install -e .)")


def launch(playwright: Any) -> Any:
    """A headless Chromium from a ``sync_playwright()`` context."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


_FETCH_STATUS = """async ([method, path]) => {
    const xsrf = document.cookie.match(/_xsrf=([^;]+)/);
    const r = await fetch(path, {method, headers: {
        'X-XSRFToken': xsrf ? decodeURIComponent(xsrf[1]) : ''}});
    return r.status;
}"""


def fetch_status(page: Any, method: str, path: str) -> int:
    """The status of ``fetch(path)`` from the page, sent as its JupyterLab would (the login
    cookie and the ``_xsrf`` cookie as ``X-XSRFToken``)."""
    return int(page.evaluate(_FETCH_STATUS, [method, path]))
