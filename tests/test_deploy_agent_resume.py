"""A cut download: the registry killed mid-download, the agent SIGKILLed mid-download.  The next run
resumes the layer with ``Range`` (the registry answers 206 with the rest), checks its sha256 and
activates; in between nothing is half-applied (the running version is active and intact, no staging
of the new one).  Real docker-registry on loopback; ``--bwlimit`` slows the download so the cut lands
in the middle of it."""
import json
import signal

import pytest

from support.deploy import active_version, assert_active_verified, installed
from support.fleet import Board, keypair, needs_registry, part_size, publish, signed_bundle, wait_for
from support.registry import RegistryServer

pytestmark = [pytest.mark.needs(*needs_registry), pytest.mark.slow]

BIG = {"model.onnx": 3 << 20, "labels.txt": 64}  # a 3 MiB layer: ~12 s at --bwlimit 256, cut after 512 KiB


def _beyond_kernel_buffers() -> "dict":
    """A layer larger than what a killed registry's kernel still delivers from its socket send buffer
    (up to tcp_wmem's maximum, 4 MiB by default): the download really stops in the middle."""
    try:
        wmem = int(open("/proc/sys/net/ipv4/tcp_wmem").read().split()[2])
    except (OSError, ValueError, IndexError):
        wmem = 4 << 20
    return {"model.onnx": wmem + (8 << 20), "labels.txt": 64}


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return keypair(tmp_path_factory.mktemp("keys"), "fleet")


def _start_v1_then_publish_v2(srv, tmp_path, key, repo, sizes=BIG):
    board = Board(tmp_path, "r1", repo + ":stable", key["public_key"])
    v1 = signed_bundle(tmp_path, "1.0.0", key)
    publish(srv, v1, repo + ":stable")
    assert json.loads(board.once(srv).stdout)["result"] == "deployed"
    v2 = signed_bundle(tmp_path, "2.0.0", key, sizes=sizes)
    layer = publish(srv, v2, repo + ":stable")["layer"]
    return board, v1, v2, layer


def _nothing_half_applied(board, v1):
    assert_active_verified(board.root, "shapes", "1.0.0", v1)
    assert installed(board.root, "shapes") == ["1.0.0"]
    assert not (board.root / "staging" / "shapes" / "2.0.0").exists()
    assert (board.root / "state" / "shapes.history").read_text().split() == ["1.0.0"]


def _resumes(srv, board, v2, layer, have):
    mark = srv.mark()
    r = board.once(srv)
    assert r.returncode == 0 and json.loads(r.stdout)["result"] == "deployed", r.stdout + r.stderr
    assert "resuming at" in r.stderr
    gets = [a for a in srv.accesses(mark, board.ua) if layer["digest"] in a.path]
    assert [(a.method, a.status) for a in gets] == [("GET", 206)], gets
    assert gets[0].size == layer["size"] - have  # only the rest came over the wire
    assert_active_verified(board.root, "shapes", "2.0.0", v2)
    assert not list(board.downloads.iterdir())


def test_registry_killed_mid_download_then_resumed(tmp_path, key):
    srv = RegistryServer.start(tmp_path / "registry")  # its own registry: this test kills it
    try:
        board, v1, v2, layer = _start_v1_then_publish_v2(srv, tmp_path, key, "{}/fleet/cut".format(srv.host),
                                                         _beyond_kernel_buffers())
        p = board.popen(srv, "--bwlimit", "2048")
        try:
            wait_for(lambda: part_size(board) >= 512 << 10 or p.poll() is not None, what="the download under way")
            srv.stop()
            out, err = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
        res = json.loads(out)
        assert p.returncode == 1 and res["result"] == "failed", out + err
        assert "stopped after" in res["message"] and "the next try resumes from there" in res["message"], res
        have = part_size(board)
        assert 512 << 10 <= have < layer["size"]
        _nothing_half_applied(board, v1)
        assert board.state()["attempt"]["result"] == "failed"
        srv.start_again()
        _resumes(srv, board, v2, layer, have)
    finally:
        srv.stop()


def test_agent_sigkilled_mid_download_then_resumed(registry, tmp_path, key):
    board, v1, v2, layer = _start_v1_then_publish_v2(registry, tmp_path, key, "{}/fleet/killed".format(registry.host))
    p = board.popen(registry, "--bwlimit", "256")
    try:
        wait_for(lambda: part_size(board) >= 512 << 10 or p.poll() is not None, what="half the download")
    finally:
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    have = part_size(board)
    assert 512 << 10 <= have < layer["size"]
    _nothing_half_applied(board, v1)
    assert active_version(board.root, "shapes") == "1.0.0"
    _resumes(registry, board, v2, layer, have)  # the killed agent's lock is gone with it
