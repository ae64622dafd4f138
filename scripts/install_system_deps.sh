#!/usr/bin/env bash
# Install the system tools the deploy tests need: a real OpenSSH server and client, rsync, and
# systemd (its systemd-analyze checks service units).
# Idempotent: does nothing (no apt-get update) when everything is already installed.
# Needs root or sudo on Debian/Ubuntu; elsewhere prints what to install and exits 0, so the
# deploy tests then skip with a clear reason instead of failing the run.
set -euo pipefail

need=()
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 || need+=(openssh-server)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
# systemd-analyze checks the service unit text (tests/test_service.py)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)

if [ ${#need[@]} -eq 0 ]; then
    echo "install_system_deps: ssh, sshd, rsync and systemd-analyze already present"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_system_deps: no apt-get here; install these yourself: ${need[*]}" >&2
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "install_system_deps: not root and no sudo; install these yourself: ${need[*]}" >&2
        exit 0
    fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "install_system_deps: installing ${need[*]}"
# Retry: mirrors can be flaky. Bounded: 3 tries.
for try in 1 2 3; do
    if $SUDO apt-get update -qq && \
       $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
        break
    fi
    if [ "$try" -eq 3 ]; then
        echo "install_system_deps: apt-get failed; the deploy tests will skip" >&2
        exit 1
    fi
    sleep 5
done
# Debian's postinst may try to start the daemon in a container; the tests run their own sshd.
echo "install_system_deps: done ($(/usr/sbin/sshd -V 2>&1 | head -1 || true))"
