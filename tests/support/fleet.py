"""Helpers for the fleet tests (a real docker-registry on loopback: ``registry`` fixture in
tests/conftest.py, :mod:`support.registry`): signed bundles, boards running ``jetson-deploy agent``
as subprocesses on their own roots, the CLI's JSON answers."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from support.bundles import random_bundle, write_bundle
from support.registry import RegistryServer

ROOT = Path(__file__).resolve().parents[2]
needs_registry = ("bin:docker-registry", "bin:htpasswd", "bin:openssl", "cryptography")


def jd(args: "Sequence[str]", timeout: float = 120, env: "Optional[Dict[str, str]]" = None) -> "subprocess.CompletedProcess":
    """``jetson-deploy ARGS`` as a subprocess of this interpreter; stdout and stderr apart."""
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "jetson_deploy"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, cwd=str(ROOT), timeout=timeout, env=e)


def keypair(base: Path, name: str) -> "Dict[str, str]":
    from jetson_deploy.bundle.sign import keygen

    return keygen(base / name)


def signed_bundle(base: Path, version: str, key: "Optional[Dict[str, str]]", name: str = "shapes",
                  sizes: "Optional[Dict[str, int]]" = None, manifest: "Optional[Dict[str, Any]]" = None) -> Path:
    """A random bundle NAME-VERSION signed by KEY (None: unsigned); MANIFEST adds top-level fields."""
    from jetson_deploy.bundle.sign import sign_bundle

    dest = base / "{}-{}".format(name, version)
    if manifest:
        files = {rel: os.urandom(n) for rel, n in (sizes or {"model.onnx": 40000, "labels.txt": 64}).items()}
        write_bundle(dest, name, version, files, manifest)
    else:
        random_bundle(dest, name, version, sizes)
    if key is not None:
        sign_bundle(dest, key["private_key"])
    return dest


def publish(srv: "RegistryServer", bundle: Path, ref: str, *extra: str) -> "Dict[str, Any]":
    r = jd(["publish", str(bundle), ref, "--json", "-q"] + list(extra) + srv.args())
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


class Board(object):
    """One simulated board: its own deploy root, the tag it follows, its TensorRT/SM and key."""

    def __init__(self, base: Path, board_id: str, ref: str, key: "Optional[str]", tensorrt: str = "8.6.2", sm: int = 87,
                 extra: "Sequence[str]" = ()) -> None:
        self.id, self.ref, self.key = board_id, ref, key
        self.root = base / board_id
        self.tensorrt, self.sm, self.extra = tensorrt, sm, list(extra)

    def args(self, srv: "RegistryServer", *more: str) -> "List[str]":
        key = ["--key", self.key] if self.key else ["--allow-unsigned"]
        return (["agent", self.ref, "--root", str(self.root), "--board-id", self.id, "--tensorrt", self.tensorrt,
                 "--sm", str(self.sm)] + key + self.extra + list(more) + srv.args())

    def once(self, srv: "RegistryServer", *more: str) -> "subprocess.CompletedProcess":
        return jd(self.args(srv, "--once", "--json", *more))

    def popen(self, srv: "RegistryServer", *more: str) -> "subprocess.Popen":
        return subprocess.Popen([sys.executable, "-m", "jetson_deploy"] + self.args(srv, "--once", "--json", *more),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, cwd=str(ROOT))

    @property
    def ua(self) -> str:
        return "board/" + self.id

    @property
    def downloads(self) -> Path:
        return self.root / "agent" / "downloads"

    def state(self) -> "Dict[str, Any]":
        return json.loads((self.root / "agent" / "state.json").read_text())


def all_once(srv: "RegistryServer", boards: "Sequence[Board]") -> "Dict[str, Dict[str, Any]]":
    """Every board's ``agent --once`` at the same time; board id -> its JSON outcome (+ rc, stderr)."""
    procs = [(b, b.popen(srv)) for b in boards]
    out = {}
    for b, p in procs:
        stdout, stderr = p.communicate(timeout=180)
        res = json.loads(stdout) if stdout.strip().startswith("{") else {"result": "?", "message": stdout}
        res.update(rc=p.returncode, stderr=stderr)
        out[b.id] = res
    return out


def fleet_status(srv: "RegistryServer", ref: str) -> "Dict[str, Any]":
    r = jd(["fleet", "status", ref, "--json"] + srv.args())
    assert r.returncode in (0, 1), r.stdout + r.stderr
    res = json.loads(r.stdout)
    res["rc"] = r.returncode
    res["by_board"] = {b["board"]: b for b in res["boards"]}
    return res


def wait_for(pred, timeout: float = 60.0, what: str = "condition") -> None:
    """Until PRED() is true (a bounded wait for another process, never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


def part_size(board: "Board") -> int:
    parts = list(board.downloads.glob("*.part")) if board.downloads.is_dir() else []
    return parts[0].stat().st_size if parts else 0
