"""Import boundaries of the runner, and the supervisor's stdlib-only promise."""

from __future__ import annotations

import subprocess
import sys

CHECK = (
    "import sys, importlib\n"
    "for m in {mods!r}: importlib.import_module(m)\n"
    "print(sorted(n for n in {banned!r} if n in sys.modules))\n"
)


def _loaded(mods: list[str], banned: list[str]) -> str:
    code = CHECK.format(mods=mods, banned=banned)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_runner_does_not_import_host_side() -> None:
    mods = ["kohakuriver_lab.runner.app", "kohakuriver_lab.runner.backends.local"]
    banned = ["kohakuriver_lab.server", "jupyter_server", "sqlalchemy"]
    assert _loaded(mods, banned) == "[]"


def test_supervisor_imports_only_the_stdlib() -> None:
    banned = ["pydantic", "psutil", "pynvml", "websockets", "traitlets"]
    assert _loaded(["kohakuriver_lab.runner.supervisor"], banned) == "[]"
