"""The panel's multi-user views in a real Chromium against the real host: API tokens, users,
quotas, the "approvals required" setting, the audit log, the approval queue, role gating for
a ``user`` member (the panel acting as them through their API token), redacted tasks, the
Docker VPS detail and the Environments view (on a fake docker node that answers the host's
orders). Runs after ``test_panel.py`` on the same ``jupyter lab`` (session fixture).

Screenshots, light and dark: ``access``, ``approvals``, ``environments``, ``vps-detail``,
``task-redacted``, ``sidebar-member`` in ``tests/browser/screenshots/``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from kohakuriver_lab.protocol import (
    Ack,
    EnvCommit,
    EnvCreate,
    EnvExec,
    EnvRemove,
    KillTask,
    Snapshot,
    StartTask,
    TaskState,
)

from .conftest import SCREENSHOTS, open_page, run, submit_with_dialog
from .test_panel import CONTRAST_JS, wait_status

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

MEMBER = "erin"
DOCKER_NODE = "vps-node"
IMAGE = "kohakuriver-test/vps:latest"
SSH_PORT = 22022
HIDDEN = "details hidden (not your task)"


# =============================================================================
# A fake docker node: VPS ports and snapshots, environments that run argvs and commit
# =============================================================================


class DockerNode:
    """A fake node with the docker backend. A started VPS reports an SSH port; ``stop``
    orders end it ``stopped`` (after a snapshot when asked); snapshot orders list, create
    and delete; environment orders are acknowledged, exec records the argv it got and
    commit uploads a small tarball to the host as a real node does."""

    def __init__(self, lab: Any) -> None:
        self.lab = lab
        self.snaps: dict[int, list[dict[str, Any]]] = {}
        self.execs: list[list[str]] = []
        self.kills: list[KillTask] = []
        self.snapshot_orders: list[Snapshot] = []
        self._pending: set[asyncio.Future[Any]] = set()
        self.runner = lab.add_runner(
            DOCKER_NODE, cores=8, backends=("docker",), images=(IMAGE,), auto_finish=False
        )
        self.runner.on_message = self._on_message

    def _on_message(self, message: Any) -> None:  # called on the runner's loop
        future = asyncio.ensure_future(self._handle(message))
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def _snapshot(self, task_id: int, tag: str) -> dict[str, Any]:
        return {
            "tag": tag,
            "image": f"kohakuriver-vps-{task_id}:{tag}",
            "created": time.time(),
            "size": 734 << 20,
        }

    async def _handle(self, message: Any) -> None:
        runner = self.runner
        if isinstance(message, StartTask):
            task_id = message.task.task_id
            runner.finished.add(task_id)  # keep the fake's own kill reply out of the way
            if message.task.task_type == "vps":
                self.snaps.setdefault(task_id, [self._snapshot(task_id, "base")])
                await runner.send(TaskState(task_id=task_id, state="running", ssh_port=SSH_PORT))
        elif isinstance(message, KillTask):
            self.kills.append(message)
            if message.stop and message.snapshot:
                self.snaps.setdefault(message.task_id, []).append(
                    self._snapshot(message.task_id, f"stop-{len(self.kills)}")
                )
            state = "stopped" if message.stop else "killed"
            await runner.send(TaskState(task_id=message.task_id, state=state, exit_code=0))
        elif isinstance(message, Snapshot):
            self.snapshot_orders.append(message)
            snaps = self.snaps.setdefault(message.task_id, [])
            if message.action == "create":
                snaps.append(self._snapshot(message.task_id, f"snap-{len(snaps)}"))
            elif message.action == "delete":
                snaps[:] = [s for s in snaps if s["tag"] != message.tag]
            await runner.send(Ack(order_id=message.order_id, result={"snapshots": snaps}))
        elif isinstance(message, EnvCreate | EnvRemove):
            await runner.send(Ack(order_id=message.order_id))
        elif isinstance(message, EnvExec):
            self.execs.append(list(message.command))
            result = {
                "exit_code": 0,
                "stdout": "Successfully installed numpy-1.26.4\n",
                "stderr": "WARNING: running pip as root\n",
                "truncated": False,
                "timed_out": False,
            }
            await runner.send(Ack(order_id=message.order_id, result=result))
        elif isinstance(message, EnvCommit):
            data = b"fake docker save output " * 64
            digest = await asyncio.to_thread(self._upload, message, data)
            result = {"image": f"kohakuriver/{message.name}:{message.tag}",
                      "image_id": "sha256:" + "ab" * 32, "size": len(data), "sha256": digest}  # fmt: skip
            await runner.send(Ack(order_id=message.order_id, result=result))

    def _upload(self, order: EnvCommit, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        req = urllib.request.Request(
            f"{self.lab.url}/{order.upload_path.lstrip('/')}",
            data=data,
            method="PUT",
            headers={"Authorization": f"Upload {order.upload_token}",
                     "X-Content-SHA256": digest, "Content-Type": "application/x-tar"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
        return digest


# =============================================================================
# Fixtures and helpers
# =============================================================================


@pytest.fixture(scope="module")
def admin(lab: Any, browser: Any) -> Iterator[Any]:
    """The host owner's page (an admin), in a workspace of its own."""
    pg = open_page(browser, lab, workspace="kr-access-admin")
    yield pg
    pg.context.close()


@pytest.fixture(scope="module")
def member(lab: Any, browser: Any) -> Iterator[Any]:
    """A page whose panel acts as ``erin``, a member with the ``user`` role (API token)."""
    try:
        lab.api("POST", "users", {"username": MEMBER, "role": "user", "groups": ["ml"]})
    except urllib.error.HTTPError as exc:
        assert exc.code == 409, exc
        lab.api("PATCH", f"users/{MEMBER}", {"role": "user", "active": True})
    secret = lab.api("POST", "tokens", {"name": "browser-test", "username": MEMBER})["token"]
    pg = open_page(browser, lab, workspace="kr-access-member", bearer=secret)
    pg.member_token = secret  # type: ignore[attr-defined]
    yield pg
    pg.context.close()


@pytest.fixture(scope="module")
def docker(lab: Any) -> DockerNode:
    node = DockerNode(lab)
    deadline = time.monotonic() + 20
    while not any(
        n["name"] == DOCKER_NODE and n["status"] == "online"
        for n in lab.api("GET", "nodes")["nodes"]
    ):
        assert time.monotonic() < deadline, "the fake docker node did not come online"
        time.sleep(0.2)
    return node


def set_theme(page: Any, dark: bool) -> None:
    run(page, "apputils:change-theme", {"theme": "JupyterLab Dark" if dark else "JupyterLab Light"})
    want = "false" if dark else "true"
    page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{want}'", timeout=20_000)
    page.wait_for_timeout(400)


def shots(page: Any, name: str, contrast: Sequence[str] = ()) -> None:
    """Screenshots in the light and the dark theme; text of ``contrast`` (selectors present
    on the page) must meet WCAG AA (4.5:1) in the dark theme."""
    page.wait_for_timeout(150)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-light.png"))
    set_theme(page, dark=True)
    try:
        page.screenshot(path=str(SCREENSHOTS / f"{name}-dark.png"))
        ratios = page.evaluate(CONTRAST_JS, list(contrast)) if contrast else []
    finally:
        set_theme(page, dark=False)
    missing = [sel for sel, r in ratios if r < 0]
    low = [(sel, round(r, 2)) for sel, r in ratios if 0 <= r < 4.5]
    assert not missing, f"not on the page: {missing}"
    assert not low, f"text below WCAG AA contrast in the dark theme: {low}"


def show_sidebar(page: Any) -> None:
    if not page.is_visible("#kohakuriver-panel"):
        page.click('.lm-TabBar-tab[data-id="kohakuriver-panel"]')
    page.wait_for_selector("#kohakuriver-panel", state="visible")


def toolbar(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all(
            "#kohakuriver-panel .kr-Toolbar[role=toolbar] button",
            "bs => bs.filter(b => b.offsetParent !== null).map(b => b.textContent.trim())",
        )
    )


def enabled(page: Any, command: str) -> bool:
    return bool(page.evaluate("(c) => window.jupyterapp.commands.isEnabled(c)", command))


def http_status(call: Any) -> int:
    try:
        call()
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    return 200


# =============================================================================
# Admin: tokens, users, quotas, settings, audit
# =============================================================================


def test_admin_sees_every_view(lab: Any, admin: Any) -> None:
    show_sidebar(admin)
    admin.wait_for_selector('#kohakuriver-panel [data-kr="who"]:has-text("(admin)")')
    assert toolbar(admin) == ["Submit…", "Tasks", "Nodes", "Envs", "Access", "Admin"]
    for command in ("kohakuriver:submit-task", "kohakuriver:open-environments",
                    "kohakuriver:open-approvals", "kohakuriver:open-admin"):  # fmt: skip
        assert enabled(admin, command), command


def test_api_token_secret_shown_once(lab: Any, admin: Any) -> None:
    admin.click('#kohakuriver-panel button:has-text("Access")')
    view = "#kohakuriver-access"
    admin.wait_for_selector(f'{view} [data-kr="whoami"]:has-text("role admin")')
    tokens = f'{view} [data-section="tokens"]'
    admin.fill("#kr-apitoken-name", "ci-readonly")
    admin.check("#kr-apitoken-scope-read")
    admin.select_option("#kr-apitoken-expiry", "30")
    admin.click(f'{tokens} button:has-text("Create token")')
    secret_el = admin.locator(f'{tokens} [data-kr="new-api-token"]')
    secret_el.wait_for()
    secret = secret_el.inner_text()
    assert secret.startswith("kra_") and len(secret) > 30
    assert "not shown again" in admin.inner_text(f"{tokens} .kr-NewToken")
    assert admin.evaluate("() => document.activeElement.dataset.kr") == "new-api-token"
    row = admin.locator(f"{tokens} tr", has_text="ci-readonly")
    row.wait_for()
    assert "read" in row.inner_text() and "active" in row.inner_text()
    # the secret works, with the scope and the expiry asked for
    me = lab.api("GET", "me", bearer=secret)
    assert me["scopes"] == ["read"] and me["via"] == "api-token" and me["role"] == "admin"
    listed = [t for t in lab.api("GET", "tokens")["tokens"] if t["name"] == "ci-readonly"]
    assert listed and listed[0]["token"] is None  # the list never has secrets
    assert 29 * 86400 < listed[0]["expires_at"] - time.time() <= 30 * 86400
    admin.click(f'{tokens} .kr-NewToken button:has-text("Copy")')
    admin.click(f'{tokens} .kr-NewToken button:has-text("Hide")')
    assert admin.locator(f'{tokens} [data-kr="new-api-token"]').count() == 0
    assert secret not in admin.inner_text(view)  # shown once: gone from the page
    # revoke: the row says so and the secret stops working
    row.locator('button:has-text("Revoke")').click()
    admin.click('.jp-Dialog-button:has-text("Revoke")')
    admin.wait_for_function(
        "() => [...document.querySelectorAll('#kohakuriver-access [data-section=\"tokens\"] tr')]"
        ".some(r => r.textContent.includes('ci-readonly') && r.textContent.includes('revoked'))"
    )
    assert http_status(lambda: lab.api("GET", "me", bearer=secret)) == 401


def test_users_quotas_settings_and_audit(lab: Any, admin: Any) -> None:
    view = "#kohakuriver-access"
    # ----- users: add, change role, deactivate -----
    users = f'{view} [data-section="users"]'
    admin.fill("#kr-user-name", "frank")
    admin.select_option("#kr-user-role", "operator")
    admin.fill("#kr-user-groups", "ml, cv")
    admin.click(f'{users} button:has-text("Add user")')
    row = f'{users} tr[data-user="frank"]'
    admin.wait_for_selector(row)
    assert admin.input_value(f'{row} select[data-field="role"]') == "operator"
    assert admin.input_value(f'{row} input[data-field="groups"]') == "ml, cv"
    assert admin.is_disabled(f'{row} button:has-text("Save")')
    admin.select_option(f'{row} select[data-field="role"]', "user")
    admin.uncheck(f'{row} input[data-field="active"]')
    admin.click(f'{row} button:has-text("Save")')
    deadline = time.monotonic() + 10
    while (info := lab.api("GET", "users/frank"))["role"] != "user" or info["active"]:
        assert time.monotonic() < deadline, info
        time.sleep(0.2)
    assert info["groups"] == ["ml", "cv"]
    admin.wait_for_selector(f"{row}.kr-mod-inactive")
    # a bad group name is refused here, at its field, before asking the host
    admin.fill(f'{row} input[data-field="groups"]', "ml, bad/name")
    admin.click(f'{row} button:has-text("Save")')
    admin.wait_for_selector(f'{users} .kr-Error:has-text("bad/name")')
    assert admin.get_attribute(f'{row} input[data-field="groups"]', "aria-invalid") == "true"
    admin.fill(f'{row} input[data-field="groups"]', "ml, cv")  # corrected: the error goes
    assert not admin.is_visible(f"{users} .kr-Error")
    assert admin.get_attribute(f'{row} input[data-field="groups"]', "aria-invalid") is None
    assert admin.input_value("#kr-user-role") == "user"  # the add form is reset
    # ----- quotas: add, edit, refuse a bad value, delete -----
    quotas = f'{view} [data-section="quotas"]'
    admin.select_option("#kr-quota-kind", "group")
    admin.fill("#kr-quota-name", "ml")
    admin.fill("#kr-quota-max_gpus", "2")
    admin.fill("#kr-quota-max_tasks", "5")
    admin.click(f'{quotas} button:has-text("Save quota")')
    qrow = f'{quotas} tr[data-quota="group:ml"]'
    admin.wait_for_selector(qrow)
    assert [c.strip() for c in admin.inner_text(qrow).split("\t")][:5] == [
        "group:ml", "2", "no limit", "5", "no limit"
    ]  # fmt: skip
    admin.click(f'{qrow} button:has-text("Edit")')
    assert admin.input_value("#kr-quota-name") == "ml"
    assert admin.input_value("#kr-quota-max_gpus") == "2"
    assert admin.evaluate("() => document.activeElement.id") == "kr-quota-name"
    admin.fill("#kr-quota-max_gpus", "3")
    admin.fill("#kr-quota-max_cores", "-1")
    admin.click(f'{quotas} button:has-text("Save quota")')
    admin.wait_for_selector(f'{quotas} .kr-Error:has-text("max_cores")')
    assert admin.get_attribute("#kr-quota-max_cores", "aria-invalid") == "true"
    admin.fill("#kr-quota-max_cores", "")
    admin.click(f'{quotas} button:has-text("Save quota")')
    admin.wait_for_selector(f"{qrow} td:nth-child(2):text-is('3')")
    saved = {q["subject"]: q for q in lab.api("GET", "quotas")["quotas"]}
    assert saved["group:ml"] == {"subject": "group:ml", "max_gpus": 3, "max_cores": None,
                                 "max_tasks": 5, "max_vps": None}  # fmt: skip
    admin.select_option("#kr-quota-kind", "user")
    admin.fill("#kr-quota-name", "frank")
    admin.fill("#kr-quota-max_vps", "1")
    admin.click(f'{quotas} button:has-text("Save quota")')
    frow = f'{quotas} tr[data-quota="user:frank"]'
    admin.wait_for_selector(frow)
    admin.click(f'{frow} button:has-text("Delete")')
    admin.click('.jp-Dialog-button:has-text("Delete")')
    admin.wait_for_selector(frow, state="detached")
    assert "user:frank" not in {q["subject"] for q in lab.api("GET", "quotas")["quotas"]}
    # ----- settings: approvals required -----
    assert lab.api("GET", "settings")["approvals_required"] is False
    admin.check("#kr-setting-approvals")
    deadline = time.monotonic() + 10
    while not lab.api("GET", "settings")["approvals_required"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # ----- audit log: newest first, filter by action -----
    audit = f'{view} [data-section="audit"]'
    admin.click(f'{audit} button:has-text("Refresh")')
    admin.wait_for_function(
        "() => document.querySelector('#kohakuriver-access [data-section=\"audit\"] tbody tr')"
        "?.dataset.action === 'settings.updated'"
    )
    rows = admin.eval_on_selector_all(
        f"{audit} tbody tr[data-event]", "rs => rs.map(r => [r.dataset.event, r.dataset.action])"
    )
    ids = [int(e) for e, _ in rows]
    assert ids == sorted(ids, reverse=True), "the audit log is newest first"
    actions = {a for _, a in rows}
    assert {"settings.updated", "quota.deleted", "quota.set", "user.updated", "user.created",
            "token.created", "token.revoked"} <= actions, actions  # fmt: skip
    assert admin.inner_text(f'{audit} [data-kr="audit-page"]') == "page 1"
    admin.fill("#kr-audit-action", "quota.set")
    admin.press("#kr-audit-action", "Enter")
    admin.wait_for_function(
        "() => { const rs = [...document.querySelectorAll('#kohakuriver-access [data-section=\"audit\"] tbody tr[data-event]')];"
        " return rs.length > 0 && rs.every(r => r.dataset.action === 'quota.set'); }"
    )
    admin.fill("#kr-audit-action", "")
    admin.press("#kr-audit-action", "Enter")
    admin.wait_for_selector(f'{audit} tbody tr[data-action="settings.updated"]')
    admin.evaluate("() => document.querySelector('#kohakuriver-access').scrollTop = 0")
    shots(
        admin,
        "access",
        [f"{view} .kr-Whoami strong", f"{users} td", f"{quotas} td", f"{audit} td.kr-Mono",
         f"{view} .kr-mod-danger", f"{view} .kr-Muted"],
    )  # fmt: skip


# =============================================================================
# A member with the user role: gated views, redacted tasks, approvals
# =============================================================================


def test_member_sees_only_what_a_user_may_use(lab: Any, member: Any) -> None:
    show_sidebar(member)
    member.wait_for_selector(f'#kohakuriver-panel [data-kr="who"]:has-text("{MEMBER} (user)")')
    assert toolbar(member) == ["Submit…", "Tasks", "Nodes", "Access"]
    assert enabled(member, "kohakuriver:submit-task")
    for command in ("kohakuriver:open-environments", "kohakuriver:open-approvals",
                    "kohakuriver:open-admin"):  # fmt: skip
        assert not enabled(member, command), command
    member.wait_for_timeout(200)
    member.screenshot(path=str(SCREENSHOTS / "sidebar-member-light.png"))
    run(member, "kohakuriver:open-access")
    member.wait_for_selector('#kohakuriver-access [data-kr="whoami"]:has-text("role user")')
    member.wait_for_selector('#kohakuriver-access [data-section="tokens"] tbody tr')
    sections = member.eval_on_selector_all(
        "#kohakuriver-access [data-section]", "ss => ss.map(s => s.dataset.section)"
    )
    assert sections == ["tokens"]  # no users, quotas, settings or audit log for a user
    assert "browser-test" in member.inner_text('#kohakuriver-access [data-section="tokens"]')


def test_someone_elses_task_is_redacted(lab: Any, member: Any) -> None:
    theirs = lab.api("GET", "tasks?owner=alice&limit=1")["tasks"][0]
    run(member, "kohakuriver:open-task", {"id": theirs["task_id"]})
    root = f"#kohakuriver-task-{theirs['task_id']}"
    member.wait_for_selector(f'{root}[data-redacted="true"]')
    assert HIDDEN in member.inner_text(f'{root} [data-kr="redacted"]')
    assert HIDDEN in member.inner_text(f'{root} dd[data-field="Command"]')
    assert "train.py" not in member.inner_text(root)  # the command never reaches the page
    buttons = member.eval_on_selector_all(
        f"{root} .kr-DetailHead ~ .kr-Toolbar button", "bs => bs.map(b => b.textContent.trim())"
    )
    assert buttons == ["Refresh"], buttons  # no kill, pause, resume, resubmit
    assert not member.is_visible(f"{root} .kr-LogSection")
    assert member.inner_text(f"{root} .kr-Info dd[data-field='Owner']") == "alice"
    shots(member, "task-redacted", [f"{root} .kr-Redacted", f"{root} .kr-Info dd"])


def test_member_task_waits_for_approval(lab: Any, member: Any, admin: Any) -> None:
    assert lab.api("GET", "settings")["approvals_required"] is True

    def fill() -> None:
        member.fill("#kr-submit-command", "echo approved-by-an-operator")
        member.fill("#kr-submit-name", "needs-approval")
        member.select_option("#kr-submit-targets", lab.embedded)

    closed = "() => !document.querySelector('.kr-SubmitForm')"
    submit_with_dialog(member, lab, fill, closed, "the member's submit should close the dialog")
    mine = lab.api("GET", f"tasks?owner={MEMBER}&limit=1")["tasks"][0]
    assert mine["name"] == "needs-approval" and mine["status"] == "pending_approval"
    task_id = mine["task_id"]
    # the member sees their own task in full, waiting, without an Approve button
    run(member, "kohakuriver:open-task", {"id": task_id})
    root = f"#kohakuriver-task-{task_id}"
    member.wait_for_selector(f'{root}[data-status="pending_approval"][data-redacted="false"]')
    assert "approv" in member.inner_text(f"{root} .kr-Pending")
    labels = member.eval_on_selector_all(
        f"{root} button", "bs => bs.map(b => b.textContent.trim())"
    )
    assert "Kill" in labels and "Approve" not in labels
    # the operator's side: the sidebar counts it, the Tasks view queues it
    show_sidebar(admin)
    badge = admin.locator('#kohakuriver-panel [data-kr="approvals"]')
    badge.wait_for()
    assert "awaiting approval" in badge.inner_text()
    badge.click()
    item = f'#kohakuriver-tasks .kr-ApprovalQueue li[data-task="{task_id}"]'
    admin.wait_for_selector(item)
    assert (
        admin.input_value('#kohakuriver-tasks select[aria-label="Filter by status"]')
        == "pending_approval"
    )
    admin.wait_for_selector(f'#kohakuriver-tasks tr[data-task="{task_id}"]')
    assert MEMBER in admin.inner_text(item)
    # a second one, to reject
    other = lab.api(
        "POST", "tasks", {"command": ["sleep", "1"], "name": "too-big", "targets": [lab.embedded]},
        bearer=member.member_token,
    )["task_ids"][0]  # fmt: skip
    reject_item = f'#kohakuriver-tasks .kr-ApprovalQueue li[data-task="{other}"]'
    admin.wait_for_selector(reject_item)
    admin.wait_for_selector('#kohakuriver-tasks [data-kr="approvals-count"]:has-text("2 tasks")')
    shots(
        admin,
        "approvals",
        ["#kohakuriver-tasks .kr-ApprovalQueue h3", "#kohakuriver-tasks .kr-ApprovalQueue .kr-mod-danger",
         "#kohakuriver-tasks .kr-ApprovalQueue .kr-TaskLink-label"],
    )  # fmt: skip
    # approve: it runs and completes
    admin.click(f'{item} button:has-text("Approve")')
    done = wait_status(lab, task_id, {"completed", "failed"})
    assert done["status"] == "completed", done
    admin.wait_for_selector(item, state="detached")
    member.wait_for_selector(f'{root}[data-status="completed"]', timeout=20_000)
    # reject with a reason (asked in a dialog; required)
    admin.click(f'{reject_item} button:has-text("Reject")')
    admin.wait_for_selector(".jp-Dialog input")
    admin.fill(".jp-Dialog input", "please use the small partition")
    admin.click(".jp-Dialog-button.jp-mod-accept")
    rejected = wait_status(lab, other, {"rejected"})
    assert "please use the small partition" in (rejected["reason"] or "")
    admin.wait_for_selector(reject_item, state="detached")
    admin.wait_for_selector('#kohakuriver-panel [data-kr="approvals"]', state="detached")
    run(member, "kohakuriver:open-task", {"id": other})
    member.wait_for_selector(f'#kohakuriver-task-{other}[data-status="rejected"]')
    assert "please use the small partition" in member.inner_text(
        f"#kohakuriver-task-{other} .kr-Pending"
    )
    # back to the default for what follows
    admin.click('#kohakuriver-panel button:has-text("Access")')
    admin.uncheck("#kr-setting-approvals")
    deadline = time.monotonic() + 10
    while lab.api("GET", "settings")["approvals_required"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)


# =============================================================================
# Docker VPS detail, Environments view (fake docker node)
# =============================================================================


def test_vps_detail_ssh_stop_start_snapshots(lab: Any, admin: Any, docker: DockerNode) -> None:
    body = {"task_type": "vps", "image": IMAGE, "generate_ssh_key": True, "name": "panel-vps",
            "targets": [DOCKER_NODE], "cores": 1}  # fmt: skip
    task_id = lab.api("POST", "tasks", body)["task_ids"][0]
    wait_status(lab, task_id, {"running"})
    deadline = time.monotonic() + 10
    while lab.api("GET", f"tasks/{task_id}")["ssh_port"] != SSH_PORT:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    run(admin, "kohakuriver:open-task", {"id": task_id})
    root = f"#kohakuriver-task-{task_id}"
    ssh = f'{root} [data-kr="ssh-command"]'
    admin.wait_for_selector(f'{ssh}:text-is("ssh -p {SSH_PORT} root@{DOCKER_NODE}")')
    assert admin.inner_text(f'{root} .kr-VpsSection dd[data-field="SSH port"]') == str(SSH_PORT)
    assert admin.is_visible(f'{root} .kr-VpsSection button:has-text("Copy")')
    admin.wait_for_selector(f'{root} tr[data-snapshot="base"]')
    admin.click(f'{root} button:has-text("Snapshot now")')
    admin.wait_for_selector(f'{root} tr[data-snapshot="snap-1"]')
    shots(
        admin,
        "vps-detail",
        [ssh, f"{root} .kr-SnapshotTable td", f"{root} .kr-VpsSection .kr-mod-danger"],
    )
    # stop with a snapshot first (the default), then start again
    assert admin.is_checked(f"#kr-vps-snapshot-{task_id}")
    admin.click(f'{root} .kr-VpsSection button:has-text("Stop")')
    admin.wait_for_selector(f'{root}[data-status="stopped"]', timeout=20_000)
    kill = docker.kills[-1]
    assert kill.task_id == int(task_id) and kill.stop and kill.snapshot
    admin.wait_for_selector(f'{root} tr[data-snapshot="stop-{len(docker.kills)}"]')
    assert not admin.is_visible(f'{root} .kr-VpsSection button:has-text("Stop")')
    admin.click(f'{root} .kr-VpsSection button:has-text("Start")')
    admin.wait_for_selector(f'{root}[data-status="running"]', timeout=20_000)
    admin.wait_for_selector(f'{ssh}:text-is("ssh -p {SSH_PORT} root@{DOCKER_NODE}")')
    # delete a snapshot
    admin.click(f'{root} tr[data-snapshot="base"] button:has-text("Delete")')
    admin.click('.jp-Dialog-button:has-text("Delete")')
    admin.wait_for_selector(f'{root} tr[data-snapshot="base"]', state="detached")
    assert ("delete", "base") in [(o.action, o.tag) for o in docker.snapshot_orders]
    lab.api("POST", f"tasks/{task_id}/kill")
    wait_status(lab, task_id, {"killed"})


def test_environments_create_exec_commit_delete(lab: Any, admin: Any, docker: DockerNode) -> None:
    show_sidebar(admin)
    admin.click('#kohakuriver-panel button[aria-label="Container environments"]')
    view = "#kohakuriver-environments"
    admin.wait_for_selector(f'#kr-env-node option[value="{DOCKER_NODE}"]', state="attached")
    admin.fill("#kr-env-name", "Torch")
    admin.fill("#kr-env-image", IMAGE)
    admin.click(f'{view} button:has-text("Create")')
    admin.wait_for_selector(f'{view} .kr-Error:has-text("name:")')  # lower-case only, said here
    assert admin.get_attribute("#kr-env-name", "aria-invalid") == "true"
    admin.fill("#kr-env-name", "torch")
    admin.select_option("#kr-env-node", DOCKER_NODE)
    admin.click(f'{view} button:has-text("Create")')
    card = f'{view} [data-env="torch"]'
    admin.wait_for_selector(f'{card} .kr-Status[data-status="running"]', timeout=20_000)
    # exec: the line is split into an argv here; shell syntax stays literal
    line = "pip install 'numpy<2' \"a b\" $HOME"
    admin.fill("#kr-env-exec-torch", line)
    preview = admin.inner_text(f'{card} [data-kr="argv"]')
    assert preview == 'argv: ["pip","install","numpy<2","a b","$HOME"]', preview
    admin.press("#kr-env-exec-torch", "Enter")
    admin.wait_for_selector(f'{card} .kr-ExecHead[data-exit="0"]')
    assert docker.execs[-1] == ["pip", "install", "numpy<2", "a b", "$HOME"]
    assert "Successfully installed numpy" in admin.inner_text(f"{card} .kr-ExecLog")
    assert "exit 0" in admin.inner_text(f"{card} .kr-ExecHead")
    sent = len(docker.execs)
    admin.fill("#kr-env-exec-torch", 'echo "open')
    admin.press("#kr-env-exec-torch", "Enter")
    admin.wait_for_selector(f'{card} .kr-Error:has-text("unterminated quote")')
    assert len(docker.execs) == sent  # nothing was sent
    admin.fill("#kr-env-exec-torch", "python -V")
    # commit with a tag: the node uploads the image, the host stores version 1
    admin.fill("#kr-env-tag-torch", "v-test")
    admin.click(f'{card} button:has-text("Commit version")')
    admin.wait_for_selector(f'{card} tr[data-version="1"]', timeout=20_000)
    assert "v-test" in admin.inner_text(f'{card} tr[data-version="1"]')
    envs = {e["name"]: e for e in lab.api("GET", "environments")["environments"]}
    assert [v["tag"] for v in envs["torch"]["versions"]] == ["v-test"]
    shots(admin, "environments", [f"{card} h3", f"{card} .kr-ExecHead", f"{card} .kr-VersionTable td",
                                  f"{card} .kr-mod-danger"])  # fmt: skip
    # delete, with its stored versions
    admin.click(f'{card} .kr-NodeCard-head button:has-text("Delete")')
    admin.check("#kr-env-delversions-torch")
    admin.click('.jp-Dialog-button:has-text("Delete")')
    admin.wait_for_selector(card, state="detached")
    assert "torch" not in {e["name"] for e in lab.api("GET", "environments")["environments"]}


def test_no_console_errors(lab: Any, admin: Any, member: Any) -> None:
    for name, pg in (("admin", admin), ("member", member)):
        errors = [e for e in pg.console_errors if "favicon" not in e]
        assert not errors, (name, errors, pg.bad_responses, lab.problems())
