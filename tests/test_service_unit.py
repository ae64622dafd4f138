"""jetson-deploy service: unit text (checked by systemd-analyze verify), rootfs installs, fragments."""
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from support import tool
from support.deploy import out, runner
from jetson_deploy import service as svc
from jetson_deploy.cli import cli
from jetson_deploy.errors import BadInput

ANALYZE = tool("systemd-analyze")
needs_analyze = pytest.mark.needs("bin:systemd-analyze")


def invoke(args):
    return runner().invoke(cli, args, catch_exceptions=False)


def verify(tmp_path: Path, text: str, name: str = "demo") -> None:
    unit = tmp_path / svc.unit_name(name)
    unit.write_text(text)
    p = subprocess.run([ANALYZE, "verify", str(unit)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=60)
    assert p.returncode == 0 and not p.stdout.strip(), p.stdout


@needs_analyze
def test_print_is_a_valid_unit(tmp_path):
    res = invoke(["service", "install", "demo", "--source", "csi://0", "--sink", "display://0", "--sink", "out.jsonl",
                  "--backend", "tensorrt", "--no-cuda-graph", "--interval", "0", "--user", "nvidia", "--print"])
    assert res.exit_code == 0, out(res)
    text = res.stdout
    verify(tmp_path, text)
    assert "ExecStart={} -m jetson_deploy run /opt/jetson-deploy/active/demo --source csi://0 --sink display://0 " \
           "--sink out.jsonl --backend tensorrt --no-cuda-graph --interval 0.0".format(sys.executable) in text
    for line in ("Restart=on-failure", "RestartSec=5", "StartLimitBurst=10", "User=nvidia", "SupplementaryGroups=video",
                 "StandardOutput=journal", "WantedBy=multi-user.target", "Environment=DISPLAY=:0"):
        assert line in text.splitlines(), line
    assert "After=network-online.target nvargus-daemon.service" in text
    assert "--depth" not in text  # defaults are left to `run`


@needs_analyze
def test_awkward_source_is_quoted_for_systemd(tmp_path):
    spec = svc.ServiceSpec("demo", 'rtsp://cam/a b%20"c"$x', ["null://"], user="nvidia", root="/data/jd")
    text = svc.render_unit(spec)
    verify(tmp_path, text)
    assert 'ExecStart=' in text and '"rtsp://cam/a b%%20\\"c\\"$$x"' in text
    assert "nvargus" not in text and "/data/jd/active/demo" in text


@pytest.mark.parametrize("kw,match", [({"name": "a b"}, "service name"), ({"source": ""}, "--source"),
                                      ({"root": "rel/root"}, "absolute"), ({"user": "Bad User"}, "--user"),
                                      ({"exec_cmd": ["python3"]}, "absolute")])
def test_spec_refuses_bad_input(kw, match):
    args = dict(name="demo", source="csi://0", user="nvidia")
    args.update(kw)
    with pytest.raises(BadInput, match=match):
        svc.ServiceSpec(**args)


def make_rootfs(tmp_path: Path) -> Path:
    fs = tmp_path / "rootfs"
    (fs / "etc" / "systemd" / "system").mkdir(parents=True)
    (fs / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nnvidia:x:1000:1000::/home/nvidia:/bin/bash\n")
    return fs


@needs_analyze
def test_rootfs_install_enables_the_unit(tmp_path):
    fs = make_rootfs(tmp_path)
    res = invoke(["service", "install", "demo", "--source", "v4l2:///dev/video0", "--user", "nvidia", "--rootfs", str(fs)])
    assert res.exit_code == 0, out(res)
    unit = fs / "etc/systemd/system/jetson-deploy-demo.service"
    link = fs / "etc/systemd/system/multi-user.target.wants/jetson-deploy-demo.service"
    assert unit.is_file() and link.is_symlink()
    assert os.readlink(str(link)) == "/etc/systemd/system/jetson-deploy-demo.service"  # as systemctl enable makes it
    assert "ExecStart=/usr/bin/python3 -m jetson_deploy run" in unit.read_text()
    text = unit.read_text().replace("/usr/bin/python3", sys.executable)  # verify checks the program exists here
    verify(tmp_path, text)
    res = invoke(["service", "status", "demo", "--rootfs", str(fs)])
    assert res.exit_code == 0 and "installed, enabled" in res.stdout, out(res)
    # a second install replaces our own unit
    res = invoke(["service", "install", "demo", "--source", "csi://0", "--user", "nvidia", "--rootfs", str(fs)])
    assert res.exit_code == 0 and "nvargus-daemon.service" in unit.read_text()
    res = invoke(["service", "uninstall", "demo", "--rootfs", str(fs)])
    assert res.exit_code == 0, out(res)
    assert not unit.exists() and not link.is_symlink()
    res = invoke(["service", "status", "demo", "--rootfs", str(fs)])
    assert res.exit_code == 1 and "not installed" in res.stdout


def test_rootfs_absolute_symlink_stays_inside_the_image(tmp_path):
    """/etc/systemd -> /somewhere (absolute) is followed as the board sees it, never out of ROOTFS."""
    fs = make_rootfs(tmp_path)
    outside = tmp_path / "host-etc-systemd"
    (outside / "system").mkdir(parents=True)
    shutil.rmtree(str(fs / "etc" / "systemd"))
    os.symlink(str(outside), str(fs / "etc" / "systemd"))
    (fs / "usr" / "lib").mkdir(parents=True)
    os.symlink("../../../../..", str(fs / "usr" / "lib" / "up"))  # relative escape attempt
    spec = svc.ServiceSpec("demo", "csi://0", user="nvidia")
    res = svc.install_rootfs(spec, str(fs))
    assert list(outside.rglob("*")) == [outside / "system"], "wrote outside the rootfs"
    inside = fs / str(outside).lstrip("/") / "system" / "jetson-deploy-demo.service"
    assert Path(res["path"]) == inside and inside.is_file()
    assert svc.board_path(str(fs), "/usr/lib/up/etc/passwd") == fs.resolve() / "etc" / "passwd"


def test_rootfs_refuses_units_it_did_not_make(tmp_path):
    fs = make_rootfs(tmp_path)
    unit = fs / "etc/systemd/system/jetson-deploy-demo.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    res = invoke(["service", "install", "demo", "--source", "csi://0", "--user", "nvidia", "--rootfs", str(fs)])
    assert res.exit_code == 2 and "not made by jetson-deploy" in out(res)
    assert unit.read_text().startswith("[Service]")
    unit.unlink()
    os.symlink("/dev/null", str(unit))  # masked
    res = invoke(["service", "install", "demo", "--source", "csi://0", "--user", "nvidia", "--rootfs", str(fs)])
    assert res.exit_code == 2 and "masked" in out(res)
    res = invoke(["service", "install", "demo", "--source", "csi://0", "--rootfs", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "not a directory" in out(res)


@pytest.fixture
def fake_systemctl(tmp_path, monkeypatch):
    """A systemctl on PATH that logs its arguments; `is-active` answers from a state file."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    logf, state = tmp_path / "systemctl.log", tmp_path / "state"
    state.write_text("active")
    script = bindir / "systemctl"
    script.write_text("""#!/bin/sh
echo "$*" >> {log}
case "$1" in
  is-active) s=$(cat {state}); [ "$2" = --quiet ] || echo "$s"; [ "$s" = active ];;
  show) echo ActiveState=$(cat {state}); echo SubState=running; echo UnitFileState=enabled; echo NRestarts=2; echo MainPID=42;;
  status) echo "status of $3";;
esac
""".format(log=logf, state=state))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    return logf, state


def test_local_install_status_uninstall(tmp_path, fake_systemctl):
    logf, state = fake_systemctl
    spec = svc.ServiceSpec("demo", "csi://0", user="nvidia")
    udir = tmp_path / "units"
    svc.install_local(spec, unit_dir=str(udir))
    assert (udir / "jetson-deploy-demo.service").is_file()
    assert logf.read_text().splitlines() == ["daemon-reload", "enable --now jetson-deploy-demo.service"]
    st = svc.status_local("demo")
    assert st["ActiveState"] == "active" and st["NRestarts"] == "2"
    res = invoke(["service", "status", "demo"])
    assert res.exit_code == 0 and "active (running), enabled, 2 restarts, pid 42" in res.stdout, out(res)
    state.write_text("failed")
    assert invoke(["service", "status", "demo"]).exit_code == 1
    svc.uninstall_local("demo", unit_dir=str(udir))
    assert not (udir / "jetson-deploy-demo.service").exists()
    assert "disable --now jetson-deploy-demo.service" in logf.read_text()


def test_deploy_fragments_restart_and_gate(fake_systemctl):
    logf, state = fake_systemctl
    sh = lambda cmd: subprocess.run(["sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # noqa: E731
                                    universal_newlines=True, timeout=30)
    if os.geteuid() == 0:
        assert sh(svc.restart_command("demo")).returncode == 0
        assert "restart jetson-deploy-demo.service" in logf.read_text()
    assert sh(svc.health_check_command("demo", settle=1)).returncode == 0
    state.write_text("activating")
    p = sh(svc.health_check_command("demo", settle=2))
    assert p.returncode == 1 and "jetson-deploy-demo.service is activating" in p.stdout
    assert "is-active" in svc.restart_and_check_command("demo") and "restart" in svc.restart_and_check_command("demo")
