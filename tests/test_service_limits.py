"""The service's limits, as values: the unit's start back-off, and the restart gate's time budget
(``--service-settle`` longer than ``--health-timeout`` must not roll a healthy deploy back)."""
import configparser

import pytest

from jetson_deploy import service as svc
from jetson_deploy.deploy import DeployOptions, LocalTransport, deploy_host, open_local_bundle
from support.deploy import FakeSystemd, active_version, make_bundle


def _unit_section(text):
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read_string("\n".join(line for line in text.splitlines() if not line.startswith("#")))
    return cp


def test_unit_gives_up_after_ten_starts_in_five_minutes():
    """systemd-analyze accepts any interval (0 disables the limit): the value itself is the contract."""
    unit = _unit_section(svc.render_unit(svc.ServiceSpec("demo", "csi://0", user="nvidia")))
    assert unit["Unit"]["StartLimitIntervalSec"] == "300"
    assert unit["Unit"]["StartLimitBurst"] == "10"
    assert unit["Service"]["Restart"] == "on-failure" and unit["Service"]["RestartSec"] == "5"


@pytest.mark.parametrize("settle", [0, 1, 120])
def test_restart_gate_budget_covers_the_settle_time_and_the_health_command(settle):
    cmd, timeout, on_rollback = svc.deploy_gate("demo", settle, "curl -sf localhost:8080/", 60.0)
    assert timeout >= 60.0 + settle + 10  # restart + settle + the user's command, with room for the restart itself
    assert "curl -sf localhost:8080/" in cmd and on_rollback
    assert svc.deploy_gate(None, settle, "true", 60.0) == ("true", 60.0, None)  # no service: unchanged


def test_settle_longer_than_the_health_timeout_keeps_a_healthy_deploy(tmp_path, monkeypatch):
    """The unit stays active for the whole settle time (3 s) while --health-timeout is 1 s: deployed."""
    fake = FakeSystemd(tmp_path / "systemd")
    monkeypatch.setenv("PATH", fake.path())
    root = tmp_path / "root"
    fake.reset(root)
    with open_local_bundle(str(make_bundle(tmp_path / "b1", version="1.0.0"))) as lb:
        r = deploy_host(lb, LocalTransport("dev"), DeployOptions(root=str(root), service="demo", settle=3, health_timeout=1.0))
    assert r.result == "deployed", r.message
    assert active_version(root) == "1.0.0"
    assert sum(1 for c in fake.calls() if c.startswith("is-active")) >= 3  # it really watched for 3 s


@pytest.fixture
def systemctl_log(tmp_path, monkeypatch):
    """A systemctl on PATH that only logs what it was asked (this machine's units are not touched)."""
    import os

    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "systemctl.log"
    exe = bindir / "systemctl"
    exe.write_text('#!/bin/sh\necho "$*" >> {}\n'.format(log))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    monkeypatch.setattr(svc, "SYSTEMD_RUN_DIR", str(tmp_path))  # as if systemd were PID 1 here
    return log


def test_every_group_is_a_supplementary_group():
    unit = _unit_section(svc.render_unit(svc.ServiceSpec("demo", "csi://0", user="nvidia", groups=["video", "render", "i2c"])))
    assert unit["Service"]["SupplementaryGroups"].split() == ["video", "render", "i2c"]


def test_uninstall_reloads_systemd_after_removing_the_unit(tmp_path, systemctl_log):
    udir = tmp_path / "units"
    svc.install_local(svc.ServiceSpec("demo", "csi://0", user="nvidia"), unit_dir=str(udir))
    systemctl_log.write_text("")
    svc.uninstall_local("demo", unit_dir=str(udir))
    assert systemctl_log.read_text().splitlines() == ["disable --now jetson-deploy-demo.service", "daemon-reload"]
    with pytest.raises(svc.BadInput, match=r"^jetson-deploy-demo\.service is not installed \("):
        svc.uninstall_local("demo", unit_dir=str(udir))


def test_a_rootfs_passwd_that_is_not_utf8_is_still_read(tmp_path):
    fs = tmp_path / "fs"
    (fs / "etc").mkdir(parents=True)
    (fs / "etc" / "passwd").write_bytes(b"root:x:0:0::/root:/bin/sh\ngast:x:7:7:G\xe4st:/home/g:/bin/sh\nnvidia:x:1000:1000::/home/nvidia:/bin/bash\n")
    from support.deploy import board_venv

    python = board_venv(fs)
    svc.install_rootfs(svc.ServiceSpec("demo", "csi://0", user="nvidia", exec_cmd=svc.default_exec(python, True)),
                       str(fs))
    assert (fs / "etc" / "systemd" / "system" / "jetson-deploy-demo.service").is_file()
