"""Fast fleet-level checks of ``jetson-deploy deploy`` (no sshd: each host is a directory here, through
the same scripts ``--rootfs`` runs with ``sh``): what the table and the exit code say when a host
rolls back or breaks unexpectedly, and what a switch-only redeploy leaves in staging.

The slow sshd tests (test_deploy_ssh.py, test_ansible_deploy.py) cover the transport itself.
"""
import re

import pytest

from jetson_deploy.cli import cli
from jetson_deploy.deploy import DeployOptions, LocalTransport, deploy_host, open_local_bundle, status_host
from jetson_deploy.deploy import fleet
from support.deploy import active_version, assert_active_verified, make_bundle, out, runner


class Broken(LocalTransport):
    """A host whose connection fails with an error nobody planned for (a bug, not a RemoteError)."""

    def run_script(self, script, timeout=None):
        raise RuntimeError("disk on fire")


@pytest.fixture
def local_hosts(monkeypatch):
    """Every host named on the command line is this machine (``u@broken`` raises RuntimeError)."""
    monkeypatch.setattr(fleet, "_ssh", lambda h, c: (Broken if "broken" in h.label else LocalTransport)(h.label))


def _deploy(args):
    return runner().invoke(cli, ["deploy"] + [str(a) for a in args], catch_exceptions=False)


def _summary(text):
    return [ln for ln in text.splitlines() if ln.strip()][-1]


def test_a_rolled_back_host_fails_the_deploy(tmp_path, local_hosts):
    root = tmp_path / "root"
    assert _deploy([make_bundle(tmp_path / "b1", version="1.0.0"), "u@dev", "--root", root]).exit_code == 0
    res = _deploy([make_bundle(tmp_path / "b2", version="2.0.0"), "u@dev", "--root", root,
                   "--health-cmd", "exit 3", "--health-timeout", "30"])
    assert res.exit_code == 1, out(res)
    assert re.search(r"u@dev\s+rolled-back\s+2\.0\.0", res.stdout), res.stdout
    assert active_version(root) == "1.0.0"


def test_the_summary_counts_rolled_back_hosts_as_not_ok(tmp_path, local_hosts):
    """Two hosts, one after the other (--jobs 1): the first one's health check fails, the second's passes."""
    root, mark = tmp_path / "root", tmp_path / "first-check-done"
    assert _deploy([make_bundle(tmp_path / "b1", version="1.0.0"), "u@dev", "--root", root]).exit_code == 0
    res = _deploy([make_bundle(tmp_path / "b2", version="2.0.0"), "u@one", "u@two", "--root", root, "--jobs", "1",
                   "--health-cmd", '[ -e "{0}" ] || {{ touch "{0}"; exit 3; }}'.format(mark), "--health-timeout", "30"])
    assert res.exit_code == 1, out(res)
    assert re.search(r"u@one\s+rolled-back", res.stdout) and re.search(r"u@two\s+deployed", res.stdout), res.stdout
    summary = _summary(res.stdout)
    assert "2 of 2 hosts ok" not in summary and re.search(r"rolled.back", summary), summary


def test_an_unexpected_error_on_one_host_keeps_the_others_results(tmp_path, local_hosts):
    root = tmp_path / "root"
    res = _deploy([make_bundle(tmp_path / "b1", version="1.0.0"), "u@dev", "u@broken", "--root", root])
    assert res.exit_code == 1, out(res)
    assert re.search(r"u@dev\s+deployed\s+1\.0\.0", res.stdout), res.stdout
    assert re.search(r"u@broken\s+failed\s+1\.0\.0\s+\S+\s+internal error: RuntimeError: disk on fire", res.stdout), res.stdout
    assert _summary(res.stdout).startswith("1 of 2 hosts ok")
    assert "Traceback" not in res.output
    assert_active_verified(root, "demo", "1.0.0")


def test_fleet_api_turns_any_exception_into_a_failed_result():
    from jetson_deploy.deploy import parse_host, run_fleet
    from jetson_deploy.deploy.single_host import HostResult

    def work(h):
        if h.label.endswith("b"):
            raise KeyError("no such thing")
        return HostResult(h.label, "deployed", "demo", "1.0.0")

    results = run_fleet([parse_host("u@a"), parse_host("u@b"), parse_host("u@c")], work, jobs=2, name="demo", version="1.0.0")
    assert [r.result for r in results] == ["deployed", "failed", "deployed"]
    assert results[1].message == "internal error: KeyError: 'no such thing'"
    single = run_fleet([parse_host("u@b")], work, jobs=1, name="demo", version="1.0.0")
    assert single[0].failed and single[0].message.startswith("internal error: KeyError")


def test_switch_only_redeploy_leaves_no_staging_behind(tmp_path):
    """1.0.0 -> 2.0.0 -> 1.0.0 again: the last is a switch (1.0.0 is installed and verified), no upload."""
    root = tmp_path / "root"
    b1, b2 = make_bundle(tmp_path / "b1", version="1.0.0"), make_bundle(tmp_path / "b2", version="2.0.0")
    for b in (b1, b2, b1):
        with open_local_bundle(str(b)) as lb:
            r = deploy_host(lb, LocalTransport("dev"), DeployOptions(root=str(root)))
        assert r.result == "deployed", r.message
    assert active_version(root) == "1.0.0"
    assert not (root / "staging" / "demo").exists(), sorted(p.name for p in (root / "staging" / "demo").iterdir())
    st = status_host(LocalTransport("dev"), str(root), "demo")
    assert st["bundles"]["demo"]["staging"] == [] and st["bundles"]["demo"]["active"] == "1.0.0"
