"""``%kohaku`` in a real IPython kernel against a real host with the embedded local runner."""

from __future__ import annotations

import getpass

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_import_is_light(kernel):
    mods = kernel.value(
        "[m for m in ('nbformat', 'papermill', 'kohakuriver_lab.server', 'kohakuriver_lab.runner',"
        " 'jupyter_server') if m in __import__('sys').modules]"
    )
    assert mods == []


def test_help_lists_every_action(kernel):
    doc = kernel.value("get_ipython().find_line_magic('kohaku').__doc__")
    for text in ("submit", "--follow", "%kohaku run", "--sweep", "logs", "result", "nodes"):
        assert text in doc


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%kohaku sumbit -- true", "invalid choice: 'sumbit'"),
        ("%kohaku", "the following arguments are required: ACTION"),
        ("%kohaku submit", "needs a command"),
        ("%kohaku submit -g two -- true", "-g/--gpus takes a count"),
        ("%kohaku submit -c lots -- true", "argument -c/--cores: invalid int value"),
        ("%kohaku submit --image a --env b -- true", "not allowed with argument"),
        ("%kohaku run missing.ipynb", "notebook 'missing.ipynb' not found"),
        ("%kohaku run x.ipynb --sweep alpha", "--sweep takes NAME=V1,V2"),
        ("%kohaku kill abc", "a task ID is a number"),
        ("%kohaku status 999999", "not found"),
        ("%kohaku submit -m lots -- true", "memory"),
    ],
)
def test_usage_errors(kernel, line, message):
    reply = kernel.run(line, check=False)
    assert reply.error is None  # IPython prints a UsageError without a traceback
    assert reply.stderr.startswith("UsageError: "), reply
    assert message.lower() in reply.stderr.lower()


def test_submit_follow_streams_output(kernel):
    reply = kernel.run(
        "t = %kohaku submit --follow --name hello -- python3 -c "
        "\"import sys; print('hello from the node'); print('to stderr', file=sys.stderr)\""
    )
    assert "hello from the node" in reply.stdout
    assert "to stderr" in reply.stderr
    assert kernel.value("t.refresh().status.value") == "completed"


def test_cell_magic_glue_and_result(kernel):
    kernel.run(
        "%%kohaku submit --block --name cellmagic\n"
        "import kohakuriver_lab\n"
        "print('in the cell')\n"
        "kohakuriver_lab.glue('answer', {'x': 42})\n"
    )
    task_id = kernel.value("str(_.task_id)")
    assert kernel.value("_.info.status.value") == "completed"
    result = kernel.run(f"%kohaku result {task_id}").result
    assert result == "{'answer': {'x': 42}}"
    assert kernel.run(f"%kohaku result {task_id} answer").result == "{'x': 42}"
    assert "in the cell" in kernel.run(f"%kohaku logs {task_id}").stdout


def test_cell_magic_shell(kernel):
    kernel.run("%%kohaku submit --shell --block\necho one; echo two >&2\n")
    task_id = kernel.value("str(_.task_id)")
    assert kernel.run(f"%kohaku logs {task_id}").stdout == "one\n"
    assert kernel.run(f"%kohaku logs {task_id} --stderr").stdout == "two\n"


def test_kill_and_wait(kernel):
    kernel.run("t = %kohaku submit -- sleep 60")
    task_id = kernel.value("str(t.task_id)")
    kernel.value("t.wait and str(t.task_id)")
    out = kernel.run(f"%kohaku kill {task_id}").stdout
    assert f"task {task_id}: kill requested" in out
    out = kernel.run(f"%kohaku wait {task_id} --timeout 20").stdout
    assert f"task {task_id}: killed" in out


def test_follow_logs_of_running_task(kernel):
    kernel.run(
        "t = %kohaku submit -- python3 -u -c "
        "\"import time; [print('tick', i) or time.sleep(0.2) for i in range(3)]\""
    )
    task_id = kernel.value("str(t.task_id)")
    out = kernel.run(f"%kohaku logs {task_id} --follow").stdout
    assert "tick 0" in out and "tick 2" in out


def test_task_widget_updates_from_events(kernel):
    """The widget's state moves pending/running → completed with no call from the cell."""
    kernel.run(
        "import time\n"
        "t = %kohaku submit --name widget -- python3 -u -c \"import time; print('w'); time.sleep(1)\"\n"
        "w = t.widget()\n"
        "seen = [w.status]\n"
        "deadline = time.monotonic() + 30\n"
        "while w.status != 'completed' and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)\n"
        "    if seen[-1] != w.status: seen.append(w.status)\n"
    )
    seen = kernel.value("seen")
    assert seen[-1] == "completed"
    assert "running" in seen
    assert kernel.value("w.kill_button.disabled") is True
    assert "completed" in kernel.value("w.header.value")
    # displaying it renders a widget view (and loads the log tail of the ended task)
    reply = kernel.run("t")
    assert any("application/vnd.jupyter.widget-view+json" in d for d in reply.data)
    assert kernel.value("w.log_text") == "w\n"
    # one events socket for the whole kernel
    assert kernel.value("t.cluster.hub.connects") >= 1


def test_kill_button(kernel):
    kernel.run(
        "import time\n"
        "t = %kohaku submit -- sleep 60\n"
        "w = t.widget()\n"
        "w.kill_button.click()\n"
        "info = t.wait(20)\n"
        "deadline = time.monotonic() + 10\n"
        "while w.status != 'killed' and time.monotonic() < deadline: time.sleep(0.02)\n"
    )
    assert kernel.value("info.status.value") == "killed"
    assert kernel.value("w.status") == "killed"


def test_nodes_and_tasks(kernel):
    reply = kernel.run("cw = %kohaku nodes\ncw")
    assert any("application/vnd.jupyter.widget-view+json" in d for d in reply.data)
    assert "embedded" in kernel.value("list(cw.nodes)")
    kernel.run(
        "for _ in range(6):\n    get_ipython().run_line_magic('kohaku', 'submit -c 0 -- true')"
    )
    out = kernel.run("%kohaku tasks -n 5").stdout.splitlines()
    assert out[0].split() == ["task", "status", "name", "owner", "node", "command"]
    assert len(out) == 6  # header + 5 rows (newlines in commands are flattened)
    # --mine filters by the cluster's name for this user (GET /kohakuriver/api/me); token
    # callers are the host's owner
    mine = kernel.run("%kohaku tasks --mine -n 5").stdout.splitlines()
    assert len(mine) == 6 and all(f" {getpass.getuser()} " in row for row in mine[1:])
    out = kernel.run("%kohaku status").stdout
    assert "1/1 nodes online" in out
