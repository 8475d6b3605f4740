#!/usr/bin/env bash
# The project's test command (README; .ci/run calls it): lint, type-check, then pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/client -k follow
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${KOHAKURIVER_PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python3

echo "== ruff check" >&2
"$PY" -m ruff check .
echo "== mypy -p kohakuriver_lab" >&2
"$PY" -m mypy -p kohakuriver_lab
echo "== pytest $*" >&2
"$PY" -m pytest "$@"
