"""These tests kill mutmut survivors in jetson_deploy/deploy/: each names, in its docstring, the
mutant(s) it kills (``module.x_function__mutmut_N``).  All run on CPU in well under a second: the
"device" is a directory here (LocalTransport, a --rootfs), a transport that answers from a script,
or fake ``ssh``/``rsync``/``sftp`` programs on PATH that log their arguments (no sshd)."""
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from support.bundles import write_bundle
from support.deploy import make_bundle

from jetson_deploy.deploy import fleet
from jetson_deploy.deploy import transport as tr
from jetson_deploy.deploy.inventory import Host, load_inventory
from jetson_deploy.deploy.local_bundle import LocalBundle, open_local_bundle
from jetson_deploy.deploy.options import Connection, DeployOptions
from jetson_deploy.deploy.single_host import HostResult, deploy_host, rollback_message
from jetson_deploy.deploy.transport import LocalTransport, RemoteError, ScriptResult, SSHTransport, describe_failure
from jetson_deploy.errors import BadInput


# ----------------------------------------------------------------------------- helpers

def _rootfs(tmp_path: Path) -> Path:
    fs = tmp_path / "rootfs"
    (fs / "etc").mkdir(parents=True)
    (fs / "opt").mkdir()
    return fs


def _jd_root(fs: Path) -> Path:
    return fs / "opt" / "jetson-deploy"


class Scripted(LocalTransport):
    """A device that answers each run_script with the next of ``answers`` (rc, stdout) and logs the
    calls; kind 'ssh' so the transfer choice is the one made for a real board."""

    kind = "ssh"

    def __init__(self, answers: "List[Any]", upload_error: "Optional[str]" = None) -> None:
        super().__init__("board")
        self.answers = list(answers)
        self.calls: "List[Dict[str, Any]]" = []
        self.uploads: "List[Dict[str, Any]]" = []
        self.upload_error = upload_error

    def run_script(self, script: str, timeout: "Optional[float]" = None) -> "ScriptResult":
        self.calls.append({"script": script, "timeout": timeout})
        rc, out = self.answers.pop(0)
        return ScriptResult(rc, out, "")

    def upload(self, local_root, files, remote_dir, method, staged=None, bwlimit=None, on_bytes=None) -> str:
        self.uploads.append({"method": method, "bwlimit": bwlimit})
        if self.upload_error:
            raise RemoteError(self.upload_error)
        return method


class Recording(LocalTransport):
    """LocalTransport (a directory here) that logs what each upload was asked."""

    def __init__(self) -> None:
        super().__init__("dir")
        self.uploads: "List[Dict[str, Any]]" = []

    def upload(self, local_root, files, remote_dir, method, staged=None, bwlimit=None, on_bytes=None) -> str:
        self.uploads.append({"method": method, "bwlimit": bwlimit, "staged": dict(staged or {})})
        return super().upload(local_root, files, remote_dir, method, staged, bwlimit, on_bytes)


_PREPARED = "PREPARED\nHAVE sha256sum\nTARGET absent\n"


@pytest.fixture
def fakebin(tmp_path, monkeypatch):
    """Fake ssh/rsync/sftp first on PATH, logging into tmp_path/log; ssh answers log/ssh.answer
    with exit status log/ssh.rc (0 when absent)."""
    bindir, log = tmp_path / "bin", tmp_path / "log"
    bindir.mkdir()
    log.mkdir()
    scripts = {
        "ssh": ('#!/bin/sh\nfor a in "$@"; do echo "$a"; done > {log}/ssh.args\ncat > {log}/ssh.stdin\n'
                '[ -f {log}/ssh.err ] && cat {log}/ssh.err >&2\n[ -f {log}/ssh.answer ] && cat {log}/ssh.answer\n'
                'exit $(cat {log}/ssh.rc 2>/dev/null || echo 0)\n'),
        "rsync": ('#!/bin/sh\nif [ "$1" = --version ]; then echo "rsync  version 3.2.7  protocol version 31"; '
                  'echo "rsync: a warning nobody asked for" >&2; exit 0; fi\n'
                  'for a in "$@"; do echo "$a"; done > {log}/rsync.args\n'
                  'for a in "$@"; do case "$a" in --files-from=*) cp "${{a#--files-from=}}" {log}/rsync.files;; esac; done\n'
                  "printf '      1,000  50%%  1.00MB/s    0:00:01\\r      2,000 100%%  1.00MB/s    0:00:02\\n'\nexit 0\n"),
        "sftp": ('#!/bin/sh\nfor a in "$@"; do echo "$a"; done > {log}/sftp.args\n'
                 'prev=; for a in "$@"; do [ "$prev" = -b ] && cp "$a" {log}/sftp.batch; prev=$a; done\nexit 0\n'),
    }
    for name, text in scripts.items():
        p = bindir / name
        p.write_text(text.format(log=log))
        p.chmod(0o755)
    monkeypatch.setenv("PATH", "{}:{}".format(bindir, os.environ.get("PATH", "/usr/bin:/bin")))
    monkeypatch.setattr(tr, "_progress2", [])
    return log


def _args(log: Path, tool: str) -> "List[str]":
    return (log / (tool + ".args")).read_text().splitlines()


# ----------------------------------------------------------------------------- fleet: rootfs deploy/rollback/status

def test_rootfs_deploy_failure_names_bundle_and_version(tmp_path):
    """Kills fleet.x__deploy_rootfs__mutmut_63: a failed --rootfs deploy still says which version it was."""
    fs = _rootfs(tmp_path)
    b = make_bundle(tmp_path / "b", version="1.0.0")

    def boom(**ctx):
        raise RemoteError("disk vanished")

    r = fleet.deploy(str(b), [], DeployOptions(rootfs=str(fs)), hooks={"after_prepare": boom})[0]
    assert (r.result, r.name, r.version) == ("failed", "demo", "1.0.0")
    assert r.message == "disk vanished"


def test_rootfs_rollback_failure_label_and_name(tmp_path):
    """Kills fleet.x_rollback__mutmut_33 (label) and fleet.x_rollback__mutmut_40 (name of a failed result)."""
    fs = _rootfs(tmp_path)
    r = fleet.rollback("demo", [], rootfs=str(fs))[0]
    assert r.result == "failed"
    assert r.host == "rootfs:" + str(fs)
    assert r.name == "demo"


def test_rootfs_rollback_unchanged_seconds_are_elapsed(tmp_path):
    """Kills single_host.x_rollback_host__mutmut_48: seconds of an 'unchanged' rollback is the time it took."""
    fs = _rootfs(tmp_path)
    b = make_bundle(tmp_path / "b", version="1.0.0")
    assert fleet.deploy(str(b), [], DeployOptions(rootfs=str(fs)))[0].result == "deployed"
    t0 = time.monotonic()
    r = fleet.rollback("demo", [], to="1.0.0", rootfs=str(fs))[0]
    took = time.monotonic() - t0
    assert (r.result, r.version, r.active) == ("unchanged", "1.0.0", "1.0.0")
    assert 0 <= r.seconds <= took


def test_rootfs_status_only_the_named_bundle_and_inactive_bundle(tmp_path):
    """Kills scripts.x_status__mutmut_10 (status NAME lists only NAME) and
    single_host.x_status_host__mutmut_39 (an installed, inactive bundle has active None)."""
    fs = _rootfs(tmp_path)
    for name in ("demo", "other"):
        b = make_bundle(tmp_path / name, name=name, version="1.0.0")
        assert fleet.deploy(str(b), [], DeployOptions(rootfs=str(fs)))[0].result == "deployed"
    st = fleet.status([], name="demo", rootfs=str(fs))[0]
    assert st["ok"] and sorted(st["bundles"]) == ["demo"]
    assert sorted(fleet.status([], rootfs=str(fs))[0]["bundles"]) == ["demo", "other"]

    (_jd_root(fs) / "active" / "other").unlink()
    e = fleet.status([], name="other", rootfs=str(fs))[0]["bundles"]["other"]
    assert e["active"] is None and e["installed"] == ["1.0.0"]
    assert "other  -" in fleet.format_status(fleet.status([], rootfs=str(fs)))


def test_rootfs_reupload_sends_the_file_that_failed(tmp_path):
    """Kills single_host.xǁ_HostDeployǁverify_and_activate__mutmut_46: after the device's check fails,
    the re-upload sends the bad file (not the good ones), and the deploy succeeds."""
    fs = _rootfs(tmp_path)
    b = make_bundle(tmp_path / "b", version="1.0.0")
    seen = []

    def corrupt_once(staging, **ctx):
        seen.append(staging)
        if len(seen) == 1:
            p = Path(staging) / "model.onnx"
            data = bytearray(p.read_bytes())
            data[0] ^= 0xFF
            p.write_bytes(bytes(data))

    r = fleet.deploy(str(b), [], DeployOptions(rootfs=str(fs)), hooks={"after_upload": corrupt_once})[0]
    assert r.result == "deployed", r.message
    assert r.details["reuploaded"] == ["model.onnx"] and len(seen) == 2


def test_rootfs_stray_file_in_staging_is_reported(tmp_path):
    """Kills single_host.xǁ_HostDeployǁverify_and_activate__mutmut_74: files nobody listed are removed
    and named in details['extra_removed']."""
    fs = _rootfs(tmp_path)
    b = make_bundle(tmp_path / "b", version="1.0.0")

    def stray(staging, **ctx):
        (Path(staging) / "stray.bin").write_bytes(b"x" * 10)

    r = fleet.deploy(str(b), [], DeployOptions(rootfs=str(fs)), hooks={"after_upload": stray})[0]
    assert r.result == "deployed", r.message
    assert r.details["extra_removed"] == ["stray.bin"]
    assert not (_jd_root(fs) / "bundles" / "demo" / "1.0.0" / "stray.bin").exists()


# ----------------------------------------------------------------------------- deploy_host with a transport here

def test_after_prepare_hook_gets_the_transport(tmp_path):
    """Kills single_host.x_deploy_host__mutmut_35 (the hook was handed transport=None) and
    single_host.xǁ_HostDeployǁstage__mutmut_71 (the upload lost --bwlimit)."""
    lb = open_local_bundle(str(make_bundle(tmp_path / "b", version="1.0.0")))
    t = Recording()
    got = []
    r = deploy_host(lb, t, DeployOptions(root=str(tmp_path / "dev"), bwlimit=500),
                    hooks={"after_prepare": lambda **ctx: got.append(ctx)})
    assert r.result == "deployed", r.message
    assert got[0]["transport"] is t and got[0]["version"] == "1.0.0"
    assert [u["bwlimit"] for u in t.uploads] == [500]


def test_auto_transfer_without_rsync_on_the_device_is_sftp(tmp_path, monkeypatch):
    """Kills single_host.xǁ_HostDeployǁ_method__mutmut_11: rsync here but not on the device means sftp."""
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: "/usr/bin/" + name)
    lb = open_local_bundle(str(make_bundle(tmp_path / "b", version="1.0.0")))
    t = Scripted([(0, _PREPARED), (0, "DONE\n")])
    r = deploy_host(lb, t, DeployOptions(root="/opt/jd"))
    assert r.result == "deployed" and r.details["transfer"] == "sftp"
    assert [u["method"] for u in t.uploads] == ["sftp"]


def test_transfer_rsync_refused_when_the_device_has_none(tmp_path):
    """Kills single_host.xǁ_HostDeployǁ_method__mutmut_35: the refusal says what to do."""
    lb = open_local_bundle(str(make_bundle(tmp_path / "b", version="1.0.0")))
    t = Scripted([(0, _PREPARED)])
    with pytest.raises(RemoteError, match="the device has no rsync"):
        deploy_host(lb, t, DeployOptions(root="/opt/jd", transfer="rsync"))
    assert t.uploads == []


def test_permission_error_on_root_says_how_to_create_it(tmp_path):
    """Kills single_host.x__check_error__mutmut_43: exit 11 with 'Permission denied' gets the install -d hint."""
    lb = open_local_bundle(str(make_bundle(tmp_path / "b", version="1.0.0")))
    t = Scripted([(11, "ERROR cannot create /opt/jd: Permission denied\n")])
    with pytest.raises(RemoteError, match=r"Permission denied \(create it on the device: sudo install -d"):
        deploy_host(lb, t, DeployOptions(root="/opt/jd"))


def test_failed_upload_diagnosis_is_bounded_and_names_full_disk(tmp_path):
    """Kills single_host.x__diagnose_upload_failure__mutmut_9: the free-space probe after a failed
    upload has a timeout (a hung link cannot hang the deploy), and a full disk is named."""
    lb = open_local_bundle(str(make_bundle(tmp_path / "b", version="1.0.0")))
    t = Scripted([(0, _PREPARED), (0, "DF 12\n")], upload_error="upload failed (sftp exit 1): connection lost")
    with pytest.raises(RemoteError, match="ran out of disk space under /opt/jd"):
        deploy_host(lb, t, DeployOptions(root="/opt/jd", transfer="sftp"))
    assert t.calls[-1]["timeout"] is not None and 0 < t.calls[-1]["timeout"] <= 300


# ----------------------------------------------------------------------------- results and tables

def test_host_result_active_and_dict_and_repr():
    """Kills single_host.xǁHostResultǁ__init____mutmut_8 and _9 (active given vs. defaulted),
    xǁHostResultǁto_dict__mutmut_12 (the 'active' key) and xǁHostResultǁ__repr____mutmut_3."""
    rb = HostResult("h", "rolled-back", "demo", "2.0", "1.0", active="1.0")
    assert rb.active == "1.0"
    ok = HostResult("h", "deployed", "demo", "2.0")
    assert ok.active == "2.0"
    assert HostResult("h", "failed", "demo", "2.0").active == ""
    assert ok.to_dict()["active"] == "2.0"
    assert repr(ok) == "HostResult('h', 'deployed', '2.0', '')"


def test_format_table_columns():
    """Kills fleet.x_format_table__mutmut_9 (header) and fleet.x_format_table__mutmut_16 (seconds cell)."""
    text = fleet.format_table([HostResult("board1", "deployed", "demo", "1.2.0", seconds=1.25, message="active")])
    head, row, tail = text.splitlines()
    assert head.split() == ["HOST", "RESULT", "VERSION", "SECONDS", "MESSAGE"]
    assert row.split() == ["board1", "deployed", "1.2.0", "1.2", "active"]
    assert tail == "1 of 1 hosts ok"


def test_rollback_message_when_the_restart_failed_without_log():
    """Kills single_host.x_rollback_message__mutmut_99: no AFTER_ROLLBACK_LOG adds nothing after the exit code."""
    res = ScriptResult(4, "HEALTH_FAILED 1\nAFTER_ROLLBACK 3\n", "")
    msg = rollback_message(res, "1.0.0", "demo", service="demo")
    assert "restarting jetson-deploy-demo.service on 1.0.0 failed (exit 3): fix it on the device" in msg, msg


# ----------------------------------------------------------------------------- inventory

def test_host_label_formats():
    """Kills inventory.x__format__mutmut_14 (no 'None@'), inventory.x__format__mutmut_24 (':PORT')
    and inventory.xǁHostǁ__init____mutmut_59 (the user in the label)."""
    assert Host("board").label == "board"
    assert Host("board", port=2222).label == "board:2222"
    assert Host("board", user="pi").label == "pi@board"
    assert Host("fe80::1", user="pi", port=22).label == "pi@[fe80::1]:22"


def test_inventory_vars(tmp_path):
    """Kills inventory.x__host_from_vars__mutmut_50 and _52 (tensorrt=) and
    inventory.xǁ_Inventoryǁgroups_of__mutmut_7 (a parent group's vars reach its children's hosts)."""
    inv = tmp_path / "inv.ini"
    inv.write_text("[orins]\nb1 tensorrt=8.6.2\nb2\n[lab:children]\norins\n[lab:vars]\nansible_user=pi\nansible_port=2200\n")
    hosts = load_inventory(str(inv))
    assert [(h.label, h.user, h.port, h.tensorrt) for h in hosts] == [("b1", "pi", 2200, "8.6.2"), ("b2", "pi", 2200, None)]


def test_inventory_bad_port_names_key_and_line_numbers(tmp_path):
    """Kills inventory.x__host_from_vars__mutmut_33 (the variable named) and
    inventory.x_load_inventory__mutmut_19 (line numbers count from 1)."""
    inv = tmp_path / "inv.ini"
    inv.write_text("b1 ansible_port=ssh\n")
    with pytest.raises(BadInput, match=r"ansible_port='ssh' is not a port number"):
        load_inventory(str(inv))
    inv.write_text("[g]\nb1 ansible_user\n")
    with pytest.raises(BadInput, match=r"inv\.ini:2: expected key=value"):
        load_inventory(str(inv))


# ----------------------------------------------------------------------------- options, local bundles

def test_connection_check_names_the_flag():
    """Kills options.xǁConnectionǁcheck__mutmut_3."""
    with pytest.raises(BadInput, match="--jobs must be 1 or more"):
        Connection(jobs=0).check()


def test_scratch_directory_artifact_refused_by_name(tmp_path):
    """Kills local_bundle.x__uploadable__mutmut_11: the refusal names the artifact path."""
    b = write_bundle(tmp_path / "b", "demo", "1.0.0", {".rsync-partial/model.onnx": b"x" * 100})
    with pytest.raises(BadInput, match=r"artifact path '\.rsync-partial/model\.onnx' cannot be deployed"):
        open_local_bundle(str(b))


def test_local_bundle_source_defaults_to_root(tmp_path):
    """Kills local_bundle.xǁLocalBundleǁ__init____mutmut_1."""
    lb = LocalBundle(tmp_path, {"name": "demo", "version": "1.0.0"}, [])
    assert lb.source == str(tmp_path)


# ----------------------------------------------------------------------------- transports

def test_describe_failure_password_prompt_and_empty():
    """Kills transport.x_describe_failure__mutmut_15 and _16 (password auth refusal) and
    transport.x__last_line__mutmut_3 (nothing said: 'failed')."""
    assert describe_failure("pi@board: Permission denied, please try again.").startswith("ssh authentication failed")
    assert describe_failure("") == "failed"
    assert describe_failure("\n \n") == "failed"


def test_local_transport_run_script_and_upload(tmp_path):
    """Kills transport.xǁLocalTransportǁrun_script__mutmut_42 (stderr that is not UTF-8) and
    transport.xǁLocalTransportǁupload__mutmut_44 (returns 'copy')."""
    t = LocalTransport("dir")
    res = t.run_script("printf 'ok\\n'; printf 'bad \\377 byte\\n' >&2; exit 3")
    assert (res.rc, res.stdout, res.stderr) == (3, "ok\n", "bad \ufffd byte\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.bin").write_bytes(b"abc")
    assert t.upload(tmp_path / "src", [("a.bin", 3)], str(tmp_path / "dst"), "auto") == "copy"
    assert (tmp_path / "dst" / "a.bin").read_bytes() == b"abc"


def test_ssh_argv_port(fakebin):
    """Kills transport.xǁSSHTransportǁssh_argv__mutmut_9 and _11."""
    argv = SSHTransport(Host("board", user="pi", port=2222)).ssh_argv()
    assert argv[0] == "ssh" and argv[-3:] == ["-T", "-p", "2222"]


def test_ssh_run_script_timeout_message(fakebin, monkeypatch):
    """Kills transport.xǁSSHTransportǁrun_script__mutmut_23: the timeout is named in seconds."""
    t = SSHTransport(Host("board"))

    def hang(argv, **kw):
        raise subprocess.TimeoutExpired(argv, kw.get("timeout"))

    monkeypatch.setattr(tr.subprocess, "run", hang)
    with pytest.raises(RemoteError, match=r"within 300 s"):
        t.run_script("true", timeout=300)


def test_rsync_upload_argv_and_file_list(fakebin, tmp_path, capfd):
    """Kills transport.xǁSSHTransportǁ_rsync__mutmut_4 (-e ssh command), _21 (the file list),
    _36 (--files-from), _45 (--info=progress2 only with a progress callback),
    x__run_streaming__mutmut_17 (reading rsync's output), x_rsync_has_progress2__mutmut_4 and _13
    (its version probe: parsed, rsync's stderr kept off the user's terminal)."""
    t = SSHTransport(Host("board", user="pi", port=2222), connect_timeout=7)
    files = [("model.onnx", 10), ("engines/a.engine", 5)]
    sent: "List[int]" = []
    assert t.upload(tmp_path, files, "/opt/jd/staging/demo/1.0.0", "rsync", on_bytes=sent.append) == "rsync"
    args = _args(fakebin, "rsync")
    assert "--info=progress2" in args and sent == [1000, 2000]
    assert args[args.index("-e") + 1] == " ".join(t.ssh_argv())
    assert any(a.startswith("--files-from=") for a in args)
    assert (fakebin / "rsync.files").read_text() == "model.onnx\nengines/a.engine\n"
    assert args[-2:] == [str(tmp_path) + "/", "pi@board:/opt/jd/staging/demo/1.0.0/"]
    assert "warning nobody asked for" not in capfd.readouterr().err

    assert t.upload(tmp_path, files, "/opt/jd/staging/demo/1.0.0", "rsync") == "rsync"
    assert "--info=progress2" not in _args(fakebin, "rsync")


def test_sftp_upload_batch(fakebin, tmp_path):
    """Kills transport.xǁSSHTransportǁ_sftp__mutmut_18 (mkdir of subdirectories), _54 (resume with put -a),
    _71 (nothing to send still answers 'sftp') and _93 (the sftp command line)."""
    t = SSHTransport(Host("board", user="pi", port=2222))
    files = [("model.onnx", 10), ("engines/x/a.engine", 5), ("labels.txt", 4)]
    method = t.upload(tmp_path, files, "/s", "sftp", staged={"model.onnx": 4, "labels.txt": 4})
    assert method == "sftp"
    batch = (fakebin / "sftp.batch").read_text().splitlines()
    assert batch == [
        'put -a "{}/model.onnx" "/s/model.onnx"'.format(tmp_path),
        '-mkdir "/s/engines"', '-mkdir "/s/engines/x"',
        'put "{}/engines/x/a.engine" "/s/engines/x/a.engine"'.format(tmp_path),
    ]
    args = _args(fakebin, "sftp")
    assert args[:2] == ["-q", "-b"] and "BatchMode=yes" in args
    assert args[-4:] == ["-P", "2222", "--", "pi@board"]

    (fakebin / "sftp.args").unlink()
    assert t.upload(tmp_path, [("labels.txt", 4)], "/s", "sftp", staged={"labels.txt": 4}) == "sftp"
    assert not (fakebin / "sftp.args").exists()


# ----------------------------------------------------------------------------- fleet over (fake) ssh

def test_fleet_rollback_and_status_over_ssh(fakebin):
    """Kills fleet.x__ssh__mutmut_3 (--connect-timeout reaches ssh), fleet.x_rollback__mutmut_69
    (a failed host's result names the bundle) and fleet.x_status__mutmut_54 (status uses the connection)."""
    c = Connection(connect_timeout=7)
    (fakebin / "ssh.answer").write_text("UNCHANGED 1.0.0\n")
    r = fleet.rollback("demo", ["pi@board"], connection=c)[0]
    assert (r.result, r.version) == ("unchanged", "1.0.0"), r.message
    assert "ConnectTimeout=7" in _args(fakebin, "ssh")

    (fakebin / "ssh.answer").write_text("STATUS_DONE\n")
    st = fleet.status(["pi@board"], connection=c)[0]
    assert st["ok"] and st["error"] is None, st

    (fakebin / "ssh.answer").unlink()
    (fakebin / "ssh.err").write_text("ssh: connect to host board port 22: Connection refused\n")
    (fakebin / "ssh.rc").write_text("255\n")
    r = fleet.rollback("demo", ["pi@board"], connection=c)[0]
    assert (r.result, r.name) == ("failed", "demo") and "connection refused" in r.message


# ----------------------------------------------------------------------------- what the user is told to do

def test_rootfs_escaping_symlink_says_how_to_fix_it(tmp_path):
    """Kills rootfs.x_check_no_escape__mutmut_49: the refusal tells the user to remove the link or make it relative."""
    fs = _rootfs(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    _jd_root(fs).mkdir()
    os.symlink(str(outside), str(_jd_root(fs) / "bundles"))
    with pytest.raises(BadInput, match="leads out of the rootfs on this machine; remove it or make it relative"):
        fleet.status([], rootfs=str(fs))


def test_unknown_group_in_an_inventory_without_groups(tmp_path):
    """Kills inventory.xǁ_Inventoryǁselect__mutmut_26: an inventory with no groups says so ('none')."""
    inv = tmp_path / "inv.ini"
    inv.write_text("# nothing here yet\n")
    with pytest.raises(BadInput, match=r"--group 'lab' is not in .*inv\.ini \(groups there: none\)"):
        load_inventory(str(inv), "lab")


def test_user_facing_phrases(tmp_path, caplog):
    """Kills single_host.x_rollback_host__mutmut_8 and single_host.xǁ_HostDeployǁstage__mutmut_61 (the
    progress lines 'rolling back NAME' and '... via copy (resuming: N MiB already on the device)'), and
    pins the phrases of two refusals recorded as 'message' (fleet.x__deploy_rootfs__mutmut_7 and
    inventory.xǁHostǁ__init____mutmut_41 only wrap them in 'XX')."""
    import logging

    b = make_bundle(tmp_path / "b", version="1.0.0")
    with pytest.raises(BadInput, match=r"is not a directory \(mount the SD card or point at Linux_for_Tegra/rootfs\)"):
        fleet.deploy(str(b), [], DeployOptions(rootfs=str(tmp_path / "missing")))
    with pytest.raises(BadInput, match="bad port 70000 for host 'board': use 1-65535"):
        Host("board", port=70000)

    fs = _rootfs(tmp_path)

    def cut(**ctx):
        raise RemoteError("link dropped")

    assert fleet.deploy(str(b), [], DeployOptions(rootfs=str(fs)), hooks={"after_upload": cut})[0].result == "failed"
    caplog.set_level(logging.INFO, logger="jetson_deploy.deploy")
    assert fleet.deploy(str(b), [], DeployOptions(rootfs=str(fs)))[0].result == "deployed"
    assert fleet.rollback("demo", [], rootfs=str(fs))[0].result == "failed"  # nothing to go back to
    lines = [r.getMessage() for r in caplog.records]
    assert any(l.endswith("via copy (resuming: 0.1 MiB already on the device)") for l in lines), lines
    assert any(l.endswith("] rolling back demo") for l in lines), lines
