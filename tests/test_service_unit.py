"""jetson-deploy service: unit text (checked by systemd-analyze verify), rootfs installs, fragments."""
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from support import tool
from support.deploy import BOARD_PY, board_venv, out, runner
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
    board_venv(fs)
    return fs


@needs_analyze
def test_rootfs_install_enables_the_unit(tmp_path):
    fs = make_rootfs(tmp_path)
    res = invoke(["service", "install", "demo", "--source", "v4l2:///dev/video0", "--user", "nvidia", "--rootfs", str(fs),
                  "--python", BOARD_PY])
    assert res.exit_code == 0, out(res)
    unit = fs / "etc/systemd/system/jetson-deploy-demo.service"
    link = fs / "etc/systemd/system/multi-user.target.wants/jetson-deploy-demo.service"
    assert unit.is_file() and link.is_symlink()
    assert os.readlink(str(link)) == "/etc/systemd/system/jetson-deploy-demo.service"  # as systemctl enable makes it
    assert "ExecStart={} -m jetson_deploy run".format(BOARD_PY) in unit.read_text()
    text = unit.read_text().replace(BOARD_PY, sys.executable)  # verify checks the program exists here
    verify(tmp_path, text)
    res = invoke(["service", "status", "demo", "--rootfs", str(fs)])
    assert res.exit_code == 0 and "installed, enabled" in res.stdout, out(res)
    # a second install replaces our own unit
    res = invoke(["service", "install", "demo", "--source", "csi://0", "--user", "nvidia", "--rootfs", str(fs), "--python", BOARD_PY])
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
    spec = svc.ServiceSpec("demo", "csi://0", user="nvidia", exec_cmd=svc.default_exec(BOARD_PY))
    res = svc.install_rootfs(spec, str(fs))
    assert list(outside.rglob("*")) == [outside / "system"], "wrote outside the rootfs"
    inside = fs / str(outside).lstrip("/") / "system" / "jetson-deploy-demo.service"
    assert Path(res["path"]) == inside and inside.is_file()
    assert svc.board_path(str(fs), "/usr/lib/up/etc/passwd") == fs.resolve() / "etc" / "passwd"


def test_rootfs_refuses_units_it_did_not_make(tmp_path):
    fs = make_rootfs(tmp_path)
    unit = fs / "etc/systemd/system/jetson-deploy-demo.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    res = invoke(["service", "install", "demo", "--source", "csi://0", "--user", "nvidia", "--rootfs", str(fs), "--python", BOARD_PY])
    assert res.exit_code == 2 and "not made by jetson-deploy" in out(res)
    assert unit.read_text().startswith("[Service]")
    unit.unlink()
    os.symlink("/dev/null", str(unit))  # masked
    res = invoke(["service", "install", "demo", "--source", "csi://0", "--user", "nvidia", "--rootfs", str(fs), "--python", BOARD_PY])
    assert res.exit_code == 2 and "masked" in out(res)
    res = invoke(["service", "install", "demo", "--source", "csi://0", "--rootfs", str(tmp_path / "nope"), "--python", BOARD_PY])
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


def test_local_install_status_uninstall(tmp_path, fake_systemctl, monkeypatch):
    logf, state = fake_systemctl
    monkeypatch.setattr(svc, "SYSTEMD_RUN_DIR", str(tmp_path))  # as if systemd were PID 1 here
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


# ----------------------------------------------------------------------------- issue #29.3, #29.4, #27.2
INJECT = "x\nExecStartPre=+/bin/sh -c id"
INJECTIONS = {  # flag -> the install arguments carrying a newline there
    "NAME": ["demo\n"],
    "--after": ["demo", "--after", "a.service\nExecStartPre=+/bin/sh -c id"],
    "--sink": ["demo", "--sink", "out.jsonl\nExecStartPre=+/bin/sh -c id"],
    "--source": ["demo", "--source", "csi://0\nExecStartPre=+/bin/sh -c id"],
    "--exec": ["demo", "--exec", "/usr/bin/python3 -m jetson_deploy\nExecStartPre=+/bin/sh"],
    "--root": ["demo", "--root", "/opt/jd\nExecStartPre=+/bin/sh"],
    "--user": ["demo", "--user", "nvidia\n"],
    "--extra-group": ["demo", "--extra-group", "video\n"],
    "--python": ["demo", "--python", "/usr/bin/python3\nExecStartPre=+/bin/sh"],
    "run option": ["demo", "--key", "/etc/k.pub\nExecStartPre=+/bin/sh"],
}


@pytest.mark.parametrize("flag", sorted(INJECTIONS))
def test_control_characters_never_reach_the_unit(flag):
    """#29.3: a newline in any value wrote new directives (ExecStartPre=+... as root); refused in one line."""
    args = INJECTIONS[flag]
    argv = ["service", "install"] + args[:1] + (["--source", "csi://0"] if "--source" not in args else []) + args[1:]
    argv += ["--user", "nvidia"] if "--user" not in args else []
    res = invoke(argv + ["--print"])
    assert res.exit_code == 2, out(res)
    assert "ExecStartPre" not in res.stdout and "[Service]" not in res.stdout
    assert ("control character" in out(res) or "service name" in out(res) or "not a valid" in out(res)), out(res)


AWKWARD = ["rtsp://cam/a b%n\"c\"$HOME;'x'\\y", "/data/%n dir", "file with spaces.mp4", "caf\u00e9.jsonl", ";", "100%"]


@needs_analyze
@pytest.mark.parametrize("value", AWKWARD)
def test_awkward_values_are_quoted_and_escaped(tmp_path, value):
    """Legal but awkward values: one ExecStart, nothing expanded (%n, $HOME), systemd-analyze says nothing."""
    root = "/data/{}".format(value.replace("/", "_").replace("\\", "_").replace(" ", "-")) if "%" in value else "/opt/jd"
    res = invoke(["service", "install", "demo", "--source", value, "--sink", value if value.endswith("jsonl") else "null://",
                  "--user", "nvidia", "--root", root, "--print"])
    assert res.exit_code == 0, out(res)
    text = res.stdout
    verify(tmp_path, text)
    lines = text.splitlines()
    assert sum(ln.startswith("ExecStart") for ln in lines) == 1 and sum(ln.startswith("Description=") for ln in lines) == 1
    desc = next(ln for ln in lines if ln.startswith("Description="))
    assert "%" not in desc.replace("%%", "")  # every % escaped: %n is not the unit's name there
    exec_line = next(ln for ln in lines if ln.startswith("ExecStart="))
    assert "%" not in exec_line.replace("%%", "") and "$" not in exec_line.replace("$$", "")


@pytest.mark.parametrize("unit", ["-x.service", "a b.service", "nvargus-daemon", "x.service\n"])
def test_after_takes_unit_names_only(unit):
    res = invoke(["service", "install", "demo", "--source", "csi://0", "--user", "nvidia", "--after", unit, "--print"])
    assert res.exit_code == 2 and "--after" in out(res), out(res)


def test_rootfs_uninstall_touches_nothing_it_did_not_write(tmp_path):
    """#29.4: the owner's *.wants link was deleted before the unit was found not ours."""
    fs = make_rootfs(tmp_path)
    sysdir = fs / "etc/systemd/system"
    unit = sysdir / "jetson-deploy-demo.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n")
    (sysdir / "multi-user.target.wants").mkdir()
    link = sysdir / "multi-user.target.wants" / "jetson-deploy-demo.service"
    os.symlink("/etc/systemd/system/jetson-deploy-demo.service", str(link))
    res = invoke(["service", "uninstall", "demo", "--rootfs", str(fs)])
    assert res.exit_code == 2 and "not made by jetson-deploy" in out(res)
    assert link.is_symlink() and unit.read_text().startswith("[Service]")


def test_rootfs_uninstall_keeps_links_to_other_units(tmp_path):
    fs = make_rootfs(tmp_path)
    invoke(["service", "install", "demo", "--source", "csi://0", "--user", "nvidia", "--rootfs", str(fs), "--python", BOARD_PY])
    other = fs / "etc/systemd/system/graphical.target.wants"
    other.mkdir()
    os.symlink("/lib/systemd/system/someone-elses.service", str(other / "jetson-deploy-demo.service"))
    res = invoke(["service", "uninstall", "demo", "--rootfs", str(fs)])
    assert res.exit_code == 0, out(res)
    assert (other / "jetson-deploy-demo.service").is_symlink()
    assert not (fs / "etc/systemd/system/multi-user.target.wants/jetson-deploy-demo.service").is_symlink()


def test_local_install_without_systemd_leaves_nothing(tmp_path, fake_systemctl, monkeypatch):
    """#29.4: no systemd running: one line, no unit left behind; status says so."""
    monkeypatch.setattr(svc, "SYSTEMD_RUN_DIR", str(tmp_path / "not-booted"))
    udir = tmp_path / "units"
    udir.mkdir()
    with pytest.raises(BadInput, match="systemd is not running"):
        svc.install_local(svc.ServiceSpec("demo", "csi://0", user="nvidia"), unit_dir=str(udir))
    assert list(udir.iterdir()) == []
    res = invoke(["service", "status", "demo"])
    assert res.exit_code == 1 and "systemd is not running" in out(res), out(res)


def test_local_install_failure_restores_the_unit_dir(tmp_path, fake_systemctl, monkeypatch):
    logf, state = fake_systemctl
    monkeypatch.setattr(svc, "SYSTEMD_RUN_DIR", str(tmp_path))
    udir = tmp_path / "units"
    failing = tmp_path / "bin" / "systemctl"
    failing.write_text(failing.read_text().replace('echo "$*" >>', '[ "$1" = enable ] && exit 1; echo "$*" >>'))
    with pytest.raises(Exception, match="systemctl enable"):
        svc.install_local(svc.ServiceSpec("demo", "csi://0", user="nvidia"), unit_dir=str(udir))
    assert not (udir / "jetson-deploy-demo.service").exists()


@pytest.mark.needs("bin:unshare")
def test_cli_install_on_a_box_without_systemd(tmp_path):
    """Through the CLI, /etc an overlay in a private mount namespace: exit 2, /etc/systemd/system untouched."""
    import shlex

    for d in ("u", "w"):
        (tmp_path / d).mkdir()
    cmd = "{} -m jetson_deploy service install demo --source csi://0 --user nvidia --no-start".format(sys.executable)
    script = "mount -t overlay overlay -o lowerdir=/etc,upperdir={u},workdir={w} /etc && {cmd}".format(
        u=shlex.quote(str(tmp_path / "u")), w=shlex.quote(str(tmp_path / "w")), cmd=cmd)
    ns = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    p = subprocess.run(ns + ["sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       env=env, timeout=120)
    assert p.returncode == 2 and "systemd is not running" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert [x for x in (tmp_path / "u").rglob("*") if "jetson-deploy" in x.name] == []


@needs_analyze
def test_unit_has_a_working_directory_and_the_interpreter(tmp_path):
    """#27.2: WorkingDirectory= (the state directory systemd makes, owned by User=) and this interpreter."""
    res = invoke(["service", "install", "shapes", "--source", "csi://0", "--sink", "out.jsonl", "--user", "nvidia", "--print"])
    assert res.exit_code == 0, out(res)
    lines = res.stdout.splitlines()
    assert "WorkingDirectory=/var/lib/jetson-deploy/shapes" in lines and "StateDirectory=jetson-deploy/shapes" in lines
    assert any(ln.startswith("ExecStart={} -m jetson_deploy run ".format(sys.executable)) for ln in lines)
    assert "--sink out.jsonl" in res.stdout  # relative: it lands in the working directory
    verify(tmp_path, res.stdout, "shapes")


def test_rootfs_needs_the_boards_interpreter(tmp_path):
    """#27.2: the rootfs unit ran /usr/bin/python3 although jetson-deploy lives in a venv."""
    fs = make_rootfs(tmp_path)
    base = ["service", "install", "demo", "--source", "csi://0", "--user", "nvidia", "--rootfs", str(fs)]
    res = invoke(base)
    assert res.exit_code == 2 and "--rootfs needs --python" in out(res), out(res)
    res = invoke(base + ["--python", "/usr/bin/python3"])
    assert res.exit_code == 2 and "not an executable program in the image" in out(res), out(res)
    bare = tmp_path / "bare"
    (bare / "etc/systemd/system").mkdir(parents=True)
    board_venv(bare, installed=False)
    res = invoke(base[:-1] + [str(bare), "--python", BOARD_PY])
    assert res.exit_code == 2 and "not installed" in out(res), out(res)
    assert not list((bare / "etc/systemd/system").iterdir())
    res = invoke(base + ["--python", BOARD_PY])
    assert res.exit_code == 0, out(res)
    text = (fs / "etc/systemd/system/jetson-deploy-demo.service").read_text()
    assert "ExecStart={} -m jetson_deploy run".format(BOARD_PY) in text and "WorkingDirectory=/var/lib/jetson-deploy/demo" in text
