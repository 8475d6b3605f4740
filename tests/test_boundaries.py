"""Import boundaries between the core, the host (server) and the runner (architecture §2).

Runtime checks import modules in a fresh interpreter and look at ``sys.modules``; static checks
parse ``server/`` and ``runner/`` so even lazy (function-level) imports are caught. Both walk the
packages, so they cover modules as they are added.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CORE_FORBIDDEN = [
    "kohakuriver_lab.server",
    "kohakuriver_lab.runner",
    "sqlalchemy",
    "jupyter_server",
]
RUNNER_FORBIDDEN = ["kohakuriver_lab.server", "jupyter_server", "sqlalchemy"]
SERVER_FORBIDDEN = ["kohakuriver_lab.runner"]

# Each module is imported in turn; a forbidden module is blamed on the import that loaded it.
# A module whose *third-party* import is missing (an optional extra such as docker) is skipped.
_PROBE = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys

    roots, walk, forbidden = json.loads(sys.argv[1])

    def bad():
        return {m for m in sys.modules for f in forbidden if m == f or m.startswith(f + ".")}

    def load(name):
        before = bad()
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and not exc.name.startswith("kohakuriver_lab"):
                report["skipped"][name] = exc.name
                return None
            raise
        report["checked"].append(name)
        new = bad() - before
        if new:
            report["violations"][name] = sorted(new)
        return module

    def walk_tree(package):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            module = load(info.name)
            if info.ispkg and module is not None and hasattr(module, "__path__"):
                walk_tree(module)

    report = {"checked": [], "skipped": {}, "violations": {}}
    for root in roots:
        module = load(root)
        if walk and module is not None and hasattr(module, "__path__"):
            walk_tree(module)
    blamed = {m for mods in report["violations"].values() for m in mods}
    if bad() - blamed:
        report["violations"]["(unattributed)"] = sorted(bad() - blamed)
    print(json.dumps(report))
    """
)


def probe(roots: list[str], forbidden: list[str], walk: bool = True) -> dict[str, object]:
    """Import ``roots`` (and, with ``walk``, every module under them) in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps([roots, walk, forbidden])],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


# =============================================================================
# Runtime
# =============================================================================


def test_bare_package_import_is_light() -> None:
    """Kernels import the package: it must not pull in the client, host or runner."""
    report = probe(
        ["kohakuriver_lab"],
        [*CORE_FORBIDDEN, "kohakuriver_lab.client", "httpx", "websockets"],
        walk=False,
    )
    assert report["violations"] == {}


def test_core_modules_import_no_host_or_runner() -> None:
    named = [
        "kohakuriver_lab",
        "kohakuriver_lab.models",
        "kohakuriver_lab.protocol",
        "kohakuriver_lab.errors",
        "kohakuriver_lab.ids",
        "kohakuriver_lab.client",
    ]
    report = probe(named, CORE_FORBIDDEN, walk=False)
    assert report["violations"] == {}
    assert report["checked"] == named


def test_every_core_module_imports_no_host_or_runner() -> None:
    """Every module of the core package (not only the named ones) keeps the boundary."""
    package = REPO / "kohakuriver_lab"
    roots = sorted(
        f"kohakuriver_lab.{path.stem if path.suffix == '.py' else path.name}"
        for path in package.iterdir()
        if path.name not in ("server", "runner", "__init__.py", "__main__.py")
        and not path.name.startswith(".")
        and (path.suffix == ".py" or (path / "__init__.py").is_file())
    )
    report = probe(roots, CORE_FORBIDDEN)
    assert report["violations"] == {}


def test_runner_imports_no_host() -> None:
    report = probe(["kohakuriver_lab.runner"], RUNNER_FORBIDDEN)
    assert report["violations"] == {}
    assert "kohakuriver_lab.runner" in report["checked"]  # type: ignore[operator]


def test_server_imports_no_runner() -> None:
    report = probe(["kohakuriver_lab.server"], SERVER_FORBIDDEN)
    assert report["violations"] == {}
    assert "kohakuriver_lab.server" in report["checked"]  # type: ignore[operator]


@pytest.mark.parametrize("name", ["server", "runner"])
def test_no_stray_top_level_package(name: str, tmp_path: Path) -> None:
    """Only ``kohakuriver_lab`` is installed; ``server``/``runner`` are not importable."""
    result = subprocess.run(
        [sys.executable, "-c", f"import {name}; print({name}.__file__)"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode != 0, f"`import {name}` worked: {result.stdout.strip()}"
    assert f"No module named '{name}'" in result.stderr


# =============================================================================
# Static (catches lazy imports inside functions)
# =============================================================================


def _module_name(path: Path) -> str:
    parts = ["kohakuriver_lab", *path.relative_to(REPO).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Absolute names a module imports, relative imports resolved, plus ``import_module("...")``."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def violations(folder: str, forbidden: list[str]) -> list[str]:
    bad = []
    for path in sorted((REPO / folder).rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        for line, name in imported_names(source, _module_name(path), path.name == "__init__.py"):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(REPO)}:{line}: imports {name}")
    return bad


def test_static_server_does_not_import_runner() -> None:
    assert violations("server", [*SERVER_FORBIDDEN, "runner"]) == []


def test_static_runner_does_not_import_host() -> None:
    assert violations("runner", [*RUNNER_FORBIDDEN, "server"]) == []


def test_static_scan_resolves_relative_imports() -> None:
    """The scanner itself: relative and dynamic imports are seen."""
    assert _module_name(REPO / "runner" / "backends" / "__init__.py") == (
        "kohakuriver_lab.runner.backends"
    )
    source = (
        "from ...server import app\nimport importlib\nimportlib.import_module('sqlalchemy.orm')\n"
    )
    names = [n for _, n in imported_names(source, "kohakuriver_lab.runner.backends.x", False)]
    assert "kohakuriver_lab.server.app" in names
    assert "sqlalchemy.orm" in names
    names = [n for _, n in imported_names("from . import db\n", "kohakuriver_lab.server", True)]
    assert "kohakuriver_lab.server.db" in names
