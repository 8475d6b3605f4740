"""Login to the host for lab members: invitations, registration, Jupyter's login form with the
KohakuRiver identity provider, and the Authorizer that keeps members to the cluster."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import httpx
import pytest
from sqlalchemy import update

from kohakuriver_lab.errors import TooManyRequests
from kohakuriver_lab.models import ApiTokenCreate, Role, UserCreate
from kohakuriver_lab.server.db.orm import Invitation, User
from kohakuriver_lab.server.passwords import verify_password
from kohakuriver_lab.server.throttle import Throttle
from kohakuriver_lab.server.users import host_owner
from kohakuriver_lab.testing.api import api_call as call

Fetch = Callable[..., Awaitable[Any]]
PASSWORD = "correct horse battery"


@pytest.fixture
def host_config() -> dict[str, Any]:
    """The host with JupyterLab, terminals, password login and the Authorizer."""
    return {
        "ServerApp": {
            "jpserver_extensions": {
                "kohakuriver_lab": True,
                "jupyterlab": True,
                "jupyter_server_terminals": True,
            },
            "identity_provider_class": (
                "kohakuriver_lab.server.identity.KohakuRiverIdentityProvider"
            ),
            "authorizer_class": "kohakuriver_lab.server.authorizer.KohakuRiverAuthorizer",
        },
        "KohakuRiverIdentityProvider": {"login_attempts_per_minute": 50},
    }


class Browser:
    """A cookie-keeping HTTP client against the test server (no credentials but cookies)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if method not in ("GET", "HEAD") and "_xsrf" in self.cookies:
            sent["X-XSRFToken"] = self.cookies["_xsrf"]
        async with httpx.AsyncClient(timeout=20) as client:
            response = await client.request(
                method, self.base + path, data=form, json=json_body, headers=sent
            )
        for header in response.headers.get_list("set-cookie"):
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel.value:  # an empty value clears the cookie
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return response

    async def login(self, username: str, password: str) -> httpx.Response:
        """Jupyter's login form: GET it (XSRF cookie and field), POST it."""
        page = await self.request("GET", "login")
        assert page.status_code == 200 and "name='username'" in page.text, page.text
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        assert xsrf is not None
        form = {"_xsrf": xsrf.group(1), "username": username, "password": password}
        next_url = quote(urlparse(self.base).path + "kohakuriver/api/me", safe="")
        return await self.request("POST", f"login?next={next_url}", form=form)


@pytest.fixture
def admin(jp_fetch: Fetch, started_host: Any) -> Callable[..., Awaitable[tuple[int, Any]]]:
    """API calls with the server token (the host's owner)."""

    async def api(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await call(jp_fetch, method, path, {}, body)

    return api


async def invite(admin: Any, **body: Any) -> dict[str, Any]:
    status, info = await admin("POST", "/invitations", body)
    assert status == 201, info
    return info  # type: ignore[no-any-return]


async def register(
    browser: Browser, token: str, username: str, password: str = PASSWORD
) -> httpx.Response:
    """The registration form, as a browser posts it."""
    page = await browser.request("GET", f"kohakuriver/register?token={token}")
    assert page.status_code == 200 and "Join the cluster" in page.text
    assert f"value='{token}'" in page.text  # the form carries the invitation
    form = {"token": token, "username": username, "password": password, "password2": password}
    return await browser.request("POST", "kohakuriver/register", form=form)


async def test_member_registers_logs_in_and_uses_only_the_cluster(
    admin: Any, host_url: str, services: Any, started_host: Any, jp_fetch: Fetch
) -> None:
    server_token = started_host.identity_provider.token
    info = await invite(admin, role="user", groups=["vision"], max_uses=1, expires_in_hours=24)
    assert info["token"].startswith("kri_") and info["role"] == "user"
    assert info["url"] == f"{host_url}kohakuriver/register?token={info['token']}"
    assert info["max_uses"] == 1 and info["uses"] == 0 and info["expires_at"] > time.time()

    # the member registers through the form and logs in through Jupyter's login form
    alice = Browser(host_url)
    created = await register(alice, info["token"], "alice")
    assert created.status_code == 201 and "alice (user)" in created.text, created.text
    with services.db() as session:
        row = session.get(User, "alice")
        assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash
        assert verify_password(row.password_hash, PASSWORD) and row.groups == ["vision"]
    response = await alice.login("alice", PASSWORD)
    assert response.status_code == 302, response.text
    assert response.headers["Location"].endswith("kohakuriver/api/me")
    assert any(name.startswith("username-") for name in alice.cookies)

    # the cluster: who am I, submit a task
    me = await alice.request("GET", "kohakuriver/api/me")
    assert me.status_code == 200, me.text
    assert me.json() == {
        "username": "alice",
        "role": "user",
        "groups": ["vision"],
        "scopes": None,
        "via": "jupyter",
    }
    submitted = await alice.request(
        "POST", "kohakuriver/api/tasks", json_body={"command": ["true"]}
    )
    assert submitted.status_code == 201, submitted.text
    task = await alice.request("GET", f"kohakuriver/api/tasks/{submitted.json()['task_ids'][0]}")
    assert task.json()["owner"] == "alice"
    assert (await alice.request("GET", "kohakuriver/api/users")).status_code == 403  # a user

    # ... and nothing of the host's Jupyter server beyond what the lab page needs
    for method, path in [
        ("GET", "api/kernels"),
        ("POST", "api/kernels"),
        ("GET", "api/kernelspecs"),
        ("GET", "api/contents"),
        ("PUT", "api/contents/evil.py"),
        ("GET", "api/terminals"),
        ("POST", "api/terminals"),
        ("GET", "api/sessions"),
        ("POST", "api/sessions"),
        ("PATCH", "api/config/notebook"),
        ("GET", "api/nbconvert"),
        ("POST", "nbconvert/html"),
        ("GET", "files/secret.txt"),
        ("POST", "api/shutdown"),
        ("POST", "lab/api/extensions"),  # pip install: JupyterLab never asks the Authorizer
        ("GET", "lab/api/extensions"),
        ("POST", "lab/api/plugins"),
        ("POST", "lab/api/build"),
        ("PUT", "lab/api/settings/@jupyterlab/apputils-extension:themes"),
        ("PUT", "lab/api/workspaces/default"),
    ]:
        body = {"raw": "{}"} if method == "PUT" and "settings" in path else {}
        refused = await alice.request(method, path, json_body=body if method != "GET" else None)
        assert refused.status_code == 403, (method, path, refused.status_code, refused.text)
    for path in ["lab", "lab/api/settings", "api/me", "api/status", "api/config/notebook"]:
        page = await alice.request("GET", path)
        assert page.status_code == 200, (path, page.status_code)
        assert server_token not in page.text, path  # JupyterLab's page config holds it
    lab = await alice.request("GET", "lab")
    assert '"token": ""' in lab.text and "jupyter-config-data" in lab.text
    missing = await alice.request("GET", "no/such/page")  # Jupyter's pages embed the token
    assert missing.status_code == 404 and server_token not in missing.text

    # the owner keeps the whole server with the token
    kernel_response = await jp_fetch(
        "api", "kernels", method="POST", body=json.dumps({"name": "python3"})
    )
    assert kernel_response.code == 201
    kernel_id = json.loads(kernel_response.body)["id"]
    assert (await jp_fetch("api", "kernels", kernel_id, method="DELETE")).code == 204
    assert (await jp_fetch("api", "contents")).code == 200
    owner_page = await jp_fetch("lab")
    assert owner_page.code == 200 and server_token in owner_page.body.decode()  # hers only

    # logging out ends the session; a deactivated member is out at once
    out = await alice.request("GET", "logout")
    assert out.status_code == 200 and server_token not in out.text
    assert (await alice.request("GET", "kohakuriver/api/me")).status_code == 401  # no session
    assert (await alice.login("alice", PASSWORD)).status_code == 302
    status, _ = await admin("PATCH", "/users/alice", {"active": False})
    assert status == 200
    # her session no longer identifies anyone: unauthenticated (401), as after the logout
    assert (await alice.request("GET", "kohakuriver/api/me")).status_code == 401
    assert (await Browser(host_url).login("alice", PASSWORD)).status_code == 401


async def test_wrong_passwords_and_the_audit_log(admin: Any, host_url: str) -> None:
    info = await invite(admin, role="viewer", max_uses=2)
    bob = Browser(host_url)
    assert (await register(bob, info["token"], "bob")).status_code == 201
    wrong = await bob.login("bob", "not the password")
    assert wrong.status_code == 401 and "Invalid user name or password" in wrong.text
    assert not any(name.startswith("username-") for name in bob.cookies)
    assert (await bob.login("nobody", PASSWORD)).status_code == 401
    assert (await bob.login("bob", PASSWORD)).status_code == 302
    me = await bob.request("GET", "kohakuriver/api/me")
    assert me.json()["role"] == "viewer"
    refused = await bob.request("POST", "kohakuriver/api/tasks", json_body={"command": ["true"]})
    assert refused.status_code == 403 and "user role" in refused.json()["message"]

    status, audit = await admin("GET", "/audit")
    assert status == 200
    events = [(e["action"], e["actor"], e["target"]) for e in audit["events"]]
    invitation = f"invitation:{info['invitation_id']}"
    assert ("invitation.created", host_owner(), invitation) in events
    assert ("invitation.used", "bob", invitation) in events
    assert ("login", "bob", "bob") in events
    assert ("login.failed", "anonymous", "bob") in events
    assert ("login.failed", "anonymous", "nobody") in events
    failed = [e for e in audit["events"] if e["action"] == "login.failed"]
    assert all(e["address"] == "127.0.0.1" for e in failed)
    text = json.dumps(audit)
    assert info["token"] not in text and PASSWORD not in text and "not the password" not in text


@pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
async def test_invitations_are_hashed_limited_and_refused_when_spent(
    admin: Any, host_url: str, services: Any, jp_fetch: Fetch, tmp_path: Path, db_backend: str
) -> None:
    info = await invite(admin, role="user", max_uses=2)
    token = info["token"]
    with services.db() as session:
        row = session.get(Invitation, int(info["invitation_id"]))
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in json.dumps({c.name: getattr(row, c.name) for c in row.__table__.c})
    if db_backend == "sqlite":  # nowhere in the database files either
        for path in tmp_path.glob("cluster.db*"):
            assert token.encode() not in path.read_bytes(), path

    # JSON registration; names are unique and the owner's name is never free
    browser = Browser(host_url)
    body = {"token": token, "username": "carol", "password": PASSWORD}
    created = await browser.request("POST", "kohakuriver/register", json_body=body)
    assert created.status_code == 201 and created.json()["role"] == "user", created.text
    again = await browser.request("POST", "kohakuriver/register", json_body=body)
    assert again.status_code == 409 and "taken" in again.json()["message"]
    owner = {**body, "username": host_owner()}
    if re.fullmatch(r"[a-z][a-z0-9._-]{0,63}", host_owner()):
        assert (
            await browser.request("POST", "kohakuriver/register", json_body=owner)
        ).status_code == 409
    short = {**body, "username": "dave", "password": "short"}
    response = await browser.request("POST", "kohakuriver/register", json_body=short)
    assert response.status_code == 400 and "password" in response.json()["message"]
    mismatch = await browser.request(
        "POST",
        "kohakuriver/register",
        form={"token": token, "username": "dave", "password": PASSWORD, "password2": "x" * 12},
    )
    assert mismatch.status_code == 400 and "differ" in mismatch.text
    assert "value='dave'" in mismatch.text  # the form comes back filled in

    # the second (last) use; then it is used up, and the failed tries counted nothing
    assert (await register(browser, token, "dave")).status_code == 201
    spent = await register(browser, token, "erin")
    assert spent.status_code == 403 and "used up" in spent.text
    with services.db() as session:
        assert session.get(Invitation, int(info["invitation_id"])).uses == 2

    # expired
    old = await invite(admin)
    with services.db() as session:
        session.execute(
            update(Invitation)
            .where(Invitation.invitation_id == int(old["invitation_id"]))
            .values(expires_at=time.time() - 1)
        )
        session.commit()
    body = {"token": old["token"], "username": "frank", "password": PASSWORD}
    expired = await browser.request("POST", "kohakuriver/register", json_body=body)
    assert expired.status_code == 403 and "expired" in expired.json()["message"]

    # revoked (admins only)
    revoked = await invite(admin)
    status, _ = await admin("DELETE", f"/invitations/{revoked['invitation_id']}")
    assert status == 204
    body = {"token": revoked["token"], "username": "frank", "password": PASSWORD}
    refused = await browser.request("POST", "kohakuriver/register", json_body=body)
    assert refused.status_code == 403 and "revoked" in refused.json()["message"]
    bogus = {**body, "token": "kri_" + "x" * 40}
    refused = await browser.request("POST", "kohakuriver/register", json_body=bogus)
    assert refused.status_code == 403 and "not valid" in refused.json()["message"]
    with services.db() as session:
        assert session.get(User, "frank") is None

    # the list (admins) shows no secrets
    status, listing = await admin("GET", "/invitations")
    assert status == 200 and len(listing["invitations"]) == 3
    assert all(i["token"] is None and i["url"] is None for i in listing["invitations"])
    assert [i["revoked"] for i in listing["invitations"]] == [True, False, False]

    # operators invite viewers only, and neither list nor revoke
    admin_caller = services.users.caller(host_owner())
    services.users.create(UserCreate(username="otto", role=Role.OPERATOR), admin_caller)
    secret = services.api_tokens.create(admin_caller, ApiTokenCreate(name="t", username="otto"))
    otto = {"Authorization": f"Bearer {secret.token}"}
    status, body = await call(jp_fetch, "POST", "/invitations", otto, {"role": "user"})
    assert status == 403 and "viewers only" in body["message"]
    status, body = await call(jp_fetch, "POST", "/invitations", otto, {"role": "viewer"})
    assert status == 201 and body["role"] == "viewer" and body["created_by"] == "otto"
    assert (await call(jp_fetch, "GET", "/invitations", otto, None))[0] == 403
    path = f"/invitations/{body['invitation_id']}"
    assert (await call(jp_fetch, "DELETE", path, otto, None))[0] == 403

    events = services.audit.list_events(action="invitation.revoked")
    assert [e.target for e in events] == [f"invitation:{revoked['invitation_id']}"]


async def test_logins_and_registrations_are_rate_limited(host_url: str, started_host: Any) -> None:
    started_host.identity_provider.throttle.per_key = 2
    browser = Browser(host_url)
    assert (await browser.login("zoe", "wrong password 1")).status_code == 401
    assert (await browser.login("zoe", "wrong password 2")).status_code == 401
    throttled = await browser.login("zoe", "wrong password 3")
    assert throttled.status_code == 429 and "too many login attempts" in throttled.text

    services = started_host.web_app.settings["kohakuriver_services"]
    services.invitations.throttle.per_key = 1
    body = {"token": "kri_" + "y" * 40, "username": "zoe", "password": PASSWORD}
    first = await browser.request("POST", "kohakuriver/register", json_body=body)
    assert first.status_code == 403
    second = await browser.request("POST", "kohakuriver/register", json_body=body)
    assert second.status_code == 429 and "too many" in second.json()["message"]


def test_throttle_windows() -> None:
    throttle = Throttle(per_key=2, total=3, max_keys=2)
    throttle.attempt("a", now=0)
    throttle.attempt("a", now=1)
    with pytest.raises(TooManyRequests):
        throttle.attempt("a", now=2)
    throttle.attempt("b", now=2)
    with pytest.raises(TooManyRequests, match="try again"):
        throttle.attempt("c", now=3)  # 3 in all this minute
    throttle.attempt("a", now=61)  # a new window
    throttle.attempt("c", now=62)
    throttle.attempt("d", now=62)  # memory stays bounded
    assert len(throttle._windows) <= 2


def test_openapi_documents_the_public_routes() -> None:
    from kohakuriver_lab.server.openapi import openapi_document
    from kohakuriver_lab.server.routes import PUBLIC_ROUTES

    paths = openapi_document()["paths"]
    for pattern, handler in PUBLIC_ROUTES:
        methods = {m for m in ("get", "post", "put", "patch", "delete") if m in vars(handler)}
        assert set(paths[pattern]) == methods
        assert all(paths[pattern][m]["security"] == [] for m in methods)
