"""``bundle engine BUNDLE --on USER@HOST``: the engine built once on a reference board over ssh (a real
sshd on loopback; on the board's side the TensorRT double of a Nano: TensorRT 8.2, SM 5.3), brought
back, checked and added to the bundle, so boards of that kind load it instead of building it."""
import json
import os
import sys
from pathlib import Path

import pytest

from support.deploy import needs_sshd
from support.fleet import jd
from jetson_deploy.bundle import BundleWriter, open_bundle
from support.bundles import SPEC

pytestmark = [needs_sshd, pytest.mark.needs("onnx", "onnxruntime")]
TESTS = Path(__file__).resolve().parent

_BOARD = """import sys
sys.path.insert(0, {tests!r})
from doubles.tensorrt_double import make_tensorrt
sys.modules["tensorrt"] = make_tensorrt("8.2", sm=53, fast_int8=False)  # a Jetson Nano's TensorRT (JetPack 4.6)
from jetson_deploy.cli import main
main(sys.argv[1:])
"""


def _board_cmd(tmp_path: Path) -> str:
    """A 'jetson-deploy' on the board whose TensorRT is the Nano double (what --remote-cmd names)."""
    script = tmp_path / "board_jetson_deploy.py"
    script.write_text(_BOARD.format(tests=str(TESTS)))
    wrapper = tmp_path / "jetson-deploy-on-board"
    wrapper.write_text("#!/bin/sh\nexec {} {} \"$@\"\n".format(sys.executable, script))
    wrapper.chmod(0o755)
    return str(wrapper)


def _bundle(tmp_path: Path) -> Path:
    from doubles import onnx_models

    onnx = onnx_models.classifier(tmp_path / "m.onnx", hw=16, opset=13)
    with BundleWriter(tmp_path / "shapes-1.0.0", name="shapes", version="1.0.0", precision="fp16") as w:
        w.add_file(onnx, "model.onnx", kind="onnx")
        w.manifest["spec"] = dict(SPEC)
        w.manifest["source"] = {"opset": 13, "onnx_opset": 13}
    return tmp_path / "shapes-1.0.0"


def test_engine_built_on_the_board_is_added_and_selected_there(sshd, tmp_path, monkeypatch):
    b = _bundle(tmp_path)
    remote = _board_cmd(tmp_path)
    before = {a["path"]: a["sha256"] for a in open_bundle(b).artifacts}
    r = jd(["bundle", "engine", str(b), "--on", sshd.alias, "--ssh-config", str(sshd.ssh_config),
            "--remote-cmd", remote, "--sm", "53", "--json"])
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout)
    assert res["how"] == "built" and res["target"] == {"tensorrt": "8.2.1", "sm": 53, "precision": "fp16"}
    art = res["artifact"]
    assert art["path"] == "engines/8.2.1_sm53_fp16.engine"
    opened = open_bundle(b)  # verifies every artifact: the plan is in the manifest with its sha256
    assert {a["path"]: a["sha256"] for a in opened.artifacts if a["kind"] != "engine"} == before
    from doubles.tensorrt_double import install, read_plan

    plan = read_plan((b / art["path"]).read_bytes())
    # built by the board's TensorRT (8.2.1) for its GPU (SM 5.3) from this bundle's ONNX, in FP16
    assert plan["sm"] == 53 and plan["trt_version"].startswith("8.2.1") and "FP16" in plan["flags"]
    assert plan["onnx_sha256"] == before["model.onnx"]
    # on a board of that kind the bundled plan is selected, nothing is built
    install(monkeypatch, "8.2", sm=53, fast_int8=False)
    from jetson_deploy.bundle.select import find_engine

    path, how = find_engine(opened, "8.2.1", 53, "fp16", cache_dir=str(tmp_path / "cache"))
    # read through the verified bundle's directory handle: the same file as the bundle's own
    assert how == "bundled" and os.path.samefile(str(path), str(b / art["path"]))
    # nothing left on the board
    assert not [p for p in os.listdir("/tmp") if p.startswith("jd-engine.")]
    # asked again: the board finds its engine in the bundle and nothing is added
    r = jd(["bundle", "engine", str(b), "--on", sshd.alias, "--ssh-config", str(sshd.ssh_config), "--remote-cmd", remote, "--sm", "53"])
    assert r.returncode == 0 and "already has an engine for TensorRT 8.2.1 sm53 fp16" in r.stdout, r.stdout + r.stderr


def test_engine_on_failures_are_one_line(sshd, tmp_path):
    b = _bundle(tmp_path)
    ssh = ["--ssh-config", str(sshd.ssh_config)]
    cases = [
        (["--on", sshd.alias, "--remote-cmd", "/nonexistent/jetson-deploy"] + ssh, 1, "the engine build on jd-a failed"),
        (["--on", sshd.alias, "--remote-cmd", _board_cmd(tmp_path), "--tensorrt", "8.2.1"] + ssh, 1, "pass --sm NN"),
        (["--on", sshd.alias, "--no-build"] + ssh, 2, "--cache-dir and --no-build are for this machine"),
        (["--on", "nobody@127.0.0.1:1", "--remote-cmd", "x"], 1, "connection refused"),
    ]
    for extra, code, words in cases:
        r = jd(["bundle", "engine", str(b)] + extra)
        assert r.returncode == code, (extra, r.stdout, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("Error")]
        assert len(lines) == 1 and words in lines[0], (extra, r.stderr)
    assert [a["kind"] for a in open_bundle(b).artifacts] == ["onnx"]  # nothing added by a failure
    packed = tmp_path / "s.jdb"
    assert jd(["bundle", "pack", str(b), "-o", str(packed)]).returncode == 0
    r = jd(["bundle", "engine", str(packed), "--on", sshd.alias] + ssh)
    assert r.returncode == 2 and "unpack" in r.stderr, r.stderr


def test_a_plan_that_arrives_changed_is_not_added(tmp_path):
    """The board's own sha256sum of the plan and the bytes that arrived must agree (here a board
    whose sha256sum reports other bytes than it sends: what a corrupted transfer looks like)."""
    from support.sshd_server import SshServer, sshd_skip_reason

    if sshd_skip_reason():
        pytest.skip(sshd_skip_reason())
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "sha256sum").write_text('#!/bin/sh\ncase "$1" in *.engine) echo "{}  $1";; *) exec /usr/bin/sha256sum "$@";; esac\n'.format("0" * 64))
    (fake / "sha256sum").chmod(0o755)
    srv = SshServer.start(tmp_path / "sshd", alias="jd-a", env={"PATH": str(fake) + ":/usr/local/bin:/usr/bin:/bin"})
    try:
        b = _bundle(tmp_path)
        r = jd(["bundle", "engine", str(b), "--on", srv.alias, "--ssh-config", str(srv.ssh_config),
                "--remote-cmd", _board_cmd(tmp_path), "--sm", "53"])
        assert r.returncode == 1 and "the board has" in r.stderr and "not added" in r.stderr, r.stdout + r.stderr
        assert [a["kind"] for a in open_bundle(b).artifacts] == ["onnx"]
    finally:
        srv.stop()
