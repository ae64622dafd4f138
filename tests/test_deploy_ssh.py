"""deploy / rollback / devices status against a real OpenSSH server on 127.0.0.1."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from support.deploy import (active_version, assert_active_verified, cli_args, installed, make_bundle, needs_sshd,
                             out, over_ssh, runner)
from jetson_deploy.cli import cli
from jetson_deploy.deploy import Connection, deploy, rollback, status

pytestmark = needs_sshd


def run(args):
    res = runner().invoke(cli, args, catch_exceptions=False)
    return res


def test_happy_path_noop_and_status(sshd, tmp_path):
    root = tmp_path / "dev"
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    res = run(["deploy", str(b1), sshd.alias] + cli_args(sshd, root))
    assert res.exit_code == 0, res.output
    assert "deployed" in res.stdout
    assert_active_verified(root, "demo", "1.0.0", b1)
    # nothing left behind in staging
    assert not (root / "staging" / "demo").exists()
    assert (root / "state" / "demo.history").read_text().split() == ["1.0.0"]

    # same bundle again, addressed as user@127.0.0.1:port: a no-op that says so
    res = run(["deploy", str(b1), sshd.spec, "--json"] + cli_args(sshd, root))
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["ok"] is True
    r = out["results"][0]
    assert r["result"] == "unchanged" and "already active and verified" in r["message"]
    assert r["host"] == sshd.spec
    assert not (root / "staging" / "demo").exists()
    assert_active_verified(root, "demo", "1.0.0", b1)

    res = run(["devices", "status", sshd.alias, "--verify", "--json"] + cli_args(sshd, root))
    assert res.exit_code == 0, res.output
    st = json.loads(res.stdout)["hosts"][0]
    assert st["ok"] and st["bundles"]["demo"]["active"] == "1.0.0"
    assert st["bundles"]["demo"]["installed"] == ["1.0.0"] and st["bundles"]["demo"]["verified"] is True


def test_rollback_and_retention(sshd, tmp_path):
    root = tmp_path / "dev"
    bundles = {}
    for v in ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]:
        bundles[v] = make_bundle(tmp_path / v, version=v)
        res = run(["deploy", str(bundles[v]), sshd.alias, "--keep", "3"] + cli_args(sshd, root))
        assert res.exit_code == 0, res.output
        assert_active_verified(root, "demo", v, bundles[v])
    assert installed(root) == ["1.1.0", "1.2.0", "1.3.0"]  # --keep 3 pruned the oldest

    res = run(["rollback", "demo", sshd.alias] + cli_args(sshd, root))
    assert res.exit_code == 0, res.output
    assert "rolled-back" in res.stdout and "1.3.0 to 1.2.0" in res.stdout
    assert_active_verified(root, "demo", "1.2.0", bundles["1.2.0"])
    res = run(["rollback", "demo", sshd.alias] + cli_args(sshd, root))
    assert res.exit_code == 0, res.output
    assert_active_verified(root, "demo", "1.1.0", bundles["1.1.0"])
    # 1.0.0 was pruned: nowhere further back to go
    res = run(["rollback", "demo", sshd.alias] + cli_args(sshd, root))
    assert res.exit_code == 1
    assert "no previous verified version" in res.stdout
    assert_active_verified(root, "demo", "1.1.0", bundles["1.1.0"])
    # --to any installed version
    res = run(["rollback", "demo", sshd.alias, "--to", "1.3.0"] + cli_args(sshd, root))
    assert res.exit_code == 0, res.output
    assert_active_verified(root, "demo", "1.3.0", bundles["1.3.0"])

    # keep=1 still keeps the previous version next to the active one
    b = make_bundle(tmp_path / "2.0.0", version="2.0.0")
    res = run(["deploy", str(b), sshd.alias, "--keep", "1"] + cli_args(sshd, root))
    assert res.exit_code == 0, res.output
    assert installed(root) == ["1.3.0", "2.0.0"]
    res = run(["rollback", "demo", sshd.alias] + cli_args(sshd, root))
    assert res.exit_code == 0, res.output
    assert_active_verified(root, "demo", "1.3.0", bundles["1.3.0"])


def test_redeploy_installed_version_switches_without_upload(sshd, tmp_path):
    root = tmp_path / "dev"
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    b2 = make_bundle(tmp_path / "b2", version="2.0.0")
    for b in (b1, b2):
        assert deploy(str(b), [sshd.alias], over_ssh(sshd, str(root)))[0].result == "deployed"
    r = deploy(str(b1), [sshd.alias], over_ssh(sshd, str(root)))[0]
    assert r.result == "deployed" and "no upload" in r.message and "transfer" not in r.details
    assert_active_verified(root, "demo", "1.0.0", b1)
    # history records the re-activation, so rollback returns to 2.0.0
    assert (root / "state" / "demo.history").read_text().split() == ["1.0.0", "2.0.0", "1.0.0"]
    assert rollback("demo", [sshd.alias], root=str(root), connection=Connection(ssh_config=str(sshd.ssh_config)))[0].version == "2.0.0"
    assert_active_verified(root, "demo", "2.0.0", b2)


def test_damaged_active_copy_is_replaced(sshd, tmp_path):
    root = tmp_path / "dev"
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    deploy(str(b1), [sshd.alias], over_ssh(sshd, str(root)))
    victim = root / "bundles" / "demo" / "1.0.0" / "model.onnx"
    os.chmod(str(victim.parent), 0o755)
    os.chmod(str(victim), 0o644)
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    res = run(["devices", "status", sshd.alias, "--verify"] + cli_args(sshd, root))
    assert res.exit_code == 1 and "FAILS CHECKSUMS" in res.stdout
    r = deploy(str(b1), [sshd.alias], over_ssh(sshd, str(root)))[0]
    assert r.result == "deployed" and "replaced a damaged" in r.message
    assert_active_verified(root, "demo", "1.0.0", b1)


def test_tampered_staging_file_is_rejected_before_activation(sshd, tmp_path):
    root = tmp_path / "dev"
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    b2 = make_bundle(tmp_path / "b2", version="2.0.0")
    deploy(str(b1), [sshd.alias], over_ssh(sshd, str(root)))
    calls = []

    def corrupt(staging, **_):
        # the device-side staging dir is on this machine: flip a byte between upload and verify
        p = Path(staging) / "engines" / "8.6.2_sm87_fp16.engine"
        data = bytearray(p.read_bytes())
        data[7] ^= 0x55
        p.write_bytes(bytes(data))
        calls.append(staging)

    # every upload corrupted: rejected (after one automatic re-send), artifact named, nothing activated
    r = deploy(str(b2), [sshd.alias], over_ssh(sshd, str(root)), hooks={"after_upload": corrupt})[0]
    assert r.result == "failed", r
    assert "engines/8.6.2_sm87_fp16.engine" in r.message and "sha256" in r.message
    assert len(calls) == 2
    assert_active_verified(root, "demo", "1.0.0", b1)
    assert installed(root) == ["1.0.0"]
    assert not (root / "staging" / "demo" / "2.0.0" / "engines" / "8.6.2_sm87_fp16.engine").exists()

    # corrupted once (a flaky link): the bad file is re-sent and the deploy goes through
    calls.clear()
    hooks = {"after_upload": lambda **kw: corrupt(**kw) if not calls else None}
    r = deploy(str(b2), [sshd.alias], over_ssh(sshd, str(root)), hooks=hooks)[0]
    assert r.result == "deployed", r
    assert r.details["reuploaded"] == ["engines/8.6.2_sm87_fp16.engine"]
    assert_active_verified(root, "demo", "2.0.0", b2)


def test_preplaced_bad_staging_data_is_caught(sshd, tmp_path):
    """Same size and mtime as the real file, so rsync's quick check skips it: the device check must not."""
    root = tmp_path / "dev"
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    stage = root / "staging" / "demo" / "1.0.0"
    stage.mkdir(parents=True)
    src = b1 / "model.onnx"
    bad = stage / "model.onnx"
    bad.write_bytes(bytes(len(src.read_bytes())))
    st = os.stat(str(src))
    os.utime(str(bad), ns=(st.st_atime_ns, st.st_mtime_ns))
    # plus a stale partial upload of another version, and a stray file in this one
    (root / "staging" / "demo" / "0.9.0" / "engines").mkdir(parents=True)
    (root / "staging" / "demo" / "0.9.0" / "engines" / "x.engine").write_bytes(b"partial")
    (stage / "stray.bin").write_bytes(b"not in the manifest")
    res = run(["deploy", str(b1), sshd.alias, "--json"] + cli_args(sshd, root))
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)["results"][0]
    assert r["result"] == "deployed" and r["details"]["reuploaded"] == ["model.onnx"]
    assert r["details"]["cleaned"] == ["0.9.0"]
    assert r["details"]["extra_removed"] == ["stray.bin"]
    assert not (root / "bundles" / "demo" / "1.0.0" / "stray.bin").exists()
    assert not (root / "staging" / "demo").exists()
    assert_active_verified(root, "demo", "1.0.0", b1)


def test_health_check_failure_switches_back(sshd, tmp_path):
    root = tmp_path / "dev"
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    b2 = make_bundle(tmp_path / "b2", version="2.0.0")
    marker = tmp_path / "health-ran"
    # passing health check: runs inside the new active bundle, with its version in the environment
    hc = 'test -f model.onnx && echo "$JETSON_DEPLOY_VERSION $(basename "$(pwd -P)")" > {}'.format(marker)
    res = run(["deploy", str(b1), sshd.alias, "--health-cmd", hc] + cli_args(sshd, root))
    assert res.exit_code == 0, res.output
    assert marker.read_text().split() == ["1.0.0", "1.0.0"]
    assert "health check passed" in res.stdout

    res = run(["deploy", str(b2), sshd.alias, "--health-cmd", "echo probe failed >&2; exit 7", "--json"] + cli_args(sshd, root))
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    r = out["results"][0]
    assert out["ok"] is False
    assert r["result"] == "rolled-back" and r["active"] == "1.0.0" and r["version"] == "2.0.0"
    assert "exit 7" in r["message"] and "probe failed" in r["message"]
    assert_active_verified(root, "demo", "1.0.0", b1)
    assert (root / "state" / "demo.history").read_text().split() == ["1.0.0"]

    # a hanging health check is cut off by --health-timeout and also switches back
    res = run(["deploy", str(b2), sshd.alias, "--health-cmd", "sleep 60", "--health-timeout", "1"] + cli_args(sshd, root))
    assert res.exit_code == 1 and "rolled-back" in res.stdout
    assert_active_verified(root, "demo", "1.0.0", b1)


def test_health_failure_on_first_deploy_deactivates(sshd, tmp_path):
    root = tmp_path / "dev"
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    r = deploy(str(b1), [sshd.alias], over_ssh(sshd, str(root), health_cmd="false"))[0]
    assert r.result == "rolled-back" and "deactivated" in r.message
    assert active_version(root) is None
    assert not (root / "active" / "demo").exists()


def test_sftp_transfer(sshd, tmp_path):
    root = tmp_path / "dev"
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    res = run(["deploy", str(b1), sshd.alias, "--transfer", "sftp", "--json"] + cli_args(sshd, root))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["results"][0]["details"]["transfer"] == "sftp"
    assert_active_verified(root, "demo", "1.0.0", b1)


def test_two_hosts_one_down(sshd_pair, tmp_path):
    a, b, cfg = sshd_pair
    ra, rb = tmp_path / "a", tmp_path / "b"
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    # both up, from an inventory file with a group
    inv = tmp_path / "inventory.ini"
    inv.write_text("[shelf]\n{} \n{}\n[other]\nnever-used\n".format(a.alias, b.alias))
    # one root per host: the servers share a filesystem here, so give each its own --root
    for host, root in ((a.alias, ra), (b.alias, rb)):
        res = run(["deploy", str(b1), host, "--root", str(root), "--ssh-config", str(cfg), "-q"])
        assert res.exit_code == 0, res.output
    res = run(["devices", "status", "--hosts", str(inv), "--group", "shelf", "--root", str(ra), "--ssh-config", str(cfg), "--json"])
    assert res.exit_code == 0, res.output
    hosts = json.loads(res.stdout)["hosts"]
    assert [h["host"] for h in hosts] == [a.alias, b.alias] and all(h["ok"] for h in hosts)

    b.stop()
    b2 = make_bundle(tmp_path / "b2", version="2.0.0")
    res = run(["deploy", str(b2), "--hosts", str(inv), "--group", "shelf", "--root", str(ra), "--ssh-config", str(cfg),
               "--jobs", "2", "--connect-timeout", "5", "--json"])
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    by_host = {r["host"]: r for r in out["results"]}
    assert by_host[a.alias]["result"] == "deployed"
    assert by_host[b.alias]["result"] == "failed" and "connection refused" in by_host[b.alias]["message"]
    assert_active_verified(ra, "demo", "2.0.0", b2)
    assert_active_verified(rb, "demo", "1.0.0", b1)   # the down host kept what it had
    # the table names each host and its result; progress went to stderr
    res = run(["deploy", str(b2), a.alias, b.alias, "--root", str(ra), "--ssh-config", str(cfg), "--connect-timeout", "5"])
    assert res.exit_code == 1
    lines = res.stdout.splitlines()
    assert lines[0].split()[:4] == ["HOST", "RESULT", "VERSION", "SECONDS"]
    assert any(l.startswith(a.alias) and "unchanged" in l for l in lines)
    assert any(l.startswith(b.alias) and "failed" in l for l in lines)
    assert "1 of 2 hosts ok, 1 failed" in res.stdout
    st = status([a.alias, b.alias], root=str(ra), connection=Connection(ssh_config=str(cfg), connect_timeout=5))
    assert st[0]["ok"] and not st[1]["ok"] and st[1]["error"]


def test_bad_inputs(sshd, tmp_path):
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    res = run(["deploy", str(b1)])
    assert res.exit_code == 2 and "no hosts" in out(res)
    res = run(["deploy", str(b1), "host", "--root", "/opt/a b"])
    assert res.exit_code == 2 and "--root" in out(res)
    res = run(["deploy", str(b1), "nvidia@host:notaport"])
    assert res.exit_code == 2
    res = run(["deploy", str(b1), "host", "--rootfs", str(tmp_path)])
    assert res.exit_code == 2 and "--rootfs" in out(res)
    # -o reaches every ssh call: overriding the alias's port makes the host unreachable
    res = run(["deploy", str(b1), sshd.alias, "-o", "Port=1"] + cli_args(sshd, tmp_path / "dev"))
    assert res.exit_code == 1 and "connection refused" in res.stdout
    res = run(["devices", "status", sshd.alias, "-o", "Port=1"] + cli_args(sshd, tmp_path / "dev"))
    assert res.exit_code == 1 and "unreachable" in res.stdout
    # a corrupted local bundle is refused before any host is contacted
    p = b1 / "model.onnx"
    data = bytearray(p.read_bytes())
    data[0] ^= 1
    p.write_bytes(bytes(data))
    res = run(["deploy", str(b1), sshd.alias] + cli_args(sshd, tmp_path / "dev"))
    assert res.exit_code == 1 and "model.onnx" in out(res)
    assert not (tmp_path / "dev").exists()


def test_relative_root_is_under_the_remote_home(sshd, tmp_path):
    """--root without a leading / lands in the login directory, for ssh and rsync alike."""
    import pwd
    import shutil
    import uuid

    rel = "jd-test-{}".format(uuid.uuid4().hex[:8])
    home = Path(pwd.getpwuid(os.geteuid()).pw_dir)
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    b2 = make_bundle(tmp_path / "b2", version="2.0.0")
    try:
        for b in (b1, b2):
            r = deploy(str(b), [sshd.alias], over_ssh(sshd, rel))[0]
            assert r.result == "deployed", r
        assert_active_verified(home / rel, "demo", "2.0.0", b2)
        st = status([sshd.alias], root=rel, connection=Connection(ssh_config=str(sshd.ssh_config)), verify=True)[0]
        assert st["bundles"]["demo"]["verified"] is True and st["bundles"]["demo"]["previous"] == "1.0.0"
        assert rollback("demo", [sshd.alias], root=rel, connection=Connection(ssh_config=str(sshd.ssh_config)))[0].result == "rolled-back"
        assert_active_verified(home / rel, "demo", "1.0.0", b1)
    finally:
        if (home / rel).exists():
            subprocess.run(["chmod", "-R", "u+w", str(home / rel)])
            shutil.rmtree(str(home / rel), ignore_errors=True)


def test_ipv6_loopback_host(tmp_path):
    """user@[::1]:port through ssh, rsync and sftp (brackets where each tool needs them)."""
    from support.sshd_server import SshServer, ipv6_loopback

    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) on this machine")
    srv = SshServer.start(tmp_path / "sshd6", alias="jd-v6", listen="::1")
    try:
        assert srv.spec.startswith(srv.user + "@[::1]:")
        for transfer, version in (("rsync", "1.0.0"), ("sftp", "2.0.0")):
            b = make_bundle(tmp_path / version, version=version)
            res = run(["deploy", str(b), srv.spec, "--transfer", transfer, "--json"] + cli_args(srv, tmp_path / "dev"))
            assert res.exit_code == 0, out(res)
            assert_active_verified(tmp_path / "dev", "demo", version, b)
        res = run(["devices", "status", srv.spec, "--json"] + cli_args(srv, tmp_path / "dev"))
        assert res.exit_code == 0, out(res)
        assert json.loads(res.stdout)["hosts"][0]["bundles"]["demo"]["active"] == "2.0.0"
    finally:
        srv.stop()
