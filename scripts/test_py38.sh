#!/usr/bin/env bash
# The on-device side (spec, preprocess, bundle, runtime, io, deploy) under Python 3.8, as on
# JetPack 5, without torch: a second virtualenv with only the [device] extra, onnxruntime and
# OpenCV.  Skips (exit 0) when no python3.8 is found.
set -euo pipefail
cd "$(dirname "$0")/.."
is38() { [ -n "$1" ] && "$1" -c "import sys; assert sys.version_info[:2] == (3, 8)" 2>/dev/null; }
if [ -z "${PY38:-}" ]; then
  for cand in "$(command -v python3.8 || true)" $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.8*/bin/python3.8 2>/dev/null); do
    if is38 "$cand"; then PY38=$cand; break; fi
  done
fi
if ! is38 "${PY38:-}"; then
  echo "[py38] no Python 3.8 interpreter found: skipping the device-side 3.8 run" >&2
  exit 0
fi
VENV=.venv38
[ -x "$VENV/bin/python" ] || "$PY38" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
# onnx only builds the tests' small models; the runtime itself reads bundles with onnxruntime
$PIP install -e ".[device]" pytest pytest-timeout onnxruntime opencv-python-headless onnx
# torch must not be importable here: the device runtime may not need it.
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then echo "[py38] torch is installed in $VENV: remove it" >&2; exit 1; fi
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  tests/test_core_spec.py tests/test_core_preprocess.py tests/test_core_files.py tests/test_core_platform.py \
  $(ls tests/test_bundle_*.py tests/test_runtime_*.py tests/test_io_*.py tests/test_deploy_*.py 2>/dev/null) "$@"
