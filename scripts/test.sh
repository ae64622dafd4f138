#!/usr/bin/env bash
# The test command (README "Quick start", run by .ci/run): sets up what it needs on
# a fresh machine, then runs the whole suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# OpenSSH server and rsync for the deploy tests (a real sshd on loopback).
if [ "$(id -u)" = "0" ] || command -v sudo >/dev/null 2>&1; then
  bash scripts/install_system_deps.sh || echo "[test] could not install system packages; deploy tests will be skipped" >&2
else
  echo "[test] not root: skipping system packages; deploy tests need openssh-server and rsync" >&2
fi
exec .venv/bin/python -m pytest "$@"
