"""deploy --restart-service: the unit restarts after the switch, the gate checks it stays active,
and a failed gate switches back and restarts it on the previous version (fake systemctl on PATH)."""
import subprocess

import pytest

from jetson_deploy import service as svc
from jetson_deploy.cli import cli as cli_main
from jetson_deploy.deploy import DeployOptions, LocalTransport, deploy, deploy_host, open_local_bundle
from jetson_deploy.deploy import scripts
from support.deploy import FakeSystemd, active_version, board_venv, cli_args, make_bundle, out, over_ssh, runner

UNIT = "jetson-deploy-demo.service"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake systemd for scripts run here (LocalTransport, plain sh)."""
    f = FakeSystemd(tmp_path / "systemd")
    monkeypatch.setenv("PATH", f.path())
    return f


def _local_deploy(bundle, root, **kw):
    with open_local_bundle(str(bundle)) as lb:
        return deploy_host(lb, LocalTransport("dev"), DeployOptions(root=str(root), **kw))


def _verbs(calls):
    """'restart jetson-deploy-demo.service @1.0.0' -> ('restart', '1.0.0'); is-active polls collapse."""
    out = []
    for c in calls:
        words = c.split()
        v = (words[0], words[-1].lstrip("@"))
        if not out or out[-1] != v:
            out.append(v)
    return out


def test_local_restart_after_switch_once_without_health_cmd(tmp_path, fake):
    root = tmp_path / "root"
    fake.reset(root)
    r = _local_deploy(make_bundle(tmp_path / "b1", version="1.0.0"), root, service="demo", settle=1)
    assert r.result == "deployed" and "{} restarted on it".format(UNIT) in r.message, r.message
    restarts = [c for c in fake.calls() if c.startswith("restart ")]
    assert restarts == ["restart {} @1.0.0".format(UNIT)]  # once, on the new version
    assert _verbs(fake.calls()) == [("restart", "1.0.0"), ("is-active", "1.0.0")]


def test_local_crash_loop_rolls_back_and_restarts_previous(tmp_path, fake):
    root = tmp_path / "root"
    fake.reset(root)
    assert _local_deploy(make_bundle(tmp_path / "b1", version="1.0.0"), root).result == "deployed"
    fake.reset(root, failing=["2.0.0"])
    r = _local_deploy(make_bundle(tmp_path / "b2", version="2.0.0"), root, service="demo", settle=2)
    assert r.result == "rolled-back" and active_version(root) == "1.0.0"
    assert "switched back to 1.0.0; service restarted on 1.0.0" in r.message, r.message
    assert "{} is failed".format(UNIT) in r.details["health_log"]
    verbs = _verbs(fake.calls())
    assert verbs[0] == ("restart", "2.0.0") and verbs[-1] == ("restart", "1.0.0"), verbs
    assert ("is-active", "2.0.0") in verbs


def test_local_first_deploy_failing_stops_the_unit(tmp_path, fake):
    """No previous version: the bundle is deactivated and the unit stopped, not restarted into a crash loop."""
    root = tmp_path / "root"
    fake.reset(root, failing=["1.0.0"])
    r = _local_deploy(make_bundle(tmp_path / "b1", version="1.0.0"), root, service="demo", settle=1)
    assert r.result == "rolled-back" and active_version(root) is None
    assert r.message.endswith("demo deactivated; service stopped"), r.message
    assert fake.calls()[-1] == "stop {} @none".format(UNIT)


def test_local_user_health_cmd_runs_after_the_service_gate(tmp_path, fake):
    root = tmp_path / "root"
    fake.reset(root)
    _local_deploy(make_bundle(tmp_path / "b1", version="1.0.0"), root)
    marker = tmp_path / "health-ran"
    # a trailing comment must not swallow the gate's closing brace
    r = _local_deploy(make_bundle(tmp_path / "b2", version="2.0.0"), root, service="demo", settle=1,
                      health_cmd="touch {} && exit 7  # no".format(marker))
    assert r.result == "rolled-back" and marker.exists() and "exit 7" in r.message, r.message
    verbs = _verbs(fake.calls())
    assert verbs[0] == ("restart", "2.0.0") and verbs[-1] == ("restart", "1.0.0"), verbs


def test_local_failed_restart_after_rollback_is_reported(tmp_path, fake):
    root = tmp_path / "root"
    fake.reset(root)
    _local_deploy(make_bundle(tmp_path / "b1", version="1.0.0"), root)
    fake.reset(root, restart_fails=True)  # e.g. no passwordless sudo
    r = _local_deploy(make_bundle(tmp_path / "b2", version="2.0.0"), root, service="demo", settle=1)
    assert r.result == "rolled-back" and active_version(root) == "1.0.0"
    assert "restarting {} on 1.0.0 failed (exit 1: Failed to restart {}: Access denied)".format(UNIT, UNIT) in r.message, r.message
    assert "sudo" in r.message


def test_finalize_on_rollback_under_sh(tmp_path, fake):
    """The rendered finalize script alone: a failing gate swaps back, then runs on_rollback with
    JETSON_DEPLOY_PREVIOUS, and reports its exit status."""
    root = tmp_path / "root"
    fake.reset(root)
    _local_deploy(make_bundle(tmp_path / "b1", version="1.0.0"), root)
    _local_deploy(make_bundle(tmp_path / "b2", version="2.0.0"), root)  # installed, now active
    fake.reset(root, failing=["1.0.0"])
    gate, timeout, on_rb = svc.deploy_gate("demo", 1, None, 5)
    script = scripts.finalize(str(root), "demo", "1.0.0", "switch", "", [], gate, timeout, on_rb)
    p = subprocess.run(["sh", "-s"], input=script, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=120)
    # "switch" needs the staged checksums: prepare writes them; without, finalize refuses cleanly
    assert p.returncode == 12 and "expected checksums" in p.stdout
    with open_local_bundle(str(tmp_path / "b1")) as lb:
        prep = subprocess.run(["sh", "-s"], input=scripts.prepare(str(root), "demo", "1.0.0", lb.sums_text),
                              stdout=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert "TARGET ok" in prep.stdout
    p = subprocess.run(["sh", "-s"], input=script, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=120)
    assert p.returncode == scripts.RC_HEALTH, p.stdout
    assert "AFTER_ROLLBACK 0" in p.stdout and active_version(root) == "2.0.0"
    assert _verbs(fake.calls())[-1] == ("restart", "2.0.0")
    # no on_rollback: the answer has no AFTER_ROLLBACK line (a plain --health-cmd deploy is unchanged)
    plain = scripts.finalize(str(root), "demo", "1.0.0", "switch", "", [], "exit 1", 5)
    assert "ONRB=''" in plain


def test_restart_service_needs_a_valid_name_and_settle(tmp_path):
    b = make_bundle(tmp_path / "b", version="1.0.0")
    from jetson_deploy.errors import BadInput

    with pytest.raises(BadInput, match="service name"):
        deploy(str(b), ["nobody@127.0.0.1"], DeployOptions(service="bad name;rm"))
    with pytest.raises(BadInput, match="settle"):
        deploy(str(b), ["nobody@127.0.0.1"], DeployOptions(service="demo", settle=-1))


def test_rootfs_restart_service_notes_next_boot(tmp_path):
    fs = tmp_path / "rootfs"
    (fs / "etc").mkdir(parents=True)
    b = make_bundle(tmp_path / "b", version="1.0.0")
    res = runner().invoke(cli_main, ["deploy", str(b), "--rootfs", str(fs), "--restart-service", "demo"])
    assert res.exit_code == 0, out(res)
    assert "has no enabled {}".format(UNIT) in out(res)
    svc.install_rootfs(svc.ServiceSpec("demo", "csi://0", user="root", exec_cmd=svc.default_exec(board_venv(fs))), str(fs))
    res = runner().invoke(cli_main, ["deploy", str(b), "--rootfs", str(fs), "--restart-service", "demo"])
    assert res.exit_code == 0 and "starts the new version at the board's next boot" in out(res), out(res)


# ----------------------------------------------------------------------------- over ssh

@pytest.mark.slow
def test_ssh_restart_gate_and_rollback_restart(sshd_systemd, tmp_path):
    srv, fake = sshd_systemd
    root = tmp_path / "root"
    fake.reset(root)
    args = cli_args(srv, root) + ["--restart-service", "demo", "--service-settle", "1"]
    res = runner().invoke(cli_main, ["deploy", str(make_bundle(tmp_path / "b1", version="1.0.0")), srv.alias] + args)
    assert res.exit_code == 0 and "{} restarted on it".format(UNIT) in res.stdout, out(res)
    assert [c for c in fake.calls() if c.startswith("restart")] == ["restart {} @1.0.0".format(UNIT)]

    fake.reset(root, failing=["2.0.0"])
    res = runner().invoke(cli_main, ["deploy", str(make_bundle(tmp_path / "b2", version="2.0.0")), srv.alias] + args)
    assert res.exit_code == 1 and "rolled-back" in res.stdout, out(res)
    assert "switched back to 1.0.0; service restarted on 1.0.0" in res.stdout
    assert active_version(root) == "1.0.0"
    verbs = _verbs(fake.calls())
    assert verbs[0] == ("restart", "2.0.0") and ("is-active", "2.0.0") in verbs and verbs[-1] == ("restart", "1.0.0"), verbs


@pytest.mark.slow
def test_ssh_restart_without_health_cmd_once_and_fleet_api(sshd_systemd, tmp_path):
    srv, fake = sshd_systemd
    root = tmp_path / "root"
    fake.reset(root)
    rs = deploy(str(make_bundle(tmp_path / "b1", version="1.0.0")), [srv.alias], over_ssh(srv, root, service="demo", settle=0))
    assert rs[0].result == "deployed", rs[0].message
    assert fake.calls() == ["restart {} @1.0.0".format(UNIT)]  # settle 0: the restart alone, once
