#!/usr/bin/env bash
# The project's test command (README Quick start; .ci/run calls it after installing and
# starting the daemons): set up .venv if needed, then ruff, mypy and the whole pytest suite.
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh tests/client -k follow   # extra arguments go to pytest
# Without KOHAKURIVER_TEST_PG_URL, a throwaway PostgreSQL is started for the run when its
# server binaries are installed (apt-get install postgresql); otherwise the PostgreSQL tests
# skip, or fail under KOHAKURIVER_REQUIRE_INTEGRATION=1 (as in CI).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# ===== Python environment =====
PY=${KOHAKURIVER_PYTHON:-.venv/bin/python}
if [[ ! -x $PY ]]; then
    echo "== creating .venv" >&2
    python3 -m venv .venv
    PY=.venv/bin/python
fi
if ! "$PY" -c 'import kohakuriver_lab, pytest_jupyter, psycopg, mypy, ruff, hypothesis, schemathesis, jsonschema, openapi_python_client' 2>/dev/null; then
    echo "== pip install -e .[test,postgres]" >&2
    "$PY" -m pip install -q --disable-pip-version-check -e ".[test,postgres]"
fi

# ===== PostgreSQL for the DB tests, when none is given =====
if [[ -z ${KOHAKURIVER_TEST_PG_URL:-} ]]; then
    # shellcheck source=../.ci/postgres.sh
    source .ci/postgres.sh
    if pg_bindir >/dev/null 2>&1; then
        export KR_PG_PORT=${KR_PG_PORT:-54331}
        pg_cluster_start >&2
        trap 'pg_cluster_stop --remove >&2' EXIT
        KOHAKURIVER_TEST_PG_URL=$(pg_cluster_url)
        export KOHAKURIVER_TEST_PG_URL
    else
        echo "== no PostgreSQL server binaries: PostgreSQL tests will skip" >&2
    fi
fi

# ===== Checks =====
echo "== ruff check" >&2
"$PY" -m ruff check .
echo "== mypy -p kohakuriver_lab" >&2
"$PY" -m mypy -p kohakuriver_lab
echo "== pytest $*" >&2
"$PY" -m pytest "$@"
