#!/usr/bin/env bash
# Quick start: set up .venv if needed and run JupyterLab whose server is the cluster host,
# with an embedded runner for this machine (a one-node cluster; no Docker needed).
# The cluster's database, task logs and runner state stay in this checkout, in .kohakuriver/
# (git-ignored, like the executed notebooks of jobs in kohakuriver-jobs/).
#   bash scripts/run.sh                  # extra arguments go to `jupyter lab`
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=.venv/bin/python
[[ -x $PY ]] || python3 -m venv .venv
if ! "$PY" -c 'import kohakuriver_lab, jupyterlab' 2>/dev/null; then
    echo "== pip install -e .[lab]" >&2
    "$PY" -m pip install -q --disable-pip-version-check -e ".[lab]"
fi

# the .venv first on PATH: `python` in kernels and in the embedded node's tasks is the .venv's
export PATH="$PWD/.venv/bin:$PATH"
args=(--ClusterHostApp.embedded_runner=True "--ClusterHostApp.data_dir=$PWD/.kohakuriver")
[[ $(id -u) != 0 ]] || args+=(--allow-root) # Jupyter refuses root without it
exec .venv/bin/jupyter lab "${args[@]}" "$@"
