"""The README's JupyterHub recipe, for real: a JupyterHub on loopback (DummyAuthenticator,
configurable-http-proxy) runs the host as a Hub service with the README's two configuration
blocks (taken from the README itself, only ports, paths and admin names filled in). Hub users
log in at the Hub and reach the host through the Hub's OAuth, behind the member gate and the
KohakuRiver Authorizer.

Needs ``jupyterhub`` (the test extra) and ``configurable-http-proxy`` (npm) on PATH; skips
without them, fails instead under KOHAKURIVER_REQUIRE_INTEGRATION=1.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import BIN, _child_env, free_port, terminate

from kohakuriver_lab.testing.browser import fetch_status, launch, require_browser
from kohakuriver_lab.testing.integration import missing

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

README = Path(__file__).resolve().parents[2] / "README.md"
PASSWORD = "hub-test-password"
SERVICE = "/services/kohakuriver/"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "browser" / "screenshots"


def recipe_blocks() -> tuple[str, str]:
    """The README's ``jupyterhub_config.py`` and host ``jupyter_server_config.py`` blocks."""
    text = README.read_text()
    section = text[text.index("**JupyterHub instead of passwords.**") :]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    hub, host = blocks[0], blocks[1]
    assert "c.JupyterHub.services" in hub and "HubMembers" in host, "README recipe moved"
    return hub, host


class Hub:
    """``jupyterhub`` with the recipe's service, on free loopback ports, in ``workdir``."""

    def __init__(self, workdir: Path, proxy: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "jupyterhub.log"
        service_port = free_port()
        hub_recipe, host_recipe = recipe_blocks()
        hub_recipe = hub_recipe.replace("http://127.0.0.1:8888", f"http://127.0.0.1:{service_port}")
        hub_recipe = hub_recipe.replace(
            '["jupyter", "lab", "--config=/etc/kohakuriver/jupyter_server_config.py"]',
            repr([str(BIN / "jupyter"), "lab", f"--config={workdir / 'host_config.py'}"]),
        )
        assert str(service_port) in hub_recipe and str(BIN) in hub_recipe, hub_recipe
        host_recipe = host_recipe.replace(
            "c.ServerApp.port = 8888", f"c.ServerApp.port = {service_port}"
        )
        assert str(service_port) in host_recipe, host_recipe
        (workdir / "host-root").mkdir()
        (workdir / "host-root" / "secret.txt").write_text("the host's file\n")
        (workdir / "host_config.py").write_text(
            host_recipe
            + f"""
# the test's own: loopback, a data dir of its own, root in a container
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.allow_root = True
c.ServerApp.open_browser = False
c.ServerApp.port_retries = 0
c.ServerApp.root_dir = {str(workdir / "host-root")!r}
c.ClusterHostApp.data_dir = {str(workdir / "host-data")!r}
c.LabApp.user_settings_dir = {str(workdir / "lab-settings")!r}  # not the user's ~/.jupyter
c.LabApp.workspaces_dir = {str(workdir / "lab-workspaces")!r}
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
"""
        )
        (workdir / "jupyterhub_config.py").write_text(
            f"""
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {self.port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {free_port()}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.JupyterHub.db_url = "sqlite:///{workdir / "hub.sqlite"}"
c.JupyterHub.cookie_secret_file = {str(workdir / "cookie_secret")!r}
c.JupyterHub.pid_file = {str(workdir / "hub.pid")!r}
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {PASSWORD!r}
c.Authenticator.allowed_users = {{"ada", "bob", "carol"}}
c.JupyterHub.load_groups = {{"lab": {{"users": ["ada", "bob"]}}}}  # carol is not in the lab
"""
            + hub_recipe
        )
        self.process = subprocess.Popen(
            [str(BIN / "jupyterhub"), "-f", str(workdir / "jupyterhub_config.py")],
            cwd=workdir,
            stdout=open(self.log_path, "ab"),  # noqa: SIM115  closed with the process
            stderr=subprocess.STDOUT,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 90.0) -> Hub:
        """Until the Hub answers and the service (the host) is up behind the proxy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyterhub exited: {self.log_path.read_text()[-4000:]}")
            try:
                # the service's own login redirect means the host answers behind the proxy
                r = httpx.get(f"{self.url}{SERVICE}lab", timeout=5)
                if r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["location"]:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"hub or service did not start: {self.log_path.read_text()[-4000:]}")

    def login(self, name: str) -> httpx.Client:
        """A cookie-keeping browser logged in at the Hub as ``name``."""
        browser = httpx.Client(base_url=self.url, follow_redirects=True, timeout=20)
        form = browser.get("/hub/login")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form.text)
        assert xsrf, form.text[:2000]
        data = {"username": name, "password": PASSWORD, "_xsrf": xsrf.group(1)}
        done = browser.post("/hub/login", data=data, follow_redirects=False)
        assert done.status_code == 302, (done.status_code, done.text[:500])
        return browser

    def stop(self) -> None:
        terminate(self.process, timeout=30)  # on SIGTERM the Hub stops its service and proxy


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One Hub (and host behind it) for the module's tests: each test logs in afresh."""
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        missing("no jupyterhub (pip install -e .[test])")
    proxy = shutil.which("configurable-http-proxy")
    if proxy is None:
        missing("no configurable-http-proxy (npm install -g configurable-http-proxy)")
    hub = Hub(tmp_path_factory.mktemp("jupyterhub"), proxy)
    try:
        yield hub.wait_ready()
    finally:
        hub.stop()


def open_lab(browser: httpx.Client) -> httpx.Response:
    """The host's JupyterLab through the Hub's OAuth (authorize, callback, back to /lab)."""
    return browser.get(f"{SERVICE}lab")


def page_token(page: httpx.Response) -> str:
    """The token the lab page gives its frontend (``""``: none, the browser uses its cookie)."""
    found = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                      page.text, flags=re.S)  # fmt: skip
    assert found, page.text[:1000]
    return str(json.loads(found.group(1)).get("token") or "")


def xsrf(browser: httpx.Client) -> dict[str, str]:
    """The header a browser's write carries: the ``_xsrf`` cookie the lab page set."""
    open_lab(browser)
    cookies = [c for c in browser.cookies.jar if c.name == "_xsrf" and c.path.startswith(SERVICE)]
    assert len(cookies) == 1, [(c.name, c.path) for c in browser.cookies.jar]
    return {"X-XSRFToken": str(cookies[0].value)}


def test_hub_users_reach_the_cluster_with_their_hub_login(hub: Hub) -> None:
    ada = hub.login("ada")  # a cluster admin by UserDirectory.admin_users
    page = open_lab(ada)
    assert page.status_code == 200 and "kohakuriver" in page.text, page.text[:500]
    assert any("/oauth_callback" in str(r.url) for r in page.history), page.history
    me = ada.get(f"{SERVICE}kohakuriver/api/me")
    assert me.status_code == 200, me.text
    assert (me.json()["username"], me.json()["role"]) == ("ada", "admin")
    assert ada.get(f"{SERVICE}api/kernels").status_code == 200  # the host's admin

    bob = hub.login("bob")  # in the lab group, not a cluster admin: joins as viewer
    assert open_lab(bob).status_code == 200  # the panel lives in /lab
    me = bob.get(f"{SERVICE}kohakuriver/api/me")
    assert me.status_code == 200, me.text
    assert (me.json()["username"], me.json()["role"]) == ("bob", "viewer")
    assert bob.get(f"{SERVICE}kohakuriver/api/tasks").status_code == 200
    never = ("api/kernels", "api/contents/secret.txt", "api/terminals", "files/secret.txt",
             "nbconvert/html/secret.txt", "api/sessions")  # fmt: skip
    for path in never:  # never the host itself
        assert bob.get(f"{SERVICE}{path}").status_code == 403, path
    assert ada.get(f"{SERVICE}files/secret.txt").text == "the host's file\n"
    # JupyterLab's own handlers never ask the Authorizer: the member gate refuses their
    # writes (a browser's write: the login cookie and the page's XSRF token)
    theme = f"{SERVICE}lab/api/settings/@jupyterlab/apputils-extension:themes"
    write = {"raw": '{"theme": "JupyterLab Dark"}'}
    assert bob.get(theme).status_code == 200  # the page reads its settings
    assert bob.put(theme, json=write, headers=xsrf(bob)).status_code == 403
    assert ada.put(theme, json=write, headers=xsrf(ada)).status_code == 204
    # the lab page hands a member's browser no token (it uses its cookie); an admin's gets one
    assert page_token(open_lab(bob)) == ""
    assert page_token(open_lab(ada))
    users = ada.get(f"{SERVICE}kohakuriver/api/users").json()
    assert {u["username"]: u["role"] for u in users["users"]}["bob"] == "viewer"

    carol = hub.login("carol")  # a Hub user outside the group the service role names
    assert open_lab(carol).status_code == 403
    # the service never got credentials of hers: to its API she is unauthenticated (JSON 401
    # with WWW-Authenticate, docs/api.md "Errors"), like a caller with no cookie at all
    for caller in (carol, httpx.Client(base_url=hub.url, timeout=10)):
        refused = caller.get(f"{SERVICE}kohakuriver/api/me")
        assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers
        assert refused.json()["message"]


def test_a_hub_member_gets_the_panel_in_a_browser(hub: Hub) -> None:
    """Chromium logs in at the Hub and lands, through OAuth, in the host's JupyterLab with the
    cluster panel live and signed in as the Hub user; the page holds no token (the browser
    uses its cookie) and the host's kernels, contents and files stay closed."""
    require_browser()
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{hub.url}/hub/login?next={SERVICE}lab")
            page.fill("input[name=username]", "bob")
            page.fill("input[name=password]", PASSWORD)
            page.click("[type=submit]")
            page.wait_for_selector('.lm-TabBar-tab[data-id="kohakuriver-panel"]', timeout=60_000)
            assert page.url.startswith(f"{hub.url}{SERVICE}lab"), page.url
            page.click('.lm-TabBar-tab[data-id="kohakuriver-panel"]')
            page.wait_for_selector('#kohakuriver-panel .kr-Live[data-state="live"]')
            panel = page.locator("#kohakuriver-panel")
            panel.get_by_text("Signed in as").wait_for()
            assert "Signed in as bob (viewer)" in panel.inner_text()
            page.screenshot(path=str(SCREENSHOTS / "hub-member.png"))
            config = page.evaluate(
                "JSON.parse(document.getElementById('jupyter-config-data').textContent)"
            )
            assert not config.get("token"), "a member's page must not carry a token"

            def status(method: str, path: str) -> int:
                return fetch_status(page, method, f"{SERVICE}{path}")

            assert status("GET", "kohakuriver/api/me") == 200
            assert status("GET", "kohakuriver/api/tasks") == 200
            for method, path in [
                ("GET", "api/contents"),
                ("GET", "files/secret.txt"),
                ("POST", "api/kernels"),
                ("POST", "api/terminals"),
            ]:
                assert status(method, path) == 403, (method, path)
            assert not [e for e in errors if "kohakuriver" in e.lower()], errors
        finally:
            browser.close()
