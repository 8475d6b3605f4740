#!/usr/bin/env python3
"""GPU check: NVML discovery, and GPU pinning through a real host and runner.

Run on a machine with an NVIDIA GPU (works, and passes or skips clearly, without one)::

    python scripts/gpu_check.py [--gpu INDEX] [--python python3] [--keep]

1. Lists the GPUs through the runner's own code (``Nvml`` + ``resources.discover_gpus``).
2. Starts a host (``kohakuriver_lab.server.app:main``, headless) and a runner
   (``kohakuriver_lab.runner.app:main --backend=local``) as subprocesses, checks that the
   node advertises exactly the NVML GPUs, runs a task pinned to one GPU index that must see
   only that GPU (``CUDA_VISIBLE_DEVICES``, torch's device count, name and UUID against
   NVML's), and a task without GPUs that must see none.
3. With ``docker`` and an NVIDIA runtime: the same with ``--backend=docker,local`` in a CUDA
   image (``--docker-image``); otherwise says why and skips.

Prints a report; exits 1 when a check failed, 0 when all passed or were skipped.
See docs/gpu-check.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # a checkout that is not pip-installed (an installed one wins)
    sys.path.append(str(ROOT))

import httpx  # noqa: E402

import kohakuriver_lab  # noqa: E402
from kohakuriver_lab.client import Client  # noqa: E402
from kohakuriver_lab.models import GpuInfo, TaskInfo  # noqa: E402
from kohakuriver_lab.runner.nvml import Nvml, as_text  # noqa: E402
from kohakuriver_lab.runner.resources import discover_gpus  # noqa: E402

TOKEN = "gpu-check-token"
HOST_MAIN = "import sys; from kohakuriver_lab.server.app import main; sys.exit(main())"
RUNNER_MAIN = "import sys; from kohakuriver_lab.runner.app import main; sys.exit(main())"
DEFAULT_IMAGE = "nvidia/cuda:12.4.1-base-ubuntu22.04"

# What a task sees; one JSON line on stdout. Standard library + torch (if importable).
PROBE = r"""
import json, os
out = {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "torch": None}
try:
    import torch
except Exception as exc:
    out["torch_error"] = repr(exc)
else:
    out["torch"] = torch.__version__
    try:
        n = torch.cuda.device_count()
        devices = []
        for i in range(n):
            p = torch.cuda.get_device_properties(i)
            devices.append({"name": p.name, "uuid": str(getattr(p, "uuid", "")),
                            "memory_total": int(p.total_memory)})
        out["device_count"] = n
        out["devices"] = devices
        if n:
            x = torch.ones(1024, device="cuda:0") * 2
            out["kernel_ok"] = float(x.sum().item()) == 2048.0
    except Exception as exc:
        out["cuda_error"] = repr(exc)
print(json.dumps(out))
"""

# Inside a CUDA image (no Python there): the variable, then what the driver shows.
DOCKER_PROBE = (
    'echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"; '
    "nvidia-smi -L 2>&1 || echo 'nvidia-smi: none'"
)

# ===== Report =====


@dataclass
class Report:
    """Check results, printed as they come and summed up at the end."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, status: str, name: str, detail: str = "") -> None:
        self.rows.append((status, name, detail))
        print(f"  [{status}] {name}" + (f": {detail}" if detail else ""), flush=True)

    def check(self, ok: bool, name: str, detail: str = "") -> bool:
        self.add("PASS" if ok else "FAIL", name, detail)
        return ok

    @property
    def failed(self) -> int:
        return sum(1 for status, _, _ in self.rows if status == "FAIL")

    def summary(self) -> str:
        counts = {s: sum(1 for r in self.rows if r[0] == s) for s in ("PASS", "FAIL", "SKIP")}
        verdict = "FAILED" if counts["FAIL"] else "PASSED"
        return (
            f"GPU check {verdict}: {counts['PASS']} passed, {counts['FAIL']} failed, "
            f"{counts['SKIP']} skipped"
        )


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def norm_uuid(text: str) -> str:
    """NVML says ``GPU-xxxxxxxx-...``, torch ``xxxxxxxx-...``: compare the hex digits only."""
    text = text.strip().lower()
    text = text[4:] if text.startswith("gpu-") else text
    return "".join(c for c in text if c in "0123456789abcdef")


# ===== Processes =====


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(workdir: Path) -> dict[str, str]:
    """Our environment without ``KOHAKURIVER_*``, with Jupyter's dirs in the work dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOHAKURIVER_")}
    env["JUPYTER_CONFIG_DIR"] = str(workdir / "jupyter-config")
    env["JUPYTER_DATA_DIR"] = str(workdir / "jupyter-data")
    env["JUPYTER_RUNTIME_DIR"] = str(workdir / "jupyter-runtime")
    # the children import the kohakuriver_lab we imported (not pip-installed on GPU boxes)
    package_root = str(Path(kohakuriver_lab.__file__).resolve().parent.parent)
    path = env.get("PYTHONPATH", "")
    if package_root not in path.split(os.pathsep):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, path) if p)
    return env


class Proc:
    """A subprocess logging to a file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115  closed in stop()
        self.process = subprocess.Popen(
            argv, stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL, env=env, cwd=ROOT
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def start_host(workdir: Path, timeout: float) -> tuple[Proc, str]:
    """``jupyter kohakuriver`` (headless host, no embedded runner); returns it and its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    argv = [
        sys.executable,
        "-c",
        HOST_MAIN,
        "--allow-root",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--ip=127.0.0.1",
        f"--IdentityProvider.token={TOKEN}",
        f"--ClusterHostApp.data_dir={workdir / 'host'}",
        "--NodeRegistry.heartbeat_interval=0.5",
        "--ClusterHostApp.sweep_interval=0.2",
        "--ClusterHostApp.embedded_runner=False",
        f"--ServerApp.root_dir={workdir}",
    ]
    host = Proc("host", argv, child_env(workdir), workdir / "host.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not host.alive():
            raise RuntimeError(f"host exited ({host.process.returncode}):\n{host.log_tail()}")
        try:
            r = httpx.get(url + "api/status", headers={"Authorization": f"token {TOKEN}"})
            if r.status_code == 200:
                return host, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    host.stop()
    raise RuntimeError(f"host did not answer within {timeout:.0f}s:\n{host.log_tail()}")


def start_runner(workdir: Path, url: str, token: str, name: str, backend: str) -> Proc:
    """``kohakuriver-runner`` with its own state dir."""
    env = child_env(workdir)
    env["KOHAKURIVER_RUNNER_TOKEN"] = token
    argv = [
        sys.executable,
        "-c",
        RUNNER_MAIN,
        f"--host-url={url}",
        f"--name={name}",
        f"--state-dir={workdir / ('state-' + name)}",
        f"--backend={backend}",
        "--RunnerApp.reconnect_max_delay=1",
        "--log-level=INFO",
    ]
    return Proc(f"runner {name}", argv, env, workdir / f"runner-{name}.log")


def kill_leftover_tasks(workdir: Path) -> None:
    """Supervisors and commands the check left running (by the PIDs they recorded)."""
    for pattern, kill in (("**/child.pid", os.killpg), ("**/supervisor.pid", os.kill)):
        for pidfile in workdir.glob(pattern):
            try:
                kill(int(pidfile.read_text().strip()), signal.SIGKILL)
            except (ValueError, OSError):
                pass


def wait_online(client: Client, name: str, runner: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not runner.alive():
            raise RuntimeError(f"{runner.name} exited:\n{runner.log_tail()}")
        nodes = {n.name: n for n in client.list_nodes()}
        if name in nodes and nodes[name].status.value == "online":
            return
        time.sleep(0.2)
    raise RuntimeError(f"node {name} not online after {timeout:.0f}s:\n{runner.log_tail()}")


def run_task(
    client: Client, submit: Callable[[], str], timeout: float
) -> tuple[TaskInfo, str, str]:
    """Submit, wait for the end; returns the task, its stdout and stderr."""
    task_id = submit()
    task = client.wait(task_id, timeout=timeout, poll=0.2)
    out = client.logs(task_id, "stdout").data
    err = client.logs(task_id, "stderr").data
    return task, out, err


def last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


# ===== Checks =====


def nvml_section(report: Report, nvml: Nvml) -> list[GpuInfo]:
    section("NVML (kohakuriver_lab.runner.nvml.Nvml + runner.resources.discover_gpus)")
    if not nvml.available:
        report.add("SKIP", "NVML", "no NVIDIA GPU / NVML unavailable on this machine")
        return []
    driver = as_text(nvml.call("nvmlSystemGetDriverVersion"))
    cuda = nvml.call("nvmlSystemGetCudaDriverVersion")
    cuda_text = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else "?"
    print(
        f"  driver {driver or '?'}, CUDA driver API {cuda_text}, NVML count {nvml.device_count()}"
    )
    gpus = discover_gpus(nvml)
    for gpu in gpus:
        print(
            f"  GPU {gpu.index}: {gpu.name} {gpu.uuid} {gpu.memory_total / 2**30:.1f} GiB "
            f"pci {gpu.pci_bus_id} numa {gpu.numa_node}"
        )
    report.check(
        len(gpus) == nvml.device_count() and all(g.uuid for g in gpus),
        "NVML lists every GPU with a UUID",
        f"{len(gpus)} GPU(s)",
    )
    return gpus


def node_gpus_match(report: Report, client: Client, name: str, gpus: list[GpuInfo]) -> None:
    node = client.get_node(name)
    print(f"  node {name}: backends {node.backends}, {len(node.gpus)} GPU(s) advertised")
    seen = [(g.index, g.uuid, g.name, g.memory_total) for g in node.gpus]
    want = [(g.index, g.uuid, g.name, g.memory_total) for g in gpus]
    report.check(seen == want, "node's advertised GPUs (GET nodes) match NVML", f"{seen}")


def check_gpu_probe(
    report: Report, label: str, task: TaskInfo, out: str, err: str, gpu: GpuInfo
) -> None:
    ok = report.check(
        task.status.value == "completed",
        f"{label}: task completed",
        f"status {task.status.value}, exit {task.exit_code}"
        + ("" if task.status.value == "completed" else f", stderr: {err[-1500:]!r}"),
    )
    report.check(
        task.assigned_gpus == [gpu.index], f"{label}: assigned GPUs", f"{task.assigned_gpus}"
    )
    seen = last_json(out)
    if not ok or seen is None:
        report.add("FAIL", f"{label}: probe output", f"stdout {out[-1500:]!r}")
        return
    print(f"  task saw: {json.dumps(seen)}")
    cvd = seen.get("cuda_visible_devices")
    report.check(cvd == str(gpu.index), f"{label}: CUDA_VISIBLE_DEVICES", f"{cvd!r}")
    if seen.get("torch") is None:
        report.add(
            "FAIL", f"{label}: torch in the task", f"not importable: {seen.get('torch_error')}"
        )
        return
    if "cuda_error" in seen:
        report.add("FAIL", f"{label}: torch CUDA", str(seen["cuda_error"]))
        return
    count = seen.get("device_count")
    report.check(count == 1, f"{label}: torch.cuda.device_count() == 1", f"{count}")
    devices = seen.get("devices") or []
    if devices:
        dev = devices[0]
        report.check(
            dev.get("name") == gpu.name,
            f"{label}: device name",
            f"torch {dev.get('name')!r}, NVML {gpu.name!r}",
        )
        if dev.get("uuid"):
            report.check(
                norm_uuid(str(dev["uuid"])) == norm_uuid(gpu.uuid),
                f"{label}: device UUID is NVML's GPU {gpu.index}",
                f"torch {dev['uuid']}, NVML {gpu.uuid}",
            )
        else:
            report.add("SKIP", f"{label}: device UUID", "this torch does not report UUIDs")
        report.check(seen.get("kernel_ok") is True, f"{label}: a CUDA kernel ran", "")


def check_no_gpu_probe(report: Report, label: str, task: TaskInfo, out: str, err: str) -> None:
    ok = report.check(
        task.status.value == "completed",
        f"{label}: task completed",
        f"status {task.status.value}, exit {task.exit_code}"
        + ("" if task.status.value == "completed" else f", stderr: {err[-1500:]!r}"),
    )
    report.check(task.assigned_gpus == [], f"{label}: no GPUs assigned", f"{task.assigned_gpus}")
    seen = last_json(out)
    if not ok or seen is None:
        report.add("FAIL", f"{label}: probe output", f"stdout {out[-1500:]!r}")
        return
    print(f"  task saw: {json.dumps(seen)}")
    cvd = seen.get("cuda_visible_devices")
    report.check(cvd == "", f"{label}: CUDA_VISIBLE_DEVICES is empty", f"{cvd!r}")
    if seen.get("torch") is None:
        report.add(
            "SKIP", f"{label}: torch device count", "torch not importable by the task's Python"
        )
    elif "cuda_error" in seen:
        report.add("FAIL", f"{label}: torch CUDA", str(seen["cuda_error"]))
    else:
        count = seen.get("device_count")
        report.check(count == 0, f"{label}: torch.cuda.device_count() == 0", f"{count}")


def local_section(
    report: Report, workdir: Path, gpus: list[GpuInfo], gpu_index: int, python: str, timeout: float
) -> None:
    section("host + runner --backend=local")
    host, url = start_host(workdir, timeout=60)
    runner: Proc | None = None
    try:
        print(f"  host up at {url} (log {host.log_path})")
        with Client(url, TOKEN) as client:
            name = "gpucheck"
            runner = start_runner(
                workdir, url, client.create_runner_token(name).token or "", name, "local"
            )
            wait_online(client, name, runner, timeout=60)
            report.add("PASS", "runner online", f"node {name}")
            node_gpus_match(report, client, name, gpus)
            probe = [python, "-c", PROBE]
            if gpus:
                gpu = next((g for g in gpus if g.index == gpu_index), None)
                if gpu is None:
                    report.add("FAIL", "GPU task", f"no GPU with index {gpu_index}")
                else:
                    section(f"task pinned to GPU {gpu.index} ({gpu.name}, {gpu.uuid})")
                    task, out, err = run_task(
                        client,
                        lambda: str(
                            client.submit(probe, name="gpu-check", gpus=[gpu.index]).task_ids[0]
                        ),
                        timeout,
                    )
                    check_gpu_probe(report, "GPU task", task, out, err, gpu)
            else:
                report.add("SKIP", "GPU task", "no GPU on this machine")
            section("task without GPUs")
            task, out, err = run_task(
                client,
                lambda: str(client.submit(probe, name="gpu-check-none").task_ids[0]),
                timeout,
            )
            check_no_gpu_probe(report, "no-GPU task", task, out, err)
    finally:
        if runner is not None:
            runner.stop()
        host.stop()
        kill_leftover_tasks(workdir)


def docker_unavailable(image: str) -> str | None:
    """Why the docker check cannot run here, or ``None``."""
    docker_bin = shutil.which("docker")
    if docker_bin is None:
        return "no docker command"
    try:
        import docker  # noqa: F401  the docker backend needs it
    except ImportError:
        return "the Python package 'docker' is not installed (kohakuriver-lab[docker])"
    try:
        info = subprocess.run(
            [docker_bin, "info", "--format", "{{json .Runtimes}}"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker info failed: {exc}"
    if info.returncode != 0:
        return f"no docker daemon ({(info.stderr or info.stdout).strip()[:200]})"
    if "nvidia" not in info.stdout:
        return f"docker has no NVIDIA runtime (runtimes: {info.stdout.strip()[:200]})"
    found = subprocess.run(
        [docker_bin, "image", "inspect", image], capture_output=True, text=True, timeout=20
    )
    if found.returncode != 0:
        return f"image {image} is not present (docker pull it, or pass --docker-image)"
    return None


def docker_section(
    report: Report, workdir: Path, gpus: list[GpuInfo], gpu_index: int, image: str, timeout: float
) -> None:
    section("host + runner --backend=docker,local")
    why = docker_unavailable(image)
    print(f"  docker: {why or 'available, with an NVIDIA runtime and ' + image}")
    if not gpus or why is not None:
        report.add("SKIP", "docker GPU check", why or "no GPU on this machine")
        return
    gpu = next((g for g in gpus if g.index == gpu_index), None)
    if gpu is None:
        report.add("FAIL", "docker GPU task", f"no GPU with index {gpu_index}")
        return
    host, url = start_host(workdir / "docker", timeout=60)
    runner: Proc | None = None
    name = f"gpudock{os.getpid()}"
    try:
        with Client(url, TOKEN) as client:
            runner = start_runner(
                workdir / "docker", url, client.create_runner_token(name).token or "", name,
                "docker,local",
            )  # fmt: skip
            wait_online(client, name, runner, timeout=60)
            report.check("docker" in client.get_node(name).backends, "docker backend online", "")
            command = ["sh", "-c", DOCKER_PROBE]
            task, out, _ = run_task(
                client,
                lambda: str(client.submit_request(
                    {"command": command, "image": image, "gpus": [gpu.index]}
                ).task_ids[0]),
                timeout,
            )  # fmt: skip
            print(f"  GPU container saw: {out.strip()!r}")
            report.check(
                task.status.value == "completed", "docker GPU task completed", task.status.value
            )
            lines = [ln for ln in out.splitlines() if ln.startswith("GPU ")]
            report.check(
                len(lines) == 1 and gpu.uuid in lines[0],
                f"docker GPU task sees only GPU {gpu.index}",
                f"{lines}",
            )
            task, out, _ = run_task(
                client,
                lambda: str(
                    client.submit_request({"command": command, "image": image}).task_ids[0]
                ),
                timeout,
            )
            print(f"  no-GPU container saw: {out.strip()!r}")
            report.check(
                task.status.value == "completed" and "GPU-" not in out
                and "CUDA_VISIBLE_DEVICES=\n" in out + "\n",
                "docker no-GPU task sees no GPU",
                task.status.value,
            )  # fmt: skip
    finally:
        if runner is not None:
            runner.stop()
        host.stop()
        subprocess.run(
            ["sh", "-c", f"docker rm -f $(docker ps -aq --filter label=kohakuriver.node={name})"],
            capture_output=True, timeout=60,
        )  # fmt: skip


# ===== Main =====


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--gpu", type=int, default=0, help="GPU index to pin the task to")
    parser.add_argument("--python", default="python3", help="the tasks' Python (with torch)")
    parser.add_argument("--docker-image", default=DEFAULT_IMAGE, help="CUDA image (docker check)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per task")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, state)")
    args = parser.parse_args(argv)

    print("kohakuriver-lab GPU check")
    print(
        f"  kohakuriver_lab {kohakuriver_lab.__version__} from {Path(kohakuriver_lab.__file__).parent}"
    )
    print(f"  python {platform.python_version()} ({sys.executable}), {platform.platform()}")
    print(f"  host {socket.gethostname()}, uid {os.getuid()}, tasks run {args.python!r}")
    report = Report()
    nvml = Nvml()
    workdir = Path(tempfile.mkdtemp(prefix="kohakuriver-gpu-check-"))
    os.chmod(workdir, 0o755)
    try:
        gpus = nvml_section(report, nvml)
        nvml.shutdown()  # the runner opens its own session
        stacks: list[tuple[str, Callable[[], None]]] = [
            ("local", lambda: local_section(report, workdir, gpus, args.gpu, args.python, args.timeout)),
            ("docker", lambda: docker_section(
                report, workdir, gpus, args.gpu, args.docker_image, args.timeout
            )),
        ]  # fmt: skip
        for name, run in stacks:
            try:
                run()
            except Exception as exc:  # a broken stack is a failed check, with its logs
                report.add("FAIL", f"{name} stack", f"{type(exc).__name__}: {exc}")
    finally:
        if report.failed:  # the processes' own words, before the work dir goes
            for log in sorted(workdir.glob("**/*.log")):
                text = log.read_text(errors="replace")[-2500:]
                print(f"\n--- {log.relative_to(workdir)} (end) ---\n{text}")
        if args.keep:
            print(f"\nwork dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    section("summary")
    for status, name, detail in report.rows:
        print(f"  {status:4} {name}" + (f" ({detail})" if detail and status != "PASS" else ""))
    print(report.summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
