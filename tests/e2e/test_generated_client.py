"""A typed client generated from the served OpenAPI document (openapi-python-client, as
docs/api.md shows) submits a task and follows its output to the end (issue 19)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from harness import BIN, TOKEN, HostProcess
from test_api_contract import AUTH, NodeThread


def generate(host: HostProcess, where: Path) -> Any:
    """``openapi-python-client generate`` on the host's document; the imported package."""
    document = where / "openapi.json"
    served = httpx.get(host.url + "kohakuriver/api/openapi.json", headers=AUTH)
    document.write_bytes(served.content)
    argv = [str(BIN / "openapi-python-client"), "generate", "--path", str(document)]
    argv += ["--meta", "none", "--output-path", str(where / "kr_client")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert (where / "kr_client" / "client.py").exists(), result.stdout + result.stderr
    sys.path.insert(0, str(where))
    try:
        return importlib.import_module("kr_client")
    finally:
        sys.path.remove(str(where))


def test_a_generated_client_submits_and_follows_a_task(make_host: Any, tmp_path: Path) -> None:
    host = make_host()
    kr = generate(host, tmp_path)
    default = importlib.import_module("kr_client.api.default")
    submit = importlib.import_module(f"{default.__name__}.post_kohakuriver_api_tasks")
    get_task = importlib.import_module(f"{default.__name__}.get_kohakuriver_api_tasks_task_id")
    get_logs = importlib.import_module(f"{default.__name__}.get_kohakuriver_api_tasks_task_id_logs")
    models = importlib.import_module("kr_client.models")

    node = NodeThread(
        host.url, host.runner_token("gen"), auto_finish=True, output=b"hello from a task\n"
    )
    client = kr.AuthenticatedClient(base_url=host.url.rstrip("/"), token=TOKEN, prefix="token")
    with node, client:
        result = submit.sync(client=client, body=models.TaskSubmit(command=["echo", "hello"]))
        assert isinstance(result, models.SubmitResult), result
        (task_id,) = result.task_ids
        output, offset, deadline = "", 0, time.monotonic() + 60
        while time.monotonic() < deadline:  # follow: read on from the offset until eof
            chunk = get_logs.sync(task_id, client=client, offset=offset)
            assert isinstance(chunk, models.LogChunk), chunk
            output, offset = output + chunk.data, chunk.next_offset
            if chunk.eof:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"no end of output within 60 s: {output!r}")
        task = get_task.sync(task_id, client=client)
        assert isinstance(task, models.TaskInfo), task
        assert task.status.value == "completed" and task.exit_code == 0, task
        assert output == "hello from a task\n"
