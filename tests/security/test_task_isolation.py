"""A member's local task is confined: no host secret, no limit it can undo, no other user's data.

Issue 10, attacks 1 and 2, and "a task of one user cannot read another user's task files,
logs or env on the same node". Real host (``jupyter kohakuriver``, its token on the command
line) with its embedded runner, real supervisors, cgroups and namespaces; the tasks are the
attacker's own scripts, submitted with a ``user`` member's API token.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import TOKEN, HostProcess

from kohakuriver_lab.runner.supervisor import DEFAULT_PASS_ENV
from kohakuriver_lab.testing.integration import require_cgroups

pytestmark = [pytest.mark.integration, pytest.mark.cgroups]

PY = sys.executable
FINAL = {"completed", "failed", "killed", "killed_oom", "lost", "rejected", "stopped"}


def _api(host: HostProcess, token: str) -> httpx.Client:
    scheme = "Bearer" if token.startswith("kra_") else "token"  # API token / Jupyter token
    headers = {"Authorization": f"{scheme} {token}"}
    return httpx.Client(base_url=host.url + "kohakuriver/api", headers=headers, timeout=30)


def submit(host: HostProcess, token: str, body: dict[str, Any]) -> str:
    """Submit as the member; the owner approves it when the cluster asks for approval."""
    with _api(host, token) as member:
        r = member.post("/tasks", json=body)
        assert r.status_code == 201, r.text
        task_id = str(r.json()["task_ids"][0])
        if member.get(f"/tasks/{task_id}").json()["status"] == "pending_approval":
            with _api(host, TOKEN) as owner:
                assert owner.post(f"/tasks/{task_id}/approve").status_code == 200
    return task_id


def wait(host: HostProcess, task_id: str, statuses: set[str], timeout: float = 60) -> Any:
    with _api(host, TOKEN) as owner:
        deadline = time.monotonic() + timeout
        while True:
            task = owner.get(f"/tasks/{task_id}").json()
            if task["status"] in statuses:
                return task
            assert time.monotonic() < deadline, f"task {task_id} is {task['status']}"
            time.sleep(0.05)


def stdout(host: HostProcess, task_id: str) -> str:
    with _api(host, TOKEN) as owner:
        r = owner.get(f"/tasks/{task_id}/logs", params={"stream": "stdout", "offset": 0})
        assert r.status_code == 200, r.text
        return str(r.json()["data"])


def report_of(host: HostProcess, task_id: str) -> dict[str, Any]:
    task = wait(host, task_id, FINAL)
    out = stdout(host, task_id)
    assert task["status"] == "completed", (task, out)
    return dict(json.loads(out.strip().splitlines()[0]))


def runner_token(host: HostProcess) -> str:
    """The embedded runner's token, read from its environment as root (the test can)."""
    assert host.process is not None
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"kohakuriver_lab.runner" not in cmdline:
                continue
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"KOHAKURIVER_RUNNER_TOKEN="):
                return item.split(b"=", 1)[1].decode()
    raise AssertionError("embedded runner not found")


# The attacker's script: everything it can see of other processes and of the host's files.
SNOOP = r"""
import json, os, re, sys, urllib.request
dump = []
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
for pid in pids:
    for name in ("cmdline", "environ"):
        try:
            dump.append(open(f"/proc/{pid}/{name}", "rb").read().decode("utf-8", "replace"))
        except OSError:
            pass
files = {}
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as fh:
            files[path] = "read:" + fh.read(64).hex()
    except OSError as exc:
        files[path] = f"error:{exc.strerror}"
    try:
        files[path + " (list)"] = "listed:" + ",".join(os.listdir(path))
    except OSError as exc:
        pass
text = "\0".join(dump)
escalated = []
for token in set(re.findall(r"--IdentityProvider\.token=([^\s\x00]+)", text)):
    request = urllib.request.Request(
        os.environ["KOHAKURIVER_URL"].rstrip("/") + "/kohakuriver/api/users/alice",
        data=json.dumps({"role": "admin"}).encode(), method="PATCH",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    try:
        escalated.append(urllib.request.urlopen(request).status)
    except Exception as exc:
        escalated.append(str(exc))
status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
print(json.dumps({"pids": pids, "dump": text, "files": files, "escalated": escalated,
                  "uid": os.getuid(), "cap_eff": status["CapEff"].strip(),
                  "cap_bnd": status["CapBnd"].strip(), "nnp": status["NoNewPrivs"].strip()}))
"""


def test_a_members_task_cannot_reach_the_hosts_secrets(embedded_host, make_member, tmp_path):
    """Attack 1: a `user` task walked /proc for the host's token, read the runner token and
    the host's files, and made itself admin. Now it sees only its own processes, no secret,
    no host file, and runs unprivileged."""
    require_cgroups()
    alice = make_member("alice", "user")
    data = tmp_path / "host"
    state = data / "embedded-runner"
    targets = [str(data / "cluster.db"), str(data / "task-token.key"), str(data), str(state)]
    task_id = submit(embedded_host, alice, {"command": [PY, "-c", SNOOP, *targets]})
    report = report_of(embedded_host, task_id)

    assert TOKEN not in report["dump"]
    assert runner_token(embedded_host) not in report["dump"]
    assert len(report["pids"]) <= 3, report["pids"]  # its own namespace: init, itself
    assert report["escalated"] == []
    own_path = {"embedded-runner", "local", "tasks", task_id}  # the way to its own work dir
    for path in targets:
        assert not report["files"][path].startswith("read:"), (path, report["files"])
        listed = report["files"].get(path + " (list)", "listed:").removeprefix("listed:")
        assert set(filter(None, listed.split(","))) <= own_path, report["files"]
    assert report["uid"] != 0
    assert int(report["cap_eff"], 16) == 0 and int(report["cap_bnd"], 16) == 0
    assert report["nnp"] == "1"
    with _api(embedded_host, TOKEN) as owner:
        users = {u["username"]: u["role"] for u in owner.get("/users").json()["users"]}
    assert users["alice"] == "user"


ESCAPE_MEMORY = r"""
import json, os
line = next(l for l in open("/proc/self/cgroup") if ":memory:" in l)
own = "/sys/fs/cgroup/memory" + line.strip().split(":", 2)[2]
attempts = {}
for target in (os.path.dirname(os.path.dirname(own)), "/sys/fs/cgroup/memory"):
    try:
        with open(os.path.join(target, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
        attempts[target] = "moved"
    except OSError as exc:
        attempts[target] = exc.strerror
try:
    with open(os.path.join(own, "memory.limit_in_bytes"), "w") as fh:
        fh.write(str(1 << 40))
    attempts["raise limit"] = "raised"
except OSError as exc:
    attempts["raise limit"] = exc.strerror
print(json.dumps(attempts), flush=True)
block = bytearray(400 << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
print("survived", flush=True)
"""

WIDEN_AFFINITY = r"""
import json, os
widened = None
try:
    os.sched_setaffinity(0, set(range(os.cpu_count())))
    widened = "ok"
except OSError as exc:
    widened = exc.strerror
print(json.dumps({"widened": widened, "affinity": sorted(os.sched_getaffinity(0))}))
"""


def test_a_task_cannot_undo_its_limits(embedded_host, make_member):
    """Attack 2: a 64M task moved itself to the parent memory cgroup and used 400 MiB; a
    one-core task widened its affinity. Now the cgroup files are not its to write, and the
    cpuset holds it to its core."""
    require_cgroups()
    alice = make_member("alice", "user")
    memory_task = submit(
        embedded_host, alice, {"command": [PY, "-c", ESCAPE_MEMORY], "memory": "64M"}
    )
    task = wait(embedded_host, memory_task, FINAL)
    out = stdout(embedded_host, memory_task)
    attempts = json.loads(out.splitlines()[0])
    assert "moved" not in attempts.values() and "raised" not in attempts.values(), attempts
    assert task["status"] == "killed_oom", (task, out)
    assert "survived" not in out

    if (os.cpu_count() or 1) < 2:
        pytest.skip("widening affinity needs a node with two cores")
    core_task = submit(embedded_host, alice, {"command": [PY, "-c", WIDEN_AFFINITY], "cores": 1})
    report = report_of(embedded_host, core_task)
    assigned = wait(embedded_host, core_task, FINAL)["assigned_cores"]
    assert len(assigned) == 1
    assert report["affinity"] == assigned, report


ALICE = r"""
import os, time
open("secret", "w").write(os.environ["SECRET"])
for note in ("/tmp/alice-note", "/dev/shm/alice-note"):
    open(note, "w").write(os.environ["SECRET"])
    os.chmod(note, 0o644)
print(os.environ["SECRET"], flush=True)
time.sleep(120)
"""

BOB = r"""
import json, os, sys
found = {}
for path in sys.argv[1:]:
    try:
        found[path] = open(path).read()
    except OSError as exc:
        found[path] = f"error:{exc.strerror}"
for pid in (p for p in os.listdir("/proc") if p.isdigit()):
    try:
        found[f"/proc/{pid}/environ"] = open(f"/proc/{pid}/environ", "rb").read().decode()
    except OSError:
        pass
for shared in ("/tmp", "/dev/shm"):
    found[shared] = ",".join(os.listdir(shared))
print(json.dumps({"uid": os.getuid(), "found": found}))
"""


def test_one_users_task_cannot_read_anothers(embedded_host, make_member, tmp_path):
    """Alice's running task keeps a secret in its files, its log, its env and /tmp; Bob's
    task on the same node finds none of them."""
    require_cgroups()
    alice, bob = make_member("alice", "user"), make_member("bob", "user")
    secret = "alice-secret-2f9c"
    alice_task = submit(
        embedded_host, alice, {"command": [PY, "-c", ALICE], "env": {"SECRET": secret}}
    )
    wait(embedded_host, alice_task, {"running"})
    task_dir = tmp_path / "host" / "embedded-runner" / "local" / "tasks" / alice_task
    deadline = time.monotonic() + 30
    while not (task_dir / "work" / "secret").exists():  # the test, as root, can look
        assert time.monotonic() < deadline, "alice's task never wrote its file"
        time.sleep(0.05)
    paths = [str(task_dir / name) for name in ("work/secret", "stdout", "spec.json")]
    paths += ["/tmp/alice-note", "/dev/shm/alice-note"]
    bob_task = submit(embedded_host, bob, {"command": [PY, "-c", BOB, *paths]})
    report = report_of(embedded_host, bob_task)
    with _api(embedded_host, TOKEN) as owner:
        owner.post(f"/tasks/{alice_task}/kill")
    assert secret not in json.dumps(report["found"]), report["found"]
    assert "alice-note" not in report["found"]["/tmp"] + report["found"]["/dev/shm"]
    assert secret in stdout(embedded_host, alice_task)  # the secret was really there
    assert report["uid"] != 0


TASK_ENV = {
    *DEFAULT_PASS_ENV, "HOME", "USER", "LOGNAME",
    "KOHAKURIVER_TASK_ID", "KOHAKURIVER_NODE", "KOHAKURIVER_URL", "KOHAKURIVER_TASK_TOKEN",
    "CUDA_VISIBLE_DEVICES", "MINE",
}  # fmt: skip


def test_no_host_environment_and_a_node_workdir_policy(embedded_host, make_member, tmp_path):
    """Attack 9: the host's own variables (JUPYTER_*, anything of the runner's) reached
    tasks, and any workdir was taken (/root, the host's data dir). Now a task gets only the
    runner's PATH/locale/TZ, its identity's HOME/USER, its own env and the task variables;
    a workdir outside the node's allowed_workdirs, or inside a hidden directory, fails."""
    require_cgroups()
    alice = make_member("alice", "user")
    probe = "import json, os; print(json.dumps(dict(os.environ)))"
    task_id = submit(embedded_host, alice, {"command": [PY, "-c", probe], "env": {"MINE": "1"}})
    env = report_of(embedded_host, task_id)
    assert set(env) <= TASK_ENV, sorted(set(env) - TASK_ENV)
    assert env["MINE"] == "1" and env["HOME"] != os.environ.get("HOME")
    assert env["KOHAKURIVER_TASK_ID"] == task_id

    # `python` is the runner's interpreter, with this package, even where pyenv's shims on
    # the runner's PATH live in root's hidden home
    script = "import json, sys, kohakuriver_lab; print(json.dumps({'exe': sys.executable}))"
    task_id = submit(embedded_host, alice, {"command": ["python", "-c", script]})
    assert report_of(embedded_host, task_id)["exe"] == str(Path(PY).parent / "python")

    refusals = {
        "/usr": "not allowed",  # outside the embedded runner's allowed_workdirs
        "/root": "may not see",  # root's home (SSH keys, Jupyter runtime) is hidden
        str(tmp_path / "host"): "may not see",  # allowed prefix, but the host's data dir
    }
    for workdir, why in refusals.items():
        task_id = submit(embedded_host, alice, {"command": ["true"], "workdir": workdir})
        task = wait(embedded_host, task_id, FINAL)
        assert task["status"] == "failed" and why in (task["reason"] or ""), task
