"""One vocabulary across magics, ``Cluster`` and ``Client``: ``task_id``, statuses that print
as their wire value, notebook jobs named after their file, executed notebooks as nbformat."""

from __future__ import annotations

import re

import pytest

from .conftest import notebook, write_notebook

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_submitted_task_speaks_task_id_and_status_strings(kernel):
    kernel.run("t = %kohaku submit --name vocab -- python3 -c 'print(1)'")
    task_id = kernel.value("t.task_id")
    # its repr tells what it is right after the submit, not "<Task ... ?>"
    shown = kernel.value("repr(t)")
    assert re.fullmatch(
        rf"<Task {task_id} 'vocab' (pending|assigning|running|completed)( on \S+)?>", shown
    ), shown
    kernel.run("t.wait(60)")
    assert kernel.run("print(t.status)").stdout == "completed\n"
    assert kernel.run("print(t.info.status)").stdout == "completed\n"
    assert kernel.value("f'{t.info.status}'") == "completed"
    # the REST client names the same task the same way
    assert kernel.value("t.cluster.client.get_task(t.task_id).task_id") == task_id
    assert kernel.value("t.id") == task_id  # the deprecated alias still answers


def test_notebook_jobs_are_named_after_their_file(kernel, workdir):
    write_notebook(workdir / "named.ipynb", notebook("print('hi from named')"))
    kernel.run(
        "from kohakuriver_lab import Cluster\n"
        "by_magic = %kohaku run named.ipynb\n"
        "by_api = Cluster().run_notebook('named.ipynb')\n"
        "by_magic.wait(60); by_api.wait(60)\n"
    )
    assert kernel.value("[by_magic.info.name, by_api.info.name]") == ["named.ipynb"] * 2
    assert kernel.value("[str(by_magic.info.status), str(by_api.info.status)]") == ["completed"] * 2
    assert kernel.value("type(by_api.output_notebook()).__name__") == "NotebookNode"
    texts = kernel.value(
        "[''.join(o.get('text', '')) for c in by_api.output_notebook().cells for o in c.outputs]"
    )
    assert "hi from named\n" in texts
