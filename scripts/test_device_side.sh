#!/usr/bin/env bash
# The on-device side (spec, preprocess, bundle, runtime, io, TensorRT doubles, selftest, deploy)
# under an older Python without torch, as on a board: a virtualenv with only the [device]
# extra, ONNX Runtime and OpenCV at the versions that board has.
#   bash scripts/test_device_side.sh 3.6   JetPack 4.6 (Nano): numpy 1.19.5, OpenCV 4.1.1, ORT 1.10
#   bash scripts/test_device_side.sh 3.8   JetPack 5
# JD_SETUP_ONLY=1: prepare the virtualenv and stop (.ci/run prepares all of them at once).
# Skips (exit 0) when no such interpreter is found (pyenv's on this image and on CI).
set -euo pipefail
cd "$(dirname "$0")/.."
VER=${1:?usage: test_device_side.sh 3.6|3.8 [pytest args]}; shift
TAG=${VER/./}
isver() { [ -n "$1" ] && "$1" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$VER'" 2>/dev/null; }
PYX=""
for cand in "$(command -v "python$VER" || true)" $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$VER".*/bin/python"$VER" 2>/dev/null); do
  if isver "$cand"; then PYX=$cand; break; fi
done
if [ -z "$PYX" ]; then
  echo "[py$TAG] no Python $VER interpreter found: skipping the device-side $VER run" >&2
  exit 0
fi
VENV=.venv$TAG
case "$VER" in
  3.6)  # the Nano's stack; pip 21.3 is the last for 3.6 and knows manylinux2014 wheels
    PINS="numpy==1.19.5 opencv-python-headless==4.1.1.26 onnxruntime==1.10.0 onnx==1.11.0 pytest==7.0.1 pytest-timeout==2.1.0" ;;
  *)
    PINS="onnxruntime opencv-python-headless onnx pytest pytest-timeout" ;;
esac
# With JD_VENV_CACHE (CI sets it): skip every pip step when this venv was built from the same
# setup.py, pins and interpreter; copy it from the cache on a hit; a miss builds from scratch.
. scripts/venv_cache.sh
KEY=$(venv_key "device$TAG" "$PYX" setup.py scripts/test_device_side.sh)
if venv_current "$VENV" "$KEY"; then
  echo "[py$TAG] $VENV is up to date (env $KEY)" >&2
elif venv_restore "$VENV" "$KEY"; then
  echo "[py$TAG] $VENV from the environment cache (env $KEY)" >&2
else
  if [ -n "${JD_VENV_CACHE:-}" ] && [ -e "$VENV" ]; then
    echo "[py$TAG] environment $KEY not cached: building $VENV from scratch" >&2
    rm -rf "$VENV"
  fi
  [ -x "$VENV/bin/python" ] || "$PYX" -m venv "$VENV"
  PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
  [ "$VER" = 3.6 ] && $PIP install "pip>=21,<22"
  # onnx only builds the tests' small models; the runtime itself reads bundles with onnxruntime
  $PIP install $PINS
  $PIP install -e ".[device]"
  venv_store "$VENV" "$KEY"
fi
# torch must not be importable here: the device runtime may not need it.
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then echo "[py$TAG] torch is installed in $VENV: remove it" >&2; exit 1; fi
[ -z "${JD_SETUP_ONLY:-}" ] || exit 0  # .ci/run prepares the environments first, all at once
TESTS="tests/test_core_spec.py tests/test_core_preprocess.py tests/test_core_files.py tests/test_core_machine.py
  tests/test_core_py36.py tests/test_core_oracle.py tests/test_selftest.py
  $(ls tests/test_bundle_*.py tests/test_runtime_*.py tests/test_media_*.py tests/test_deploy_*.py tests/test_service_deploy.py 2>/dev/null)"
if [ "$VER" = 3.8 ]; then
  # The tests that drive real servers and processes (sshd, the registry's fleet, live sinks over
  # sockets) run under 3.6 and the host's 3.11, the interpreters at either end; 3.8 runs the rest
  # of the device side (in-process code, where an interpreter or library version shows).
  HEAVY="deploy_ssh|deploy_faults|deploy_agent_faults|deploy_agent_fleet|deploy_agent_poll|deploy_agent_resume"
  HEAVY="$HEAVY|media_http|media_rtsp|media_sources|service_deploy"
  TESTS=$(printf '%s\n' $TESTS | grep -Ev "/test_($HEAVY)\.py$")
fi
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider $TESTS "$@"
