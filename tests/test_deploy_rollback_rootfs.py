"""rollback --rootfs with damaged versions: a version that fails its on-device checksums is
never switched to (no sshd needed: the same scripts run against a directory)."""
import json
import os
from pathlib import Path

from support.deploy import active_version, assert_active_verified, make_bundle, out, runner
from jetson_deploy.cli import cli

VERSIONS = ("1.0.0", "2.0.0", "3.0.0")


def run(args):
    return runner().invoke(cli, args, catch_exceptions=False)


def _three(tmp_path: Path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    bundles = {}
    for v in VERSIONS:
        bundles[v] = make_bundle(tmp_path / ("b" + v), version=v)
        res = run(["deploy", str(bundles[v]), "--rootfs", str(rootfs), "-q"])
        assert res.exit_code == 0, out(res)
    jd = rootfs / "opt" / "jetson-deploy"
    assert_active_verified(jd, "demo", "3.0.0", bundles["3.0.0"])
    return rootfs, jd, bundles


def _damage(jd: Path, version: str, how: str = "flip") -> None:
    d = jd / "bundles" / "demo" / version
    p = d / "model.onnx"
    os.chmod(str(d), 0o755)
    os.chmod(str(p), 0o644)
    if how == "flip":
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x01
        p.write_bytes(bytes(data))
    else:
        p.unlink()


def _history(jd: Path):
    return (jd / "state" / "demo.history").read_text().split()


def test_rollback_walks_back_through_three_versions(tmp_path):
    rootfs, jd, b = _three(tmp_path)
    res = run(["rollback", "demo", "--rootfs", str(rootfs), "-q"])
    assert res.exit_code == 0, out(res)
    assert_active_verified(jd, "demo", "2.0.0", b["2.0.0"])
    res = run(["rollback", "demo", "--rootfs", str(rootfs), "-q"])
    assert res.exit_code == 0, out(res)
    assert_active_verified(jd, "demo", "1.0.0", b["1.0.0"])
    assert _history(jd) == ["1.0.0"]


def test_rollback_skips_a_damaged_previous_version(tmp_path):
    rootfs, jd, b = _three(tmp_path)
    _damage(jd, "2.0.0")
    res = run(["rollback", "demo", "--rootfs", str(rootfs), "--json"])
    assert res.exit_code == 0, out(res)
    assert_active_verified(jd, "demo", "1.0.0", b["1.0.0"])
    assert "2.0.0" in json.dumps(json.loads(res.stdout))  # the skipped version is reported


def test_rollback_with_every_previous_version_damaged_changes_nothing(tmp_path):
    rootfs, jd, b = _three(tmp_path)
    _damage(jd, "2.0.0")
    _damage(jd, "1.0.0", how="delete")
    res = run(["rollback", "demo", "--rootfs", str(rootfs), "-q"])
    assert res.exit_code != 0
    assert "no previous verified version" in out(res)
    assert active_version(jd) == "3.0.0"
    assert_active_verified(jd, "demo", "3.0.0", b["3.0.0"])
    assert _history(jd) == list(VERSIONS)


def test_rollback_to_a_damaged_version_is_refused(tmp_path):
    rootfs, jd, b = _three(tmp_path)
    _damage(jd, "1.0.0")
    res = run(["rollback", "demo", "--rootfs", str(rootfs), "--to", "1.0.0", "-q"])
    assert res.exit_code != 0
    assert "fails its checksums" in out(res)
    assert_active_verified(jd, "demo", "3.0.0", b["3.0.0"])
    res = run(["rollback", "demo", "--rootfs", str(rootfs), "--to", "2.0.0", "-q"])
    assert res.exit_code == 0, out(res)
    assert_active_verified(jd, "demo", "2.0.0", b["2.0.0"])
    assert _history(jd)[-1] == "2.0.0"


def test_rollback_refuses_a_version_whose_checksum_file_is_gone(tmp_path):
    rootfs, jd, _b = _three(tmp_path)
    (jd / "bundles" / "demo" / ".2.0.0.sha256").unlink()
    res = run(["rollback", "demo", "--rootfs", str(rootfs), "--to", "2.0.0", "-q"])
    assert res.exit_code != 0 and active_version(jd) == "3.0.0"
