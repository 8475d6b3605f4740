"""Runner test fixtures; makes ``runner_helpers`` importable (tests use --import-mode=importlib)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"
