"""The agent when things go wrong around it: no registry (back-off with jitter), a full disk (refused
before the download), an unsigned bundle, a bundle of another name, an engines-only bundle for
another GPU, a second agent on the same root.  Real docker-registry on loopback."""
import json
import random
import subprocess

import pytest

from support.bundles import write_bundle
from support.deploy import active_version, assert_active_verified
from support.fleet import Board, jd, keypair, needs_registry, publish, signed_bundle
from support.sshd_server import free_port

pytestmark = [pytest.mark.needs(*needs_registry), pytest.mark.slow]


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return keypair(tmp_path_factory.mktemp("keys"), "fleet")


def test_no_registry_fails_and_backs_off_with_jitter(tmp_path, key):
    from jetson_deploy.deploy import DeployOptions
    from jetson_deploy.deploy.agent import Agent, AgentOptions
    from jetson_deploy.deploy.oci import RegistryOptions

    ref = "127.0.0.1:{}/fleet/none:stable".format(free_port())
    opts = AgentOptions(ref, DeployOptions(root=str(tmp_path / "b")), RegistryOptions(insecure=True), public_key=key["public_key"],
                        interval=10, max_backoff=300, board="b1", tensorrt="8.6.2", sm=87)
    random.seed(7)
    with Agent(opts) as a:
        waits = []
        for n in range(1, 8):
            out = a.poll()
            assert out.result == "failed" and "connection refused" in out.message, out
            assert a.state["failures"] == n
            w = [a.delay(out) for _ in range(200)]
            cap = min(300, 10 * 2 ** n)
            assert cap * 0.5 <= min(w) and max(w) <= cap  # full jitter in [cap/2, cap]
            assert max(w) - min(w) > cap * 0.3  # spread, not in step
            waits.append(cap)
        assert waits == [20, 40, 80, 160, 300, 300, 300]
        assert a.state.attempt == {}  # nothing was attempted: the tag was never seen
    st = json.loads((tmp_path / "b" / "agent" / "state.json").read_text())
    assert st["failures"] == 7 and "connection refused" in st["last_error"]
    r = jd(["agent", ref, "--root", str(tmp_path / "b"), "--key", key["public_key"], "--once", "--insecure"])
    assert r.returncode == 1 and r.stdout.startswith("failed: 127.0.0.1:") and "connection refused" in r.stdout, r.stdout + r.stderr


def test_full_disk_is_refused_before_the_download(registry, tmp_path, key):
    mnt = tmp_path / "small"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        pytest.skip("cannot mount a small tmpfs to fill up (needs root): " + p.stdout.decode(errors="replace").strip())
    try:
        ref = "{}/fleet/disk:stable".format(registry.host)
        board = Board(tmp_path, "d1", ref, key["public_key"])
        board.root = mnt / "root"
        v1 = signed_bundle(tmp_path, "1.0.0", key)
        publish(registry, v1, ref)
        assert json.loads(board.once(registry).stdout)["result"] == "deployed"
        # the layer alone would fit (2.4 MiB + the margin in ~4 MiB); with its unpacked copy it does not
        v2 = signed_bundle(tmp_path, "2.0.0", key, sizes={"model.onnx": 2500000, "labels.txt": 64})
        layer = publish(registry, v2, ref)["layer"]["digest"]
        mark = registry.mark()
        r = board.once(registry)
        res = json.loads(r.stdout)
        assert r.returncode == 1 and res["result"] == "failed", res
        assert "not enough disk space under {}".format(board.root) in res["message"] and "nothing downloaded" in res["message"]
        assert not [a for a in registry.accesses(mark, board.ua) if layer in a.path]
        assert not list(board.downloads.iterdir())
        assert_active_verified(board.root, "shapes", "1.0.0", v1)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_what_this_board_will_not_run(registry, tmp_path, key):
    ref = "{}/fleet/policy:stable".format(registry.host)
    board = Board(tmp_path, "p1", ref, key["public_key"], tensorrt="8.2.1", sm=53, extra=["--name", "shapes"])
    v1 = signed_bundle(tmp_path, "1.0.0", key)
    publish(registry, v1, ref)
    assert json.loads(board.once(registry).stdout)["result"] == "deployed"
    cases = [
        (signed_bundle(tmp_path, "2.0.0", None), "signature unsigned: no manifest.sig"),
        (signed_bundle(tmp_path, "3.0.0", key, name="other"), "holds bundle other 3.0.0; this agent keeps shapes (--name)"),
    ]
    orin_only = write_bundle(tmp_path / "shapes-4.0.0", "shapes", "4.0.0", {
        "engines/8.6.2_sm87_fp16.engine": (b"PLAN" * 100, "engine", {"tensorrt": "8.6.2", "sm": 87, "precision": "fp16"}),
        "labels.txt": b"a\nb\n"})
    from jetson_deploy.bundle.sign import sign_bundle

    sign_bundle(orin_only, key["private_key"])
    cases.append((orin_only, "has engines for TensorRT 8.6.2 sm87 only and no model.onnx to build one for this board (TensorRT 8.2.1 sm53)"))
    for bundle, words in cases:
        publish(registry, bundle, ref)
        r = board.once(registry)
        res = json.loads(r.stdout)
        assert r.returncode == 1 and res["result"] == "refused" and words in res["message"], res
        assert active_version(board.root, "shapes") == "1.0.0"
    # the same unsigned bundle goes in where unsigned bundles are allowed (a lab)
    lab = Board(tmp_path, "lab", ref, None)
    publish(registry, cases[0][0], ref)
    assert json.loads(lab.once(registry).stdout)["result"] == "deployed"
    assert active_version(lab.root, "shapes") == "2.0.0"


def test_one_agent_per_root(registry, tmp_path, key):
    from jetson_deploy.deploy import DeployOptions
    from jetson_deploy.deploy.agent import Agent, AgentOptions

    ref = "{}/fleet/lock:stable".format(registry.host)
    publish(registry, signed_bundle(tmp_path, "1.0.0", key), ref)
    opts = AgentOptions(ref, DeployOptions(root=str(tmp_path / "b")), registry.options(), public_key=key["public_key"],
                        board="l1", tensorrt="8.6.2", sm=87)
    with Agent(opts):
        r = jd(["agent", ref, "--root", str(tmp_path / "b"), "--key", key["public_key"], "--once"] + registry.args())
        assert r.returncode == 2 and "another agent is running on {}".format(tmp_path / "b") in r.stderr, r.stderr
    with Agent(opts) as a:
        assert a.poll().result == "deployed"


@pytest.mark.needs("onnx", "onnxruntime")
def test_the_board_is_probed_once_without_cuda(monkeypatch):
    """No --tensorrt/--sm: the TensorRT module's version (here the double of JetPack 4.6's 8.2.1.8) and
    the device tree's Jetson model; nothing of CUDA or torch is touched."""
    import sys

    from doubles import tensorrt_double as td
    from jetson_deploy.deploy.agent import probe_board
    from jetson_deploy.deploy.agent_pull import Board

    td.install(monkeypatch, "8.2")
    before = set(sys.modules)
    info = probe_board(None, None)
    assert info["tensorrt"] == "8.2.1.8"
    assert not {m for m in set(sys.modules) - before if m.split(".")[0] in ("torch", "pycuda", "onnxruntime")}
    assert Board(info["tensorrt"], 53, None, None).tensorrt == "8.2.1"
    td.uninstall(monkeypatch)
    assert probe_board(None, 87) == {"tensorrt": None, "sm": 87}  # no TensorRT here: no TensorRT check


def test_sigterm_ends_the_loop_between_polls(registry, tmp_path, key):
    import signal

    from support.fleet import wait_for

    ref = "{}/fleet/loop:stable".format(registry.host)
    publish(registry, signed_bundle(tmp_path, "1.0.0", key), ref)
    board = Board(tmp_path, "t1", ref, key["public_key"])
    p = subprocess.Popen([__import__("sys").executable, "-m", "jetson_deploy"] + board.args(registry, "--interval", "0.1", "--json"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    try:
        wait_for(lambda: (board.root / "agent" / "state.json").is_file() or p.poll() is not None, what="the first update")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out + err
    assert "SIGTERM: stopping after this poll" in err
    assert json.loads(out)["result"] in ("deployed", "unchanged")
    assert_active_verified(board.root, "shapes", "1.0.0")
