"""A lab member logs in to the host's JupyterLab (KohakuRiver identity provider and Authorizer)
in Chromium: the login form works, the page and the cluster panel load, the server token is
nowhere in the page, and the host's kernels, files and terminals stay closed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from kohakuriver_lab.testing.browser import fetch_status, launch, require_browser

from .conftest import SCREENSHOTS

TOKEN = "owner-token-for-the-member-login-test"
PASSWORD = "correct horse battery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``jupyter lab`` with password login and the Authorizer; a member ``alice`` (user)."""
    require_browser()
    root = tmp_path_factory.mktemp("member-login")
    (root / "nb").mkdir()
    (root / "nb" / "secret.txt").write_text("the owner's file")
    port = _free_port()
    env = dict(os.environ)
    env["JUPYTERLAB_SETTINGS_DIR"] = str(root / "user-settings")
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(root / "workspaces")
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root / 'nb'}",
        "--ServerApp.identity_provider_class="
        "kohakuriver_lab.server.identity.KohakuRiverIdentityProvider",
        "--ServerApp.authorizer_class=kohakuriver_lab.server.authorizer.KohakuRiverAuthorizer",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--ClusterHostApp.embedded_runner=True", f"--ClusterHostApp.data_dir={root / 'host'}",
        "--EmbeddedRunner.backend=local",  # not whatever Docker this machine has
    ]  # fmt: skip
    log_path = root / "lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    owner = {"Authorization": f"token {TOKEN}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(url + "kohakuriver/api/nodes", headers=owner).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        invitation = httpx.post(
            url + "kohakuriver/api/invitations", headers=owner, json={"role": "user"}
        ).json()
        registered = httpx.post(
            url + "kohakuriver/register",
            json={"token": invitation["token"], "username": "alice", "password": PASSWORD},
        )
        assert registered.status_code == 201, registered.text
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


def test_a_member_gets_the_panel_and_nothing_else(host: str) -> None:
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(host + "lab")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector('.lm-TabBar-tab[data-id="kohakuriver-panel"]', timeout=60_000)
            assert TOKEN not in page.content()
            page.click('.lm-TabBar-tab[data-id="kohakuriver-panel"]')
            panel = page.locator("#kohakuriver-panel")
            panel.locator("[data-node]").first.wait_for(timeout=30_000)  # the embedded node
            page.wait_for_selector('#kohakuriver-panel .kr-Live[data-state="live"]')
            page.screenshot(path=str(SCREENSHOTS / "member-login.png"))

            def status(method: str, path: str) -> int:
                return fetch_status(page, method, path)

            assert status("GET", "/kohakuriver/api/me") == 200
            for method, path in [
                ("GET", "/api/contents"),
                ("GET", "/files/secret.txt"),
                ("POST", "/api/kernels"),
                ("POST", "/api/terminals"),
            ]:
                assert status(method, path) == 403, (method, path)
            assert not [e for e in errors if "kohakuriver" in e.lower()], errors
        finally:
            browser.close()
