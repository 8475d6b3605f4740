"""Units without a host: the job wrapper against a mock host, glue, parsing helpers."""

from __future__ import annotations

import json
import warnings

import httpx
import pytest

from kohakuriver_lab import glue
from kohakuriver_lab._glue import GlueWarning
from kohakuriver_lab.cluster import code_body, command_body, grid_sets, results_table
from kohakuriver_lab.magics import parse_line, parse_value
from kohakuriver_lab.nbjob import HostLink, run_job

from .conftest import notebook


def _mock_host(nb, calls, *, flaky=0):
    state = {"flaky": flaky}

    def handler(request: httpx.Request) -> httpx.Response:
        if state["flaky"] > 0:
            state["flaky"] -= 1
            return httpx.Response(503)
        calls.append((request.method, request.url.path, request.content))
        if request.url.path.endswith("input.ipynb"):
            return httpx.Response(200, content=json.dumps(nb).encode())
        if request.url.path.endswith("/job"):
            return httpx.Response(200, json={"parameters": {"a": 3}, "notebook_name": None})
        return httpx.Response(204)

    return httpx.MockTransport(handler)


@pytest.mark.timeout(60)
def test_nbjob_reports_progress_and_uploads_output():
    calls: list = []
    nb = notebook("b = a * 2", "print(b)", parameters="a = 1")
    link = HostLink("http://h/", "7", "tok", transport=_mock_host(nb, calls, flaky=2))
    assert run_job(link) == 0
    progress = [json.loads(c) for m, p, c in calls if p.endswith("/progress")]
    assert progress[-1] == {"done": 4, "total": 4, "cell": None, "error": None}
    assert len(progress) <= 4  # throttled, never one save per cell
    puts = [c for m, p, c in calls if m == "PUT"]
    assert len(puts) == 1
    out = json.loads(puts[0])
    assert "".join(out["cells"][1]["source"]).strip().endswith("a = 3")  # injected parameters
    assert "6" in json.dumps(out["cells"][3]["outputs"])


@pytest.mark.timeout(60)
def test_nbjob_failure_posts_reason_and_output():
    calls: list = []
    nb = notebook("x = 1", "1/0")
    link = HostLink("http://h/", "7", "tok", transport=_mock_host(nb, calls))
    assert run_job(link) == 1
    final = json.loads([c for m, p, c in calls if p.endswith("/progress")][-1])
    assert final["error"].startswith("cell 2 ")
    assert "ZeroDivisionError" in final["error"]
    assert any(m == "PUT" for m, p, c in calls)


def test_glue_outside_a_job_warns(monkeypatch):
    monkeypatch.delenv("KOHAKURIVER_TASK_TOKEN", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert glue("x", 1) is False
    assert caught[0].category is GlueWarning
    with pytest.raises(TypeError, match="JSON-serializable"):
        glue("x", object())


def test_helpers():
    assert parse_value("0.1") == 0.1 and parse_value("abc") == "abc" and parse_value("[1]") == [1]
    assert grid_sets({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert command_body("python -c 'print(1)'", cores=2) == {
        "command": ["python", "-c", "print(1)"],
        "cores": 2,
    }
    assert code_body("echo hi", shell=True)["command"] == ["bash", "-c", "echo hi"]
    rows = results_table(
        [{"task_id": 1, "status": "completed", "parameters": {"a": 1}, "results": {"r": 2}}]
    )
    assert rows == [{"task_id": "1", "status": "completed", "a": 1, "r": 2}] or len(rows) == 1
    args = parse_line("submit -c 2 --name 'my job' -- python -c \"print('a b')\"")
    assert args.command == ["python", "-c", "print('a b')"] and args.name == "my job"
