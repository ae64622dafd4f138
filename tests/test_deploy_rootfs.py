"""deploy --rootfs: install into a mounted SD card / L4T rootfs, no ssh, same layout and checks."""
import json
import os
from pathlib import Path

import pytest

from support.deploy import assert_active_verified, installed, make_bundle, out, runner
from jetson_deploy.cli import cli


def run(args):
    return runner().invoke(cli, args, catch_exceptions=False)


def test_rootfs_install_rollback_status(tmp_path):
    rootfs = tmp_path / "Linux_for_Tegra" / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "opt").mkdir()
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    b2 = make_bundle(tmp_path / "b2", version="1.1.0")

    res = run(["deploy", str(b1), "--rootfs", str(rootfs), "-q", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)["results"][0]
    assert r["result"] == "deployed" and r["details"]["transfer"] == "copy"
    jd = rootfs / "opt" / "jetson-deploy"
    assert_active_verified(jd, "demo", "1.0.0", b1)
    # relative link: it resolves the same once the board boots with this rootfs as /
    assert os.readlink(str(jd / "active" / "demo")) == "../bundles/demo/1.0.0"
    for dirpath, dirnames, filenames in os.walk(str(jd)):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if os.path.islink(p):
                assert not os.readlink(p).startswith("/"), p

    res = run(["deploy", str(b1), "--rootfs", str(rootfs), "-q"])
    assert res.exit_code == 0 and "unchanged" in res.stdout

    res = run(["deploy", str(b2), "--rootfs", str(rootfs), "--root", "/opt/models", "-q"])
    assert res.exit_code == 0, res.output
    assert_active_verified(rootfs / "opt" / "models", "demo", "1.1.0", b2)
    res = run(["deploy", str(b2), "--rootfs", str(rootfs), "-q"])
    assert res.exit_code == 0, res.output
    assert_active_verified(jd, "demo", "1.1.0", b2)
    assert installed(jd) == ["1.0.0", "1.1.0"]

    res = run(["devices", "status", "--rootfs", str(rootfs), "--verify", "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.stdout)["hosts"][0]["bundles"]["demo"]
    assert st["active"] == "1.1.0" and st["previous"] == "1.0.0" and st["verified"] is True

    res = run(["rollback", "demo", "--rootfs", str(rootfs), "-q"])
    assert res.exit_code == 0, res.output
    assert_active_verified(jd, "demo", "1.0.0", b1)


def test_rootfs_rejects_bad_usage(tmp_path):
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    res = run(["deploy", str(b1), "--rootfs", str(tmp_path / "missing"), "-q"])
    assert res.exit_code == 2 and "--rootfs" in out(res)
    res = run(["deploy", str(b1), "--rootfs", str(tmp_path), "--health-cmd", "true", "-q"])
    assert res.exit_code == 2 and "--health-cmd" in out(res)


def test_rootfs_corrupted_copy_is_not_activated(tmp_path, monkeypatch):
    """The on-image check is the same: a file damaged in staging never becomes active."""
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    b2 = make_bundle(tmp_path / "b2", version="2.0.0")
    from jetson_deploy.deploy import DeployOptions, deploy

    image = DeployOptions(rootfs=str(rootfs))
    assert [r.result for r in deploy(str(b1), [], image)] == ["deployed"]

    def corrupt(staging, **_):
        p = Path(staging) / "model.onnx"
        data = p.read_bytes()
        p.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])

    r, = deploy(str(b2), [], image, hooks={"after_upload": corrupt})
    assert r.result == "failed" and "model.onnx" in r.message
    assert_active_verified(rootfs / "opt" / "jetson-deploy", "demo", "1.0.0", b1)


def test_packed_bundle_deploys(tmp_path):
    """A packed .jdb is verified and unpacked here, then installed like a directory."""
    from jetson_deploy.bundle import pack_bundle as pack
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    jdb = tmp_path / "demo-1.0.0.jdb"
    pack(str(b1), str(jdb))
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    res = run(["deploy", str(jdb), "--rootfs", str(rootfs), "-q"])
    assert res.exit_code == 0, res.output
    assert_active_verified(rootfs / "opt" / "jetson-deploy", "demo", "1.0.0", b1)


@pytest.mark.needs("cryptography")
def test_key_requires_a_valid_signature(tmp_path):
    from jetson_deploy.bundle import sign
    keys = sign.keygen(tmp_path / "keys" / "release")
    other = sign.keygen(tmp_path / "keys" / "other")
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    res = run(["deploy", str(b1), "--rootfs", str(rootfs), "--key", keys["public_key"], "-q"])
    assert res.exit_code == 1 and "not signed" in out(res)
    assert not (rootfs / "opt").exists()  # refused before anything was written
    sign.sign_bundle(str(b1), keys["private_key"])
    res = run(["deploy", str(b1), "--rootfs", str(rootfs), "--key", other["public_key"], "-q"])
    assert res.exit_code == 1 and "INVALID" in out(res)
    res = run(["deploy", str(b1), "--rootfs", str(rootfs), "--key", keys["public_key"], "-q"])
    assert res.exit_code == 0, res.output
    jd = rootfs / "opt" / "jetson-deploy"
    assert_active_verified(jd, "demo", "1.0.0", b1)
    # the signature travels with the bundle and is verified on the device like any file
    assert (jd / "active" / "demo" / "manifest.sig").read_bytes() == (b1 / "manifest.sig").read_bytes()


def test_rootfs_absolute_symlink_resolves_inside_the_rootfs(tmp_path):
    """R/opt -> /data/opt is the board's /data/opt, i.e. R/data/opt: nothing lands on this machine."""
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "data" / "opt").mkdir(parents=True)
    outside = tmp_path / "host-opt"
    outside.mkdir()
    os.symlink(str(outside), str(rootfs / "opt"))  # as the workstation sees it: outside the rootfs
    (rootfs / "data" / "opt2").mkdir()
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    res = run(["deploy", str(b1), "--rootfs", str(rootfs), "-q"])
    # /opt in the rootfs is a link to a host path, absolute: as the board sees it, it is R/<that path>
    assert res.exit_code == 0, res.output
    assert list(outside.iterdir()) == []
    board_opt = rootfs / str(outside).lstrip("/")
    assert (board_opt / "jetson-deploy" / "active" / "demo").is_symlink()

    os.unlink(str(rootfs / "opt"))
    os.symlink("/data/opt", str(rootfs / "opt"))
    res = run(["deploy", str(b1), "--rootfs", str(rootfs), "-q"])
    assert res.exit_code == 0, res.output
    assert (rootfs / "data" / "opt" / "jetson-deploy" / "active" / "demo").is_symlink()


def test_rootfs_symlink_escaping_under_the_root_is_refused(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "opt" / "jetson-deploy").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(str(outside), str(rootfs / "opt" / "jetson-deploy" / "bundles"))
    os.symlink("../../../../..", str(rootfs / "opt" / "jetson-deploy" / "up"))
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    res = runner().invoke(cli, ["deploy", str(b1), "--rootfs", str(rootfs), "-q"])
    assert res.exit_code == 2 and "leads out of the rootfs" in out(res), out(res)
    assert list(outside.iterdir()) == []


def test_library_default_options_keep_three_versions(tmp_path):
    """DeployOptions() keeps the three most recently active versions (the CLI's --keep default too)."""
    from jetson_deploy.deploy import DeployOptions, deploy

    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    image = DeployOptions(rootfs=str(rootfs))
    for v in ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"):
        assert [r.result for r in deploy(str(make_bundle(tmp_path / v, version=v)), [], image)] == ["deployed"]
    assert installed(rootfs / "opt" / "jetson-deploy") == ["1.2.0", "1.3.0", "1.4.0"]


def test_library_refuses_hosts_or_health_cmd_with_a_rootfs(tmp_path):
    """The rootfs-versus-host rules live in the library: one clear BadInput before anything is written."""
    from jetson_deploy.deploy import DeployOptions, deploy, rollback, status
    from jetson_deploy.errors import BadInput

    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    with pytest.raises(BadInput, match="--rootfs installs into a directory: give no HOST"):
        deploy(str(b1), ["nvidia@orin1"], DeployOptions(rootfs=str(rootfs)))
    with pytest.raises(BadInput, match="--health-cmd cannot run inside a --rootfs image"):
        deploy(str(b1), [], DeployOptions(rootfs=str(rootfs), health_cmd="true"))
    with pytest.raises(BadInput, match="--rootfs works on a directory"):
        rollback("demo", ["nvidia@orin1"], rootfs=str(rootfs))
    with pytest.raises(BadInput, match="--rootfs inspects a directory"):
        status(["nvidia@orin1"], rootfs=str(rootfs))
    with pytest.raises(BadInput, match="no hosts given"):
        deploy(str(b1), [], DeployOptions())
    assert not (rootfs / "opt").exists()


def test_progress_lines_are_log_records_and_quiet_keeps_warnings(tmp_path, caplog):
    """One message channel: per-host lines are jetson_deploy.deploy records, printed by the CLI
    as ``[host] message`` on stderr; --quiet hides them and keeps the warnings."""
    import logging

    from jetson_deploy.deploy import DeployOptions, deploy

    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    with caplog.at_level(logging.INFO, logger="jetson_deploy.deploy"):
        deploy(str(b1), [], DeployOptions(rootfs=str(rootfs)))
    label = "[rootfs:{}]".format(rootfs)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("jetson_deploy.deploy")]
    assert lines[0] == label + " connecting" and lines[-1] == label + " demo 1.0.0 active", lines
    b2 = make_bundle(tmp_path / "b2", version="2.0.0")
    res = run(["deploy", str(b2), "--rootfs", str(rootfs), "--restart-service", "demo"])
    assert res.exit_code == 0, out(res)
    assert label + " demo 2.0.0 active (was 1.0.0)" in res.stderr.splitlines() and "has no enabled" in res.stderr
    b3 = make_bundle(tmp_path / "b3", version="3.0.0")
    res = run(["deploy", str(b3), "--rootfs", str(rootfs), "--restart-service", "demo", "-q"])
    assert res.exit_code == 0 and label not in res.stderr and "has no enabled" in res.stderr, res.stderr
