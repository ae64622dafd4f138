"""``bundle engine BUNDLE --on USER@HOST``: build the TensorRT engine once, on a reference board of
the fleet's kind, and ship it in the bundle.

A Nano building ResNet-50 at first load takes minutes and can run out of memory; every board of
one kind (same TensorRT, same SM) can load the same plan.  Over the transport ``deploy`` uses
(the system ssh, rsync or sftp; ``--ssh-config``, ``-o``): upload the verified bundle into a
``mktemp -d`` directory on the board, run ``jetson-deploy bundle engine DIR --json`` there (its
TensorRT, its GPU; an engine cache inside that directory), bring the plan back over ssh, check
its size and sha256 against what the board computed, and add it with
:func:`~jetson_deploy.bundle.writer.add_engine` for the target the board reported.  The directory
on the board is removed afterwards, whatever happened.
"""
import json
import logging
import re
import shlex
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

from .._files import sha256_file
from ..errors import BadInput, CheckFailed
from .inventory import parse_host
from .local_bundle import open_local_bundle
from .options import Connection
from .transport import RemoteError, SSHTransport, describe_failure

log = logging.getLogger(__name__)

_WORKDIR_RE = re.compile(r"^/[A-Za-z0-9._/\-]+/jd-engine\.[A-Za-z0-9]+\Z")

_PREPARE = r"""jd_main() {
d=$(mktemp -d "${TMPDIR:-/tmp}/jd-engine.XXXXXXXX") || { echo "ERROR cannot create a directory under ${TMPDIR:-/tmp}"; exit 11; }
echo "WORKDIR $d"
command -v rsync >/dev/null 2>&1 && echo "HAVE rsync"
command -v sha256sum >/dev/null 2>&1 && echo "HAVE sha256sum"
}
jd_main
"""


class RemoteEngineOptions(object):
    """``remote_cmd``: how the board starts jetson-deploy (``jetson-deploy``, or a venv's
    ``/home/nvidia/jd/bin/jetson-deploy``); ``precision``/``tensorrt``/``sm`` are passed on to the
    board's ``bundle engine`` (its own detection otherwise); ``timeout``: seconds the build may take."""

    __slots__ = ("remote_cmd", "precision", "tensorrt", "sm", "timeout", "connection")

    def __init__(self, remote_cmd: str = "jetson-deploy", precision: "Optional[str]" = None, tensorrt: "Optional[str]" = None,
                 sm: "Optional[str]" = None, timeout: float = 3600.0, connection: "Optional[Connection]" = None) -> None:
        self.remote_cmd, self.precision, self.tensorrt, self.sm = remote_cmd, precision, tensorrt, sm
        self.timeout, self.connection = timeout, connection or Connection()

    def build_args(self, workdir: str) -> str:
        args = ["bundle", "engine", workdir + "/bundle", "--json", "--cache-dir", workdir + "/cache"]
        for flag, value in (("--precision", self.precision), ("--tensorrt", self.tensorrt), ("--sm", self.sm)):
            if value is not None:
                args += [flag, str(value)]
        # the user's own command for their own board (a venv path, a wrapper), then quoted arguments
        return "cd {} && {} {}".format(shlex.quote(workdir), self.remote_cmd, " ".join(shlex.quote(a) for a in args))


def _transport(host: str, c: "Connection") -> "SSHTransport":
    return SSHTransport(parse_host(host), ssh_config=c.ssh_config, connect_timeout=c.connect_timeout, ssh_options=c.ssh_options)


def _workdir(t: "SSHTransport") -> "tuple":
    res = t.run_script(_PREPARE, timeout=120)
    d = res.first("WORKDIR") or ""
    if res.rc != 0 or not _WORKDIR_RE.match(d):
        raise RemoteError("{}: could not make a work directory: {}".format(t.label, res.error_line()))
    have = set(res.lines("HAVE"))
    if "sha256sum" not in have:
        raise RemoteError("{}: no sha256sum on the board (GNU coreutils or busybox): the plan cannot be checked".format(t.label))
    return d, have


def _build(t: "SSHTransport", o: "RemoteEngineOptions", d: str) -> "Dict[str, Any]":
    """Run ``bundle engine --json`` on the board; its answer (engine path, target, how)."""
    res = t.run_script(o.build_args(d) + "\n", timeout=o.timeout)
    if res.rc != 0:
        last = [ln for ln in res.stderr.splitlines() if ln.strip()]
        raise RemoteError("the engine build on {} failed (exit {}): {}".format(
            t.label, res.rc, last[-1].strip() if last else describe_failure(res.stdout)))
    try:
        answer = json.loads(res.stdout)
        answer["engine"], answer["tensorrt"], answer["sm"], answer["precision"]  # noqa: B018 - all four are needed
    except (ValueError, KeyError, TypeError):
        raise RemoteError("{}: '{}' did not answer with bundle engine's JSON (is jetson-deploy installed there? "
                          "--remote-cmd names it): {}".format(t.label, o.remote_cmd, res.stdout.strip()[-200:]))
    return answer


def _fetch(t: "SSHTransport", remote: str, local: Path) -> "tuple":
    """The plan, as the board sees it (sha256, size), and its bytes over ssh into LOCAL."""
    res = t.run_script("sha256sum {0} && stat -c %s {0}\n".format(shlex.quote(remote)), timeout=600)
    lines = res.stdout.split()
    if res.rc != 0 or len(lines) < 3:
        raise RemoteError("{}: cannot read the built plan {}: {}".format(t.label, remote, res.error_line()))
    sha, size = lines[0], int(lines[-1])
    with open(str(local), "wb") as f:
        p = subprocess.run(t.ssh_argv() + [t.host.destination, "cat " + shlex.quote(remote)], stdout=f,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=3600)
    if p.returncode != 0:
        raise RemoteError("{}: fetching the plan failed: {}".format(t.label, describe_failure(p.stderr.decode("utf-8", "replace"))))
    got_size, got = local.stat().st_size, sha256_file(local)
    if (got, got_size) != (sha, size):
        raise CheckFailed("the plan from {} arrived with {} bytes and sha256 {}..., the board has {} bytes and {}...; "
                          "not added".format(t.label, got_size, got[:12], size, sha[:12]))
    return sha, size


def build_on(bundle_dir: str, host: str, options: "Optional[RemoteEngineOptions]" = None) -> "Dict[str, Any]":
    """Build BUNDLE_DIR's engine on HOST and add it to the bundle; return what was added."""
    from ..bundle.writer import add_engine

    o = options or RemoteEngineOptions()
    o.connection.check()
    if not Path(bundle_dir).is_dir():
        raise BadInput("bundle engine --on adds the engine to a bundle directory: unpack {} first".format(bundle_dir))
    t0 = time.monotonic()
    lb = open_local_bundle(bundle_dir)
    t = _transport(host, o.connection)
    d = ""
    try:
        signed = any(rel == "manifest.sig" for rel, _, _ in lb.files)
        d, have = _workdir(t)
        log.info("[%s] uploading %s %s (%.1f MiB) into %s", t.label, lb.name, lb.version, lb.total_size / 2.0 ** 20, d)
        t.upload(lb.root, [(rel, size) for rel, size, _ in lb.files], d + "/bundle",
                 "rsync" if "rsync" in have else "sftp", {})
        log.info("[%s] building the engine there (%s)", t.label, o.remote_cmd)
        answer = _build(t, o, d)
        target = {"tensorrt": answer["tensorrt"], "sm": answer["sm"], "precision": answer["precision"]}
        if answer.get("how") == "bundled":
            return {"bundle": bundle_dir, "host": t.label, "how": "bundled", "target": target, "artifact": None,
                    "seconds": round(time.monotonic() - t0, 1), "signature_removed": False}
        with tempfile.TemporaryDirectory(prefix="jd-engine-") as tmp:
            local = Path(tmp) / "plan.engine"
            _fetch(t, str(answer["engine"]), local)
            art = add_engine(bundle_dir, local, target)
    finally:
        lb.close()
        if d:
            try:
                t.run_script("rm -rf {}\n".format(shlex.quote(d)), timeout=120)
            except RemoteError as exc:
                log.warning("[%s] could not remove %s there: %s", t.label, d, exc)
    return {"bundle": bundle_dir, "host": t.label, "how": answer.get("how"), "target": target, "artifact": art,
            "seconds": round(time.monotonic() - t0, 1), "signature_removed": signed}
