#!/usr/bin/env bash
# Set up a fresh workstation/CI machine: a virtualenv in .venv with jetson-deploy
# and its host extras.  CPU-only: torch is pinned to 2.13.0 (a plain `torch`
# would pull gigabytes of CUDA wheels).  Idempotent: re-running is quick.
# `setup.sh stream` only adds the [stream] extra (PyGObject, for rtsp://), best-effort: it builds
# against GObject-introspection headers (scripts/install_system_deps.sh installs them, then runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
stream_extra() {
  "$VENV/bin/python" -c "import gi" 2>/dev/null && return 0
  if command -v gcc >/dev/null 2>&1 && pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null; then
    echo "[setup] installing jetson-deploy[stream] (PyGObject, for rtsp://)" >&2
    $PIP install -e ".[stream]" || echo "[setup] PyGObject did not build: rtsp:// and its tests are unavailable" >&2
  else
    echo "[setup] no GObject-introspection/cairo headers: skipping PyGObject (rtsp://); scripts/install_system_deps.sh installs them" >&2
  fi
}
if [ "${1:-}" = "stream" ]; then
  [ -x "$VENV/bin/python" ] && stream_extra
  exit 0
fi
# With JD_VENV_CACHE (CI sets it): nothing to do when this venv was built from the same setup.py,
# pins and interpreter; a cache hit is copied in; a miss builds from scratch below, then is kept.
. scripts/venv_cache.sh
KEY=$(venv_key host "$PY" setup.py scripts/setup.sh)
if venv_current "$VENV" "$KEY"; then
  echo "[setup] $VENV is up to date (env $KEY): nothing to install" >&2
  exit 0
fi
if venv_restore "$VENV" "$KEY"; then
  echo "[setup] $VENV from the environment cache (env $KEY)" >&2
  exit 0
fi
if [ -n "${JD_VENV_CACHE:-}" ] && [ -e "$VENV" ]; then
  echo "[setup] environment $KEY not cached: building $VENV from scratch" >&2
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "[setup] installing torch==2.13.0 (CPU)" >&2
  $PIP install "torch==2.13.0"
fi
echo "[setup] installing jetson-deploy[host,dev]" >&2
$PIP install -e ".[host,dev]"
stream_extra
venv_store "$VENV" "$KEY"
echo "[setup] ready: $VENV/bin/jetson-deploy" >&2
