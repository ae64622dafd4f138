"""Fleets that pull, end to end through the CLI: a real docker-registry (TLS, htpasswd) on loopback,
``publish``, several ``agent --once`` boards on their own roots, ``fleet status`` (docs/deploy.md,
"Fleets that pull").  Runs in the 3.6/3.8 device legs too: the agent is device-side code."""
import json

import pytest

from support.deploy import active_version, assert_active_verified, installed
from support.fleet import Board, all_once, fleet_status, jd, keypair, needs_registry, publish, signed_bundle

pytestmark = [pytest.mark.needs(*needs_registry), pytest.mark.slow]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    base = tmp_path_factory.mktemp("keys")
    return {"fleet": keypair(base, "fleet"), "other": keypair(base, "other")}


def test_channels_promote_and_fleet_status(registry, tmp_path, keys):
    repo = "{}/fleet/channels".format(registry.host)
    pub = keys["fleet"]["public_key"]
    boards = [Board(tmp_path, "s1", repo + ":stable", pub), Board(tmp_path, "s2", repo + ":stable", pub),
              Board(tmp_path, "c1", repo + ":canary", pub), Board(tmp_path, "c2", repo + ":canary", pub)]
    v1 = signed_bundle(tmp_path, "1.0.0", keys["fleet"])
    res = publish(registry, v1, repo + ":stable", "--tag", "canary")
    assert res["tags"] == ["stable", "canary", "1.0.0"] and res["signed"] is True
    out = all_once(registry, boards)
    for b in boards:
        assert out[b.id]["rc"] == 0 and out[b.id]["result"] == "deployed", out[b.id]
        assert_active_verified(b.root, "shapes", "1.0.0", v1)

    v2 = signed_bundle(tmp_path, "2.0.0", keys["fleet"])
    publish(registry, v2, repo + ":canary")
    out = all_once(registry, boards)
    for b in boards:
        want = "2.0.0" if b.id.startswith("c") else "1.0.0"
        assert out[b.id]["rc"] == 0, out[b.id]
        assert out[b.id]["result"] == ("deployed" if want == "2.0.0" else "unchanged"), out[b.id]
        assert_active_verified(b.root, "shapes", want, v2 if want == "2.0.0" else v1)
    st = fleet_status(registry, repo)
    assert st["channels"]["stable"]["version"] == "1.0.0" and st["channels"]["canary"]["version"] == "2.0.0"
    assert {k: (b["version"], b["health"]) for k, b in st["by_board"].items()} == {
        "s1": ("1.0.0", "ok"), "s2": ("1.0.0", "ok"), "c1": ("2.0.0", "ok"), "c2": ("2.0.0", "ok")}

    mark = registry.mark()
    r = jd(["publish", "--promote", "canary", "stable", repo] + registry.args())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nothing uploaded" in r.stdout and "2.0.0" in r.stdout
    sent = [a for a in registry.accesses(mark) if a.method in ("POST", "PUT")]
    assert [(a.method, a.path) for a in sent] == [("PUT", "/v2/fleet/channels/manifests/stable")], sent
    st = fleet_status(registry, repo)
    assert st["channels"]["stable"]["digest"] == st["channels"]["canary"]["digest"]
    assert st["by_board"]["s1"]["health"] == "behind"  # the tag moved; s1 has not polled since
    out = all_once(registry, boards)
    for b in boards:
        assert out[b.id]["result"] == ("deployed" if b.id.startswith("s") else "unchanged"), out[b.id]
        assert_active_verified(b.root, "shapes", "2.0.0", v2)
        assert installed(b.root, "shapes") == ["1.0.0", "2.0.0"]
    st = fleet_status(registry, repo)
    assert st["rc"] == 0 and [b["health"] for b in st["boards"]] == ["ok"] * 4
    assert {b["version"] for b in st["boards"]} == {"2.0.0"}
    # the same bundle published again: the same digest (deterministic pack and manifest), no blob sent
    mark = registry.mark()
    again = publish(registry, v2, repo + ":stable")
    assert again["digest"] == st["channels"]["stable"]["digest"] and again["layer"]["uploaded"] is False
    assert not [a for a in registry.accesses(mark) if "/blobs/" in a.path and a.method in ("POST", "PUT")]


def _refused(out, board, *words):
    assert out.returncode == 1, out.stdout + out.stderr
    res = json.loads(out.stdout)
    assert res["result"] == "refused", res
    for w in words:
        assert w in res["message"], res["message"]
    return res


def test_refusals_keep_the_running_version_and_say_why(registry, tmp_path, keys):
    repo = "{}/fleet/refusals".format(registry.host)
    nano = Board(tmp_path, "nano1", repo + ":stable", keys["fleet"]["public_key"], tensorrt="8.2.1", sm=53)
    v1 = signed_bundle(tmp_path, "1.0.0", keys["fleet"], sizes={"model.onnx": 30000, "labels.txt": 64})
    publish(registry, v1, repo + ":stable")
    assert json.loads(nano.once(registry).stdout)["result"] == "deployed"

    # 1. signed with another key: refused before its layer is downloaded; asked again, one HEAD
    v2 = signed_bundle(tmp_path, "2.0.0", keys["other"])
    layer = publish(registry, v2, repo + ":stable")["layer"]["digest"]
    mark = registry.mark()
    _refused(nano.once(registry), nano, "2.0.0", "signature INVALID", "another key")
    assert not [a for a in registry.accesses(mark, nano.ua) if layer in a.path]
    assert_active_verified(nano.root, "shapes", "1.0.0", v1)
    st = fleet_status(registry, repo)
    b = st["by_board"]["nano1"]
    assert st["rc"] == 1 and b["health"] == "refused" and b["version"] == "1.0.0" and "signature INVALID" in b["message"]
    mark = registry.mark()
    _refused(nano.once(registry), nano, "signature INVALID")
    assert [(a.method, a.status) for a in registry.accesses(mark, nano.ua)] == [("HEAD", 200)]

    # 2. needs a newer TensorRT than the board's 8.2.1: refused before the download, one line saying so
    v3 = signed_bundle(tmp_path, "3.0.0", keys["fleet"], manifest={"requires": {"tensorrt_min": "8.4", "why": "ONNX opset 17"},
                                                                  "source": {"onnx_opset": 17}})
    layer = publish(registry, v3, repo + ":stable")["layer"]["digest"]
    mark = registry.mark()
    _refused(nano.once(registry), nano, "needs TensorRT >= 8.4", "this device has TensorRT 8.2.1")
    assert not [a for a in registry.accesses(mark, nano.ua) if layer in a.path]
    assert_active_verified(nano.root, "shapes", "1.0.0", v1)
    assert "needs TensorRT >= 8.4" in fleet_status(registry, repo)["by_board"]["nano1"]["message"]

    # 3. a tampered layer in the registry's storage: downloaded, fails its sha256, nothing applied
    v4 = signed_bundle(tmp_path, "4.0.0", keys["fleet"])
    layer = publish(registry, v4, repo + ":stable")["layer"]["digest"]
    blob = registry.blob_path(layer)
    good = blob.read_bytes()
    blob.write_bytes(good[:5000] + bytes([good[5000] ^ 1]) + good[5001:])
    res = _refused(nano.once(registry), nano, "sha256", "tampered or corrupted", "nothing applied")
    assert res["sticky"] is False
    assert_active_verified(nano.root, "shapes", "1.0.0", v1)
    assert not list(nano.downloads.iterdir()) and not (nano.root / "staging" / "shapes" / "4.0.0").exists()
    assert "4.0.0" not in installed(nano.root, "shapes")
    b = fleet_status(registry, repo)["by_board"]["nano1"]
    assert b["health"] == "refused" and "tampered or corrupted" in b["message"] and b["version"] == "1.0.0"

    # the registry's bytes repaired: the same digest is tried again (not a sticky refusal) and goes in
    blob.write_bytes(good)
    res = json.loads(nano.once(registry).stdout)
    assert res["result"] == "deployed", res
    assert_active_verified(nano.root, "shapes", "4.0.0", v4)
    assert fleet_status(registry, repo)["by_board"]["nano1"]["health"] == "ok"


def test_failing_health_check_rolls_back_and_is_reported(registry, tmp_path, keys):
    repo = "{}/fleet/health".format(registry.host)
    board = Board(tmp_path, "h1", repo + ":stable", keys["fleet"]["public_key"],
                  extra=["--health-cmd", '[ "$JETSON_DEPLOY_VERSION" != 2.0.0 ] || { echo "probe failed on $JETSON_DEPLOY_VERSION"; exit 7; }'])
    v1 = signed_bundle(tmp_path, "1.0.0", keys["fleet"])
    publish(registry, v1, repo + ":stable")
    assert json.loads(board.once(registry).stdout)["result"] == "deployed"
    v2 = signed_bundle(tmp_path, "2.0.0", keys["fleet"])
    publish(registry, v2, repo + ":stable")
    r = board.once(registry)
    res = json.loads(r.stdout)
    assert r.returncode == 1 and res["result"] == "rolled-back", res
    assert "health check failed (exit 7: probe failed on 2.0.0)" in res["message"] and "switched back to 1.0.0" in res["message"]
    assert_active_verified(board.root, "shapes", "1.0.0", v1)
    assert (board.root / "state" / "shapes.history").read_text().split() == ["1.0.0"]
    b = fleet_status(registry, repo)["by_board"]["h1"]
    assert b["health"] == "rolled-back" and b["version"] == "1.0.0" and b["attempt_version"] == "2.0.0"
    assert "health check failed" in b["message"]
    # not retried on every poll: one HEAD, the version stays
    mark = registry.mark()
    assert json.loads(board.once(registry).stdout)["result"] == "rolled-back"
    assert [a.method for a in registry.accesses(mark, board.ua)] == ["HEAD"]
    assert active_version(board.root, "shapes") == "1.0.0"


def test_bad_usage_is_one_line_and_exit_2(registry, tmp_path, keys):
    repo = "{}/fleet/usage".format(registry.host)
    cases = [
        (["agent", repo + ":stable", "--root", str(tmp_path / "r"), "--once"] + registry.args(), "needs the publisher's public key"),
        (["agent", repo, "--root", str(tmp_path / "r"), "--once", "--allow-unsigned"] + registry.args(), "names no tag"),
        (["agent", "https://" + repo + ":x", "--root", str(tmp_path / "r"), "--allow-unsigned"], "without a scheme"),
        (["agent", "registry.example.com/fleet/x:stable", "--insecure", "--allow-unsigned", "--root", str(tmp_path / "r")],
         "--insecure (plain HTTP) is refused for registry.example.com"),
        (["publish", str(tmp_path / "nope"), repo + ":stable"] + registry.args(), "does not exist"),
        (["publish", "--promote", "canary", "stable", str(tmp_path), repo] + registry.args(), "--promote FROM TO takes only"),
        (["agent", repo + ":stable", "--root", str(tmp_path / "r"), "--username", "u", "--allow-unsigned", "--once",
          "--ca-cert", registry.ca_cert], "JETSON_DEPLOY_REGISTRY_PASSWORD"),
    ]
    for args, words in cases:
        r = jd(args, env={"JETSON_DEPLOY_REGISTRY_PASSWORD": ""})
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and words in lines[-1], (args, r.stderr)
