#!/usr/bin/env bash
# Make or refresh the project's virtual environment (.venv) and install everything it needs.
# Sourced by scripts/lab.sh and scripts/test.sh. Downloads packages only; never data.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "error: Python >= 3.10 is needed (got $("$PY" --version))" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch is pinned (pyproject.toml): an unpinned torch would pull a multi-GB CUDA build on CPU-only machines
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
# keep IPython / Jupyter state inside the project, not in $HOME
export IPYTHONDIR="$ROOT/.ipython"
export JUPYTER_CONFIG_DIR="$ROOT/.jupyter/config" JUPYTER_DATA_DIR="$ROOT/.jupyter/data" JUPYTER_RUNTIME_DIR="$ROOT/.jupyter/runtime"
export SDL_VIDEODRIVER=dummy MPLBACKEND=Agg
mkdir -p "$IPYTHONDIR" "$JUPYTER_CONFIG_DIR" "$JUPYTER_DATA_DIR" "$JUPYTER_RUNTIME_DIR"
