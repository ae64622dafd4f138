"""The Ansible play's controller ``plan`` step against a real device answer (prepare.sh run here):
the disk-space check (df -Pk is KiB, the bundle is bytes) and retention (``--keep``, as deploy)."""
import re
import subprocess

import pytest

from jetson_deploy.ansible_steps import plan, prepare, stage
from jetson_deploy.deploy import DeployOptions, LocalTransport, deploy_host, open_local_bundle
from jetson_deploy.deploy.single_host import retention
from jetson_deploy.errors import JetsonDeployError
from support.deploy import installed, make_bundle


def _answer(work, root):
    """What the device says to prepare.sh (run here with sh, as the play's script: step does)."""
    script = prepare(str(work), "h1", str(root))["script"]
    p = subprocess.run(["sh", script], stdout=subprocess.PIPE, universal_newlines=True)
    assert p.returncode == 0 and "PREPARED" in p.stdout, p.stdout
    return p.stdout


def _with_free_kib(answer, kib):
    out, n = re.subn(r"(?m)^DF .*$", "DF {}".format(kib), answer)
    assert n == 1, answer
    return out


def test_plan_checks_free_space_in_kib_against_the_bundle_in_bytes(tmp_path):
    # 1 MiB of payload: more bytes than 490 MiB has KiB (501,760), far less than 490 MiB
    bundle = make_bundle(tmp_path / "b", version="1.0.0", sizes={"model.onnx": 1 << 20, "labels.txt": 64})
    work, root = tmp_path / "work", tmp_path / "root"
    info = stage(str(bundle), str(work))
    assert 501760 < info["total_size"] < (490 << 20)
    answer = _answer(work, root)
    assert plan(str(work), "h1", str(root), 0, _with_free_kib(answer, 490 * 1024))["action"] == "upload"
    with pytest.raises(JetsonDeployError, match=r"not enough disk space under .*: the upload needs 1\.0 MiB, 0\.1 MiB free"):
        plan(str(work), "h1", str(root), 0, _with_free_kib(answer, 100))


def test_plan_refuses_a_small_bundle_on_an_almost_full_disk(tmp_path):
    bundle = make_bundle(tmp_path / "b", version="1.0.0", sizes={"model.onnx": 20000, "labels.txt": 64})
    work, root = tmp_path / "work", tmp_path / "root"
    stage(str(bundle), str(work))
    answer = _answer(work, root)
    with pytest.raises(JetsonDeployError, match="not enough disk space"):  # 100 KiB free: below the 1 MiB margin
        plan(str(work), "h1", str(root), 0, _with_free_kib(answer, 100))
    assert plan(str(work), "h1", str(root), 0, _with_free_kib(answer, 490 * 1024))["action"] == "upload"


@pytest.mark.parametrize("keep", [1, 2, 5])
def test_plan_prunes_what_deploy_keeps(tmp_path, keep):
    """Versions 1-4 installed (4 active); the play deploys 5 with --keep: it prunes what deploy would."""
    root = tmp_path / "root"
    for i in range(1, 5):
        with open_local_bundle(str(make_bundle(tmp_path / "b{}".format(i), version="{}.0.0".format(i)))) as lb:
            assert deploy_host(lb, LocalTransport("dev"), DeployOptions(root=str(root), keep=100)).result == "deployed"
    assert installed(root) == ["1.0.0", "2.0.0", "3.0.0", "4.0.0"]
    work = tmp_path / "work"
    stage(str(make_bundle(tmp_path / "b5", version="5.0.0")), str(work))
    pl = plan(str(work), "h1", str(root), 0, _answer(work, root), keep=keep)
    want = retention(["1.0.0", "2.0.0", "3.0.0", "4.0.0"], ["1.0.0", "2.0.0", "3.0.0", "4.0.0"], "5.0.0", "4.0.0", keep)
    assert pl["prune"] == want
    # keep=1: the new one and the previous (4, for a rollback) stay; 1-3 go
    assert {1: ["1.0.0", "2.0.0", "3.0.0"], 2: ["1.0.0", "2.0.0", "3.0.0"], 5: []}[keep] == pl["prune"]


def _upload(info, staging):
    """What the play's copy: task does: the staged files into the device's staging directory."""
    import shutil
    from pathlib import Path

    for f in Path(info["files_dir"]).rglob("*"):
        if f.is_file():
            dst = Path(staging) / f.relative_to(info["files_dir"])
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(str(f), str(dst))


def _play_once(tmp_path, work, root, version, health_cmd=None, service=None, crlf=False):
    """stage -> prepare.sh -> plan -> copy -> finalize.sh -> result, as ansible/deploy.yml runs them."""
    from jetson_deploy.ansible_steps import result

    info = stage(str(make_bundle(tmp_path / ("b" + version), version=version)), str(work))
    answer = _answer(work, root)
    if crlf:  # a pty (Ansible's script: with become) answers with CR LF line ends
        answer = answer.replace("\n", "\r\n")
    pl = plan(str(work), "h1", str(root), 0, answer, health_cmd=health_cmd, health_timeout=30, service=service)
    if pl["action"] == "upload":
        _upload(info, pl["staging"])
    f = subprocess.run(["sh", pl["finalize"]], stdout=subprocess.PIPE, universal_newlines=True)
    return pl, result(str(work), "h1", f.returncode, f.stdout)


def test_plan_reads_a_crlf_answer_and_counts_what_is_already_staged(tmp_path):
    work, root = tmp_path / "work", tmp_path / "root"
    pl, r = _play_once(tmp_path, work, root, "1.0.0", crlf=True)
    assert pl["action"] == "upload" and r["result"] == "deployed" and r["active"] == "1.0.0"
    # a 1 MiB bundle half-uploaded before: only the rest (and the 1 MiB margin) must fit
    bundle = make_bundle(tmp_path / "big", version="2.0.0", sizes={"model.onnx": 1 << 20, "labels.txt": 64})
    info = stage(str(bundle), str(work))
    answer = _answer(work, root)
    staging = root / "staging" / "demo" / "2.0.0"
    _upload(info, staging)  # everything already there: nothing left to send
    answer = _answer(work, root)
    assert "STAGED 1048576 model.onnx" in answer
    assert plan(str(work), "h1", str(root), 0, _with_free_kib(answer, 1024 + 200))["action"] == "upload"
    # the margin is 1 MiB (or 1 % of the upload): 1 MiB + 4 KiB free takes a 64-byte remainder, 1 MiB - 4 KiB does not
    (staging / "labels.txt").unlink()
    answer = _answer(work, root)
    assert plan(str(work), "h1", str(root), 0, _with_free_kib(answer, 1024 + 4))["action"] == "upload"
    with pytest.raises(JetsonDeployError, match="not enough disk space"):
        plan(str(work), "h1", str(root), 0, _with_free_kib(answer, 1024 - 4))


def test_result_says_what_happened_and_why(tmp_path):
    work, root = tmp_path / "work", tmp_path / "root"
    # first deploy, health check fails: nothing to switch back to
    _, r = _play_once(tmp_path, work, root, "1.0.0", health_cmd="echo probe said no; exit 3")
    assert r["result"] == "rolled-back" and r["active"] == ""
    assert "no previous version, demo deactivated" in r["message"]
    assert any("probe said no" in ln for ln in r["health_log"]), r
    _, r = _play_once(tmp_path, work, root, "1.0.0")
    assert r["result"] == "deployed" and r["message"] == "demo 1.0.0 active"
    _, r = _play_once(tmp_path, work, root, "2.0.0", health_cmd="exit 3")
    assert r["result"] == "rolled-back" and r["active"] == "1.0.0" and "switched back to 1.0.0" in r["message"]


def test_result_of_a_failed_finalize_names_the_version(tmp_path):
    from jetson_deploy.ansible_steps import result

    work, root = tmp_path / "work", tmp_path / "root"
    stage(str(make_bundle(tmp_path / "b", version="1.0.0")), str(work))
    plan(str(work), "h1", str(root), 0, _answer(work, root))
    r = result(str(work), "h1", 1, "ERROR cannot switch active/demo\n")
    assert r["result"] == "failed" and r["message"] == "activating 1.0.0 failed: cannot switch active/demo"


def test_result_remembers_the_service_from_the_plan(tmp_path, monkeypatch):
    from support.deploy import FakeSystemd

    fake = FakeSystemd(tmp_path / "systemd")
    monkeypatch.setenv("PATH", fake.path())
    work, root = tmp_path / "work", tmp_path / "root"
    fake.reset(root)
    _, r = _play_once(tmp_path, work, root, "1.0.0", service="demo")
    assert r["result"] == "deployed" and r["message"] == "demo 1.0.0 active; jetson-deploy-demo.service restarted on it", r


def _main(argv, stdin, monkeypatch, capsys):
    """``python -m jetson_deploy.ansible_steps ARGV`` as the play calls it: (exit code, JSON out, stderr)."""
    import io
    import json

    from jetson_deploy.ansible_steps import main

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if out.strip() else None), err


def test_the_steps_command_line_as_the_play_calls_it(tmp_path, monkeypatch, capsys):
    work, root = tmp_path / "work", tmp_path / "root"
    for i in range(1, 4):
        with open_local_bundle(str(make_bundle(tmp_path / "b{}".format(i), version="{}.0.0".format(i)))) as lb:
            assert deploy_host(lb, LocalTransport("dev"), DeployOptions(root=str(root), keep=100)).result == "deployed"
    rc, out, _ = _main(["stage", make_bundle(tmp_path / "b4", version="4.0.0"), work], "", monkeypatch, capsys)
    assert rc == 0 and out["version"] == "4.0.0"
    rc, out, _ = _main(["prepare", work, "h1", "--root", root], "", monkeypatch, capsys)
    answer = subprocess.run(["sh", out["script"]], stdout=subprocess.PIPE, universal_newlines=True).stdout
    rc, out, _ = _main(["plan", work, "h1", "--root", root, "--rc", "0", "--keep", "1", "--service", "demo"],
                       answer, monkeypatch, capsys)
    assert rc == 0 and out["action"] == "upload" and out["prune"] == ["1.0.0", "2.0.0"], out
    fin = open(out["finalize"]).read()
    assert "systemctl restart jetson-deploy-demo.service" in fin and '"$i" -lt 10' in fin  # --settle's default
    rc, out, _ = _main(["plan", work, "h1", "--root", root, "--rc", "0"], answer, monkeypatch, capsys)
    assert rc == 0 and out["prune"] == ["1.0.0"]  # --keep defaults to 3: 4 (new), 3 (previous) and 2 stay
    rc, out, err = _main(["result", work, "h1", "--rc", "4"], "HEALTH_FAILED 3\n", monkeypatch, capsys)
    assert rc == 4 and out["result"] == "rolled-back" and "health check failed (exit 3)" in err
    rc, out, err = _main(["plan", work, "h1", "--root", root, "--rc", "1"], "", monkeypatch, capsys)
    assert rc == 1 and out is None and err.startswith("preparing ") and err.count("\n") == 1
