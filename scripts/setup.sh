#!/usr/bin/env bash
# Set up a fresh workstation/CI machine: a virtualenv in .venv with jetson-deploy
# and its host extras.  CPU-only: torch is pinned to 2.13.0 (a plain `torch`
# would pull gigabytes of CUDA wheels).  Idempotent: re-running is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "[setup] installing torch==2.13.0 (CPU)" >&2
  $PIP install "torch==2.13.0"
fi
echo "[setup] installing jetson-deploy[host,dev]" >&2
$PIP install -e ".[host,dev]"
echo "[setup] ready: $VENV/bin/jetson-deploy" >&2
