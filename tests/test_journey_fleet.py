"""Journey (issue #27): a shelf of boards from one inventory, one of which fails its health check.

Two real sshd on 127.0.0.1 stand in for two boards.  They share this machine's filesystem, so each
session starts in its own directory (sshd ``ForceCommand cd BOARD && eval ...``) and the deploy uses
a relative ``--root``, which the device resolves from there, as a board resolves it from the ssh
user's home.  Board b's sessions carry ``JD_BOARD=broken`` (sshd ``SetEnv``), which the health
command checks: the new version is switched back there, and the summary must not call that ok.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.deploy import assert_active_verified
from support.sshd_server import SshServer, combined_ssh_config

ROOT = Path(__file__).resolve().parent.parent
HEALTH = 'test "$JD_BOARD" != broken && test -f manifest.json'


class _Board(SshServer):
    """An sshd whose every session runs in ``home`` (the board's home directory)."""

    home = None  # type: Path

    def _write_configs(self) -> None:
        SshServer._write_configs(self)
        with open(str(self.dir / "sshd_config"), "a") as f:
            f.write('ForceCommand cd {} && eval "$SSH_ORIGINAL_COMMAND"\n'.format(self.home))


def _board(base: Path, alias: str, env: dict, user_key=None) -> "_Board":
    b = _Board(base / alias, alias=alias, env=env)
    b.home = base / (alias + "-home")
    b.home.mkdir(parents=True)
    b._setup(user_key)
    b._launch()
    return b


def jd(*args, cwd):
    return subprocess.run([sys.executable, "-m", "jetson_deploy"] + [str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, cwd=str(cwd),
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)


@pytest.mark.slow
@pytest.mark.needs("sshd", "torch", "onnx", "onnxruntime")
def test_fleet_deploy_with_one_board_failing_its_health_check(tmp_path):
    a = _board(tmp_path, "board-a", {"JD_BOARD": "fine"})
    try:
        b = _board(tmp_path, "board-b", {"JD_BOARD": "broken"}, user_key=a.user_key)
    except BaseException:
        a.stop()
        raise
    try:
        cfg = combined_ssh_config([a, b], tmp_path / "ssh_config")
        (tmp_path / "inventory.ini").write_text("[shelf]\nboard-a\nboard-b\n")
        for v in ("1.0.0", "1.1.0"):
            r = jd("--quiet", "convert", "jetson_deploy.demo:load_model", "--spec", ROOT / "jetson_deploy/demo/spec.json",
                   "-o", "shapes-{}.jdb".format(v), "--name", "shapes", "--version", v, cwd=tmp_path)
            assert r.returncode == 0, r.stderr
        fleet = ["--hosts", "inventory.ini", "--group", "shelf", "--ssh-config", cfg, "--root", "jd", "--jobs", "2"]
        r = jd("deploy", "shapes-1.0.0.jdb", *fleet, cwd=tmp_path)  # the first version, no gate: both take it
        assert r.returncode == 0 and r.stdout.splitlines()[-1] == "2 of 2 hosts ok", (r.stdout, r.stderr)

        r = jd("deploy", "shapes-1.1.0.jdb", *fleet, "--health-cmd", HEALTH, cwd=tmp_path)
        assert r.returncode == 1, (r.stdout, r.stderr)
        rows = {ln.split()[0]: ln for ln in r.stdout.splitlines()[1:-1]}
        assert rows["board-a"].split()[1] == "deployed" and "health check passed" in rows["board-a"]
        assert rows["board-b"].split()[1] == "rolled-back" and "switched back to 1.0.0" in rows["board-b"]
        assert r.stdout.splitlines()[-1] == "1 of 2 hosts ok, 1 rolled back", r.stdout
        assert_active_verified(a.home / "jd", "shapes", "1.1.0")
        assert_active_verified(b.home / "jd", "shapes", "1.0.0")  # the broken board kept what worked

        r = jd("deploy", "shapes-1.1.0.jdb", *fleet, "--health-cmd", HEALTH, "--json", cwd=tmp_path)
        out = json.loads(r.stdout)
        assert r.returncode == 1 and out["ok"] is False
        assert {x["host"]: x["result"] for x in out["results"]} == {"board-a": "unchanged", "board-b": "rolled-back"}
        r = jd("devices", "status", *fleet, "--verify", cwd=tmp_path)
        assert r.returncode == 0, r.stdout
        status = {ln.split()[0]: ln.split()[2] for ln in r.stdout.splitlines()[1:]}
        assert status == {"board-a": "1.1.0", "board-b": "1.0.0"}, r.stdout
    finally:
        a.stop()
        b.stop()
