"""Names shared by the docker backend tests (importable: conftest puts this dir on sys.path)."""

from __future__ import annotations

BUSYBOX = "kohakuriver-test/busybox"
PYTHON = "kohakuriver-test/python"
