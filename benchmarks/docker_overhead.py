"""Container task overhead: ``true`` in ``kohakuriver-test/busybox`` through the whole stack
(host + ``kohakuriver-runner --backend docker``) vs a raw ``docker run --rm IMAGE true``.

Submit → ``completed`` is the task's ``completed`` event ``at`` stamp minus the client's wall
clock at the start of the submit request (same machine, same clock). The raw baseline runs in
the same process, alternating with the tasks so both see the same machine load. Target: the
median within 1.3x of the raw median. Without a reachable dockerd (or the test image: run
``bash .ci/images.sh``) the benchmark reports one skipped row instead of failing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._common import Host, Outcome, Row, running_host, timed_task, wait_node_online

NAME = "docker_overhead"
IMAGE = "kohakuriver-test/busybox"
NODE = "bench-docker"
RATIO = 1.3
WARMUP = 2
BODY = {"command": ["true"], "image": IMAGE}
BASELINE_LABEL = f"docker run --rm {IMAGE} true"


@dataclass
class SkippedRow(Row):
    """A row that reports why the benchmark did not run (counted as neither pass nor fail)."""

    skipped: bool = True

    @property
    def passed(self) -> bool:
        return True


# =============================================================================
# Availability
# =============================================================================


def _unavailable() -> str | None:
    """Why the benchmark cannot run here (``None``: it can)."""
    if shutil.which("docker") is None:
        return "no docker CLI"
    try:
        import docker
    except ImportError:
        return "docker SDK not installed"
    try:
        api = docker.APIClient(version="auto", timeout=10, **docker.utils.kwargs_from_env())
    except Exception:
        return "no dockerd"
    try:
        api.inspect_image(IMAGE)
    except Exception:
        return f"image {IMAGE} missing (bash .ci/images.sh)"
    finally:
        api.close()
    return None


# =============================================================================
# Measurements
# =============================================================================


def _raw() -> float:
    t0 = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", IMAGE, "true"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _start_runner(host: Host) -> subprocess.Popen[bytes]:
    state = Path(host.data_dir) / "runner-state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOHAKURIVER_")}
    env["KOHAKURIVER_RUNNER_TOKEN"] = host.runner_token(NODE)
    argv = [
        str(Path(sys.executable).parent / "kohakuriver-runner"),
        f"--host-url={host.url}/",
        f"--name={NODE}",
        f"--state-dir={state}",
        "--backend=docker",
        "--log-level=WARN",
    ]
    log = open(Path(host.data_dir) / "runner.log", "wb")  # noqa: SIM115 - closed with it
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True
    )


def _stop_runner(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    with contextlib.suppress(Exception):  # containers of tasks the host had not forgotten
        import docker

        api = docker.APIClient(version="auto", timeout=10, **docker.utils.kwargs_from_env())
        for row in api.containers(all=True, filters={"label": f"kohakuriver.node={NODE}"}):
            api.remove_container(row["Id"], force=True)
        api.close()


def run(quick: bool) -> Outcome:
    reason = _unavailable()
    if reason is not None:
        nothing: Any = None  # shown as "-" in the table and null in the JSON
        row = SkippedRow(
            NAME, "submit->completed", nothing, "ms", nothing, False, None, BASELINE_LABEL
        )
        row.notes = f"skipped: {reason}"
        return Outcome([row], {"skipped": reason})
    samples_n = 6 if quick else 15
    samples: list[dict[str, float]] = []
    raw: list[float] = []
    with running_host() as host, host.client() as client:
        runner = _start_runner(host)
        try:
            wait_node_online(client)
            for _ in range(WARMUP + samples_n):  # alternate: both see the same load
                raw.append(_raw())
                samples.append(timed_task(client, BODY))
        finally:
            _stop_runner(runner)
    samples, raw = samples[WARMUP:], raw[WARMUP:]
    base = statistics.median(raw) * 1000
    med: dict[str, Any] = {k: statistics.median(s[k] for s in samples) * 1000 for k in samples[0]}
    row = Row(
        NAME,
        "submit->completed",
        med["host_completed"],
        "ms",
        RATIO * base,
        False,
        base,
        BASELINE_LABEL,
        f"median of {samples_n} (target {RATIO}x the raw median), host event clock; "
        f"client-observed {med['client_completed']:.0f} ms; submit->running "
        f"{med['host_running']:.0f} ms",
    )
    details = {"median_ms": med, "baseline_ms": base, "samples_s": samples, "raw_s": raw}
    return Outcome([row], details)
