"""These tests kill mutmut survivors in jetson_deploy/service.py: each names, in its docstring, the
mutant(s) it kills (``jetson_deploy.service.x_function__mutmut_N``).  All run on CPU in well under a
second: the image is a directory (``--rootfs``), systemd is :class:`support.deploy.FakeSystemd` (a
``systemctl`` on PATH that logs what it was asked), no unit of this machine is touched."""
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.deploy import BOARD_PY, FakeSystemd, board_venv

from jetson_deploy import service as svc
from jetson_deploy.errors import BadInput

UNIT = "jetson-deploy-demo.service"


def _rootfs(tmp_path: Path, users=("root", "nvidia")) -> Path:
    fs = tmp_path / "rootfs"
    (fs / "etc" / "systemd" / "system").mkdir(parents=True)
    (fs / "etc" / "passwd").write_text("".join("{0}:x:{1}:{1}::/home/{0}:/bin/sh\n".format(u, 1000 + i)
                                               for i, u in enumerate(users)))
    board_venv(fs)
    return fs


def _spec(**kw) -> "svc.ServiceSpec":
    args = dict(user="nvidia", exec_cmd=svc.default_exec(BOARD_PY, True))
    args.update(kw)
    return svc.ServiceSpec("demo", "csi://0", **args)


def _messages(caplog) -> "list":
    return [r.getMessage() for r in caplog.records if r.name == svc.log.name]


# ----------------------------------------------------------------------------- rootfs

def test_the_no_etc_note_only_for_a_directory_without_etc(tmp_path, caplog):
    """Kills x__check_rootfs__mutmut_12 (looked for ETC/, so every real image got the note)."""
    caplog.set_level(logging.INFO, logger=svc.log.name)
    fs = _rootfs(tmp_path)
    svc.status_rootfs("demo", str(fs))
    assert not [m for m in _messages(caplog) if "has no etc/" in m]
    bare = tmp_path / "bare"
    bare.mkdir()
    svc.status_rootfs("demo", str(bare))
    assert _messages(caplog) == ["note: {} has no etc/; is it really a root filesystem?".format(bare)]


def test_a_foreign_unit_that_is_not_utf8_is_refused_not_a_crash(tmp_path):
    """Kills x__ours__mutmut_8 (strict decoding: a Latin-1 unit someone else wrote raised
    UnicodeDecodeError instead of the "not made by jetson-deploy" refusal)."""
    fs = _rootfs(tmp_path)
    unit = fs / "etc/systemd/system" / UNIT
    foreign = b"[Unit]\nDescription=Kamera f\xfcr den Flur\n[Service]\nExecStart=/bin/true\n"
    unit.write_bytes(foreign)
    with pytest.raises(BadInput, match="exists and was not made by jetson-deploy"):
        svc.install_rootfs(_spec(), str(fs))
    with pytest.raises(BadInput, match="was not made by jetson-deploy: leaving it alone"):
        svc.uninstall_rootfs("demo", str(fs))
    assert svc.status_rootfs("demo", str(fs))["installed"] is False
    assert unit.read_bytes() == foreign


@pytest.mark.needs("bin:localedef")
def test_passwd_is_read_as_utf8_whatever_the_locale(tmp_path):
    """Kills x__user_in_rootfs__mutmut_11 (passwd read in the locale's encoding: under a Latin-1 locale the
    UTF-8 bytes of \u0145 (c5 85) hold NEL, a line break to str.splitlines(), so a gecos field "\u0145ghost"
    made "ghost" a user of the image and the note for a missing user was lost).  In a subprocess: the
    locale's encoding is read at start-up, and a C locale means UTF-8 mode."""
    loc = tmp_path / "locale"
    loc.mkdir()
    subprocess.run(["localedef", "-i", "en_US", "-f", "ISO-8859-1", str(loc / "en_US.ISO-8859-1")],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if not (loc / "en_US.ISO-8859-1").is_dir():
        pytest.skip("localedef could not build en_US.ISO-8859-1 (no /usr/share/i18n/locales?)")
    fs = _rootfs(tmp_path)
    (fs / "etc" / "passwd").write_bytes("root:x:0:0::/root:/bin/sh\nnvidia:x:1000:1000:\u0145ghost:/home/nvidia:/bin/sh\n"
                                        .encode("utf-8"))
    code = ("import locale, logging, sys; logging.basicConfig(level=logging.INFO, format='%(message)s');"
            "print(locale.getpreferredencoding(False)); from jetson_deploy import service as svc;"
            "svc.install_rootfs(svc.ServiceSpec('demo', 'csi://0', user='ghost', exec_cmd=svc.default_exec(sys.argv[2], True)),"
            " sys.argv[1])")
    env = dict(os.environ, LOCPATH=str(loc), LC_ALL="en_US.ISO-8859-1", PYTHONUTF8="0",
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    p = subprocess.run([sys.executable, "-c", code, str(fs), BOARD_PY], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, universal_newlines=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["ISO-8859-1"]  # the locale took: the check below is not vacuous
    assert "note: user ghost is not in {}/etc/passwd yet".format(fs) in p.stderr, p.stderr


def test_status_calls_a_foreign_unit_not_installed(tmp_path):
    """Kills x_status_rootfs__mutmut_57 (``is_file() or _ours()``: any file at the unit's path counted)."""
    fs = _rootfs(tmp_path)
    (fs / "etc/systemd/system" / UNIT).write_text("[Service]\nExecStart=/bin/true\n")
    st = svc.status_rootfs("demo", str(fs))
    assert st["installed"] is False and st["enabled"] is False
    (fs / "etc/systemd/system" / UNIT).unlink()
    svc.install_rootfs(_spec(), str(fs))
    assert svc.status_rootfs("demo", str(fs))["installed"] is True


def test_the_passwd_note_only_for_a_user_the_image_lacks(tmp_path, caplog):
    """Kills x_install_rootfs__mutmut_2 (note inverted) and x_install_rootfs__mutmut_14 (the note upper-cased:
    ``%S`` is no format, the note was lost)."""
    caplog.set_level(logging.INFO, logger=svc.log.name)
    fs = _rootfs(tmp_path)
    svc.install_rootfs(_spec(), str(fs))
    assert not [m for m in _messages(caplog) if m.startswith("note: user")]
    caplog.clear()
    svc.install_rootfs(_spec(user="ghost"), str(fs))
    assert "note: user ghost is not in {}/etc/passwd yet; create it on the board (oem-config) or pass --user".format(fs) \
        in _messages(caplog)


def test_install_reports_the_wants_link(tmp_path):
    """Kills x_install_rootfs__mutmut_63 (key "XXwantsXX") and x_install_rootfs__mutmut_65 (``str(None)``)."""
    fs = _rootfs(tmp_path)
    res = svc.install_rootfs(_spec(), str(fs))
    link = fs.resolve() / "etc/systemd/system/multi-user.target.wants" / UNIT
    assert res == {"unit": UNIT, "path": str(fs.resolve() / "etc/systemd/system" / UNIT), "wants": str(link)}
    assert os.readlink(res["wants"]) == "/etc/systemd/system/" + UNIT


def test_a_file_where_the_wants_link_goes_is_refused_before_anything_is_written(tmp_path):
    """Kills x__symlink__mutmut_5 (the refusal's text wrapped in XX).  It also holds install_rootfs to its
    docstring, "everything is checked before anything is written": the unit was written, then refused."""
    fs = _rootfs(tmp_path)
    wants = fs / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir()
    (wants / UNIT).write_text("someone's file\n")
    with pytest.raises(BadInput, match=r"^{} exists and is not a symlink: refusing to replace it$".format(
            str(fs.resolve() / "etc/systemd/system/multi-user.target.wants" / UNIT).replace(".", r"\."))):
        svc.install_rootfs(_spec(sinks=["http://0.0.0.0:8080/?token=s3cret"]), str(fs))
    assert not (fs / "etc/systemd/system" / UNIT).exists()
    assert not (fs / "etc/jetson-deploy").exists()
    assert (wants / UNIT).read_text() == "someone's file\n"


def test_interleaved_link_writers_keep_their_own_half_made_link(tmp_path, monkeypatch):
    """Kills x__symlink__mutmut_16 (the temporary link named ``.tmp.None`` for every process: a second
    installer deleted the first one's) and x__symlink__mutmut_19 (the temporary link not hidden: systemd
    reading the .wants directory meanwhile saw a half-made entry).  Two processes are simulated in one:
    the first stops between making its temporary link and renaming it; the second has another pid."""
    wants = tmp_path / "multi-user.target.wants"
    link = wants / UNIT
    real_replace, pid = os.replace, os.getpid()
    paused = []
    monkeypatch.setattr(os, "replace", lambda src, dst: paused.append((src, dst)))
    svc._symlink(link, "/etc/systemd/system/a.service")
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(paused) == 1
    assert [p.name for p in wants.iterdir() if not p.name.startswith(".")] == []  # systemd skips hidden names
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)
    svc._symlink(link, "/etc/systemd/system/b.service")
    assert os.readlink(str(link)) == "/etc/systemd/system/b.service"
    real_replace(*paused[0])  # the first writer goes on: its link is still there to rename
    assert os.readlink(str(link)) == "/etc/systemd/system/a.service"
    assert [p.name for p in wants.iterdir()] == [UNIT]


def test_uninstall_logs_the_unit_and_the_image(tmp_path, caplog):
    """Kills x_uninstall_rootfs__mutmut_48, x_uninstall_rootfs__mutmut_49 (None for the unit or the image)
    and x_uninstall_rootfs__mutmut_53 (the line wrapped in XX)."""
    fs = _rootfs(tmp_path)
    svc.install_rootfs(_spec(), str(fs))
    caplog.set_level(logging.INFO, logger=svc.log.name)
    caplog.clear()  # the install's line, where an earlier test left the logger at INFO
    svc.uninstall_rootfs("demo", str(fs))
    assert _messages(caplog) == ["removed {} from {}".format(UNIT, fs)]


# ----------------------------------------------------------------------------- this machine

def test_local_uninstall_logs_the_unit(tmp_path, monkeypatch, caplog):
    """Kills x_uninstall_local__mutmut_35 (the unit left out of the log call: a logging error, no line)."""
    fake = FakeSystemd(tmp_path / "systemd")
    fake.reset(tmp_path / "root")
    monkeypatch.setenv("PATH", fake.path())
    monkeypatch.setattr(svc, "SYSTEMD_RUN_DIR", str(tmp_path))  # as if systemd were PID 1 here
    udir = tmp_path / "units"
    svc.install_local(_spec(exec_cmd=None), unit_dir=str(udir), env_dir=str(tmp_path / "env"))
    caplog.set_level(logging.INFO, logger=svc.log.name)
    caplog.clear()  # the install's line, where an earlier test left the logger at INFO
    svc.uninstall_local("demo", unit_dir=str(udir), env_dir=str(tmp_path / "env"))
    assert _messages(caplog) == ["stopped, disabled and removed " + UNIT]
    assert not (udir / UNIT).exists()


def test_without_systemctl_the_refusal_says_what_to_do(tmp_path, monkeypatch):
    """The user-facing phrase of _systemctl's refusal (its DIR/dir wording mutant, x__systemctl__mutmut_9,
    is recorded as a message mutant): BadInput pointing at --rootfs and --print, no FileNotFoundError."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BadInput, match=r"^systemctl not found: .*--rootfs .*--print"):
        svc._systemctl(["daemon-reload"])


def test_the_unit_runs_as_the_user_who_ran_sudo(monkeypatch):
    """Kills x_default_user__mutmut_1 (SUDO_USER ignored: `sudo jetson-deploy service install` made a root unit)."""
    import pwd

    monkeypatch.setenv("SUDO_USER", "nvidia")
    assert svc.default_user() == "nvidia"
    spec = svc.ServiceSpec("demo", "csi://0")
    assert spec.user == "nvidia" and "User=nvidia" in svc.render_unit(spec).splitlines()
    monkeypatch.setenv("SUDO_USER", "root")
    assert svc.default_user() == pwd.getpwuid(os.geteuid()).pw_name


def test_settle_zero_restarts_only(tmp_path, monkeypatch):
    """Kills x_deploy_gate__mutmut_14 (``settle >= 0``: settle 0 still watched the unit for a second), as
    test_service_deploy's test_ssh_restart_without_health_cmd_once_and_fleet_api does, here without sshd."""
    fake = FakeSystemd(tmp_path / "systemd")
    root = tmp_path / "root"
    fake.reset(root, failing=["none"])  # the unit is 'failed' when asked: a gate would fail
    monkeypatch.setenv("PATH", fake.path())
    cmd, timeout, on_rollback = svc.deploy_gate("demo", 0, None, 60.0)
    assert timeout == 90.0 and on_rollback == svc.after_rollback_command("demo")
    p = subprocess.run(["sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                       timeout=30)
    assert p.returncode == 0, p.stdout
    assert fake.calls() == ["restart {} @none".format(UNIT)]


# ----------------------------------------------------------------------------- ServiceSpec

def test_a_bad_user_is_refused_in_one_line():
    """Kills xǁServiceSpecǁ__init____mutmut_28 (the refusal wrapped in XX)."""
    with pytest.raises(BadInput, match=r"^--user 'Bad User' is not a valid user name$"):
        svc.ServiceSpec("demo", "csi://0", user="Bad User")


def test_restart_sec_one_is_the_smallest():
    """Kills xǁServiceSpecǁ__init____mutmut_37 (``< 2``: --restart-sec 1 refused) and
    xǁServiceSpecǁ__init____mutmut_38 (the refusal without its text)."""
    spec = svc.ServiceSpec("demo", "csi://0", user="nvidia", restart_sec=1)
    assert "RestartSec=1" in svc.render_unit(spec).splitlines()
    with pytest.raises(BadInput, match=r"^--restart-sec must be 1 or more$"):
        svc.ServiceSpec("demo", "csi://0", user="nvidia", restart_sec=0)


def test_root_slash_runs_the_bundle_under_slash_active():
    """Kills xǁServiceSpecǁ__init____mutmut_49 (``--root /`` became the relative ``XX/XX``)."""
    spec = svc.ServiceSpec("demo", "csi://0", user="nvidia", root="/")
    assert spec.root == "/"
    assert spec.bundle_path.startswith("/") and spec.bundle_path.lstrip("/") == "active/demo"  # "//": still /active/demo
    assert " {} ".format(spec.bundle_path) in svc.render_unit(spec)
