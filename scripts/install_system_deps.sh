#!/usr/bin/env bash
# Install the system tools the tests need, in groups; each group is best-effort, so a package a
# distribution lacks costs only the tests that need it (they skip with the reason):
#   deploy: a real OpenSSH server and client, rsync, and systemd (systemd-analyze checks units)
#   stream: GStreamer + its RTSP server and H.264 encoders (rtsp:// sink), ffmpeg (ffprobe, an RTSP
#           client), chromium (headless screenshots of the http:// live view), and the headers
#           PyGObject builds against (then scripts/setup.sh stream puts PyGObject in the venv)
# Idempotent: does nothing (no apt-get update) when everything is already installed.
# Needs root or sudo on Debian/Ubuntu; elsewhere prints what to install and exits 0, so the
# tests then skip with a clear reason instead of failing the run.
# On a Jetson the stream group is: sudo apt-get install python3-gi gir1.2-gst-rtsp-server-1.0
# gstreamer1.0-plugins-good (JetPack ships nvv4l2h264enc; python3-gi serves the system Python).
set -euo pipefail
cd "$(dirname "$0")/.."

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

deploy=()
command -v ssh >/dev/null 2>&1 || deploy+=(openssh-client)
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 || deploy+=(openssh-server)
command -v rsync >/dev/null 2>&1 || deploy+=(rsync)
command -v ssh-keygen >/dev/null 2>&1 || deploy+=(openssh-client)
# systemd-analyze checks the service unit text (tests/test_service_unit.py)
command -v systemd-analyze >/dev/null 2>&1 || deploy+=(systemd)
# a real OCI registry (CNCF distribution) and htpasswd for the fleet tests (publish, agent)
command -v docker-registry >/dev/null 2>&1 || deploy+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || deploy+=(apache2-utils)
# locale sources: a service test builds a Latin-1 locale (the board's passwd read under it)
[ -f /usr/share/i18n/charmaps/ISO-8859-1.gz ] && [ -f /usr/share/i18n/locales/en_US ] || deploy+=(locales)

stream=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
           gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-libav gstreamer1.0-tools \
           ffmpeg chromium libgirepository1.0-dev libcairo2-dev pkg-config gcc python3-dev; do
    have_pkg "$p" || stream+=("$p")
  done
fi

stream_extra() {  # PyGObject into the venv once its headers are here (setup.sh ran before us)
  if [ -x "${VENV:-.venv}/bin/python" ]; then bash scripts/setup.sh stream || true; fi
}

if [ ${#deploy[@]} -eq 0 ] && [ ${#stream[@]} -eq 0 ]; then
    echo "install_system_deps: ssh, sshd, rsync, systemd-analyze, GStreamer, ffmpeg and chromium already present"
    stream_extra
    exit 0
fi
need=("${deploy[@]}" "${stream[@]}")

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
# Retry: mirrors can be flaky. Bounded: 3 tries.
for try in 1 2 3; do
    if $SUDO apt-get update -qq; then break; fi
    if [ "$try" -eq 3 ]; then
        echo "install_system_deps: apt-get update failed; the deploy and stream tests will skip" >&2
        exit 1
    fi
    sleep 5
done

# install_group NAME PKG...: the whole group, else package by package (one missing name must not
# cost the others); returns 1 when something stayed missing.
install_group() {
    local name=$1; shift
    [ $# -eq 0 ] && return 0
    echo "install_system_deps: installing ($name) $*"
    local start=$SECONDS
    if $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
        echo "install_system_deps: $name done in $((SECONDS - start)) s"
        return 0
    fi
    local missing=()
    for p in "$@"; do
        $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    echo "install_system_deps: $name: could not install ${missing[*]:-nothing}; tests needing them will skip" >&2
    [ ${#missing[@]} -eq 0 ]
}

rc=0
install_group deploy "${deploy[@]}" || rc=1
install_group stream "${stream[@]}" || true  # optional sinks: their tests skip with the reason
stream_extra
# Debian's postinst may try to start the daemon in a container; the tests run their own sshd.
echo "install_system_deps: done ($(/usr/sbin/sshd -V 2>&1 | head -1 || true))"
exit $rc
