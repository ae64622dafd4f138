"""These tests kill mutmut survivors in jetson_deploy/ansible_steps.py (the Ansible play's controller
steps: stage, plan, result and their command line).  Each test names the mutants it kills; the
device's answers are written here by hand (the lines prepare.sh / finalize.sh print), so no test runs
a device script or ansible-playbook."""
import os

import pytest

from jetson_deploy.ansible_steps import plan, result, stage
from jetson_deploy.deploy import scripts
from jetson_deploy.errors import JetsonDeployError
from support.deploy import make_bundle
from test_ansible_steps_plan import _main

ROOT = "/opt/jd"  # an absolute device root; plan and result never touch it on the controller


def _answer(active="", target="absent", installed=(), hist=()):
    """A device's answer to prepare.sh: prepared, sha256sum present, and what is there."""
    lines = ["PREPARED", "HAVE sha256sum", "ACTIVE " + active]
    lines += ["INSTALLED " + v for v in installed] + ["HIST " + v for v in hist]
    if target is not None:
        lines.append("TARGET " + target)
    return "\n".join(lines) + "\n"


@pytest.fixture
def work(tmp_path):
    """WORKDIR with bundle demo 1.0.0 staged."""
    w = tmp_path / "work"
    stage(str(make_bundle(tmp_path / "b", version="1.0.0")), str(w))
    return w


def test_plan_unchanged_switch_or_upload_from_the_target_on_the_device(work):
    """Kills x_plan__mutmut_69 (TARGET never read), _86 (== "ok" inverted), _90 ("ACTION" key),
    _99 (the message's format() short of an argument)."""
    staging = ROOT + "/staging/demo/1.0.0"
    assert plan(str(work), "h1", ROOT, 0, _answer(active="1.0.0", target="ok")) == {
        "action": "unchanged", "staging": staging, "message": "demo 1.0.0 is already active and verified; nothing to do"}
    # installed and verified but not active: switch, no upload
    pl = plan(str(work), "h1", ROOT, 0, _answer(active="0.9.0", target="ok", installed=["0.9.0", "1.0.0"]))
    assert pl["action"] == "switch" and pl["previous"] == "0.9.0" and pl["staging"] == staging
    # active but its files are not (all) there: upload again
    assert plan(str(work), "h1", ROOT, 0, _answer(active="1.0.0", target="bad"))["action"] == "upload"
    assert plan(str(work), "h1", ROOT, 0, _answer(active="1.0.0", target=None))["action"] == "upload"


def test_the_steps_without_a_staged_bundle_say_so(tmp_path, monkeypatch, capsys):
    """Kills x__load__mutmut_7 (the message None), _10 (format() short of an argument: IndexError),
    _13 (the message upper-cased)."""
    empty = tmp_path / "nothing-staged"
    empty.mkdir()
    with pytest.raises(JetsonDeployError, match=r"has no staged bundle \(.*\): run the stage step first"):
        plan(str(empty), "h1", ROOT, 0, _answer())
    rc, out, err = _main(["plan", empty, "h1", "--root", ROOT], _answer(), monkeypatch, capsys)
    assert rc == 1 and out is None and err.startswith("{} has no staged bundle (".format(empty)), err
    assert err.rstrip("\n").endswith("): run the stage step first") and err.count("\n") == 1, err


def test_the_command_line_defaults_are_the_plays(work, monkeypatch, capsys):
    """--root defaults to /opt/jetson-deploy (ansible/deploy.yml's jd_root default), --rc to 0, and
    --settle reaches the finalize script.  Kills x__parser__mutmut_50 and _51 (--root's default
    changed), _57 (--rc without a default: None), _97 (--settle read as a string),
    x_main__mutmut_47 (--settle not passed on to plan)."""
    rc, out, err = _main(["plan", work, "h1"], _answer(), monkeypatch, capsys)
    assert rc == 0 and out["action"] == "upload" and out["staging"] == "/opt/jetson-deploy/staging/demo/1.0.0", (out, err)
    rc, out, err = _main(["plan", work, "h1", "--root", ROOT, "--service", "demo", "--settle", "3"], _answer(),
                         monkeypatch, capsys)
    assert rc == 0, err
    fin = open(out["finalize"]).read()
    assert "systemctl restart jetson-deploy-demo.service" in fin and '"$i" -lt 3' in fin and '"$i" -lt 10' not in fin
    rc, out, err = _main(["plan", work, "h1", "--root", ROOT, "--settle", "-1"], _answer(), monkeypatch, capsys)
    assert rc == 1 and out is None and err.startswith("jd_service_settle=-1: ")


def test_result_exit_codes_on_the_command_line(work, monkeypatch, capsys):
    """deployed exits 0 and says nothing on stderr, rolled-back 4, failed 1 (the play marks the host
    failed on non-zero).  Kills x_main__mutmut_80 (every result but "XXdeployedXX" a failure) and
    _88 (every failure exit 4)."""
    plan(str(work), "h1", ROOT, 0, _answer(active="0.9.0"))
    rc, out, err = _main(["result", work, "h1"], "PRUNED 0.8.0\nDONE\n", monkeypatch, capsys)
    assert (rc, err) == (0, "") and out["result"] == "deployed" and out["pruned"] == ["0.8.0"], (out, err)
    assert out["message"] == "demo 1.0.0 active (was 0.9.0)"
    rc, out, err = _main(["result", work, "h1", "--rc", str(scripts.RC_VERIFY)], "BAD model.onnx sha256\n",
                         monkeypatch, capsys)
    assert rc == 1 and out["result"] == "failed" and err == out["message"] + "\n"
    rc, out, err = _main(["result", work, "h1", "--rc", "1"], "ERROR cannot switch active/demo\n", monkeypatch, capsys)
    assert rc == 1 and err == "activating 1.0.0 failed: cannot switch active/demo\n"
    rc, out, err = _main(["result", work, "h1", "--rc", str(scripts.RC_HEALTH)], "HEALTH_FAILED 3\n", monkeypatch, capsys)
    assert rc == 4 and out["result"] == "rolled-back" and out["active"] == "0.9.0"


def test_result_of_a_failed_verification_names_the_file(work):
    """Kills x_result__mutmut_85 (BAD lines not read: "?"), _87 (result None), _93 (result "XXfailedXX")."""
    plan(str(work), "h1", ROOT, 0, _answer(active="0.9.0"))
    r = result(str(work), "h1", scripts.RC_VERIFY, "BAD labels.txt sha256\nBAD model.onnx missing\n")
    assert r["result"] == "failed" and r["active"] == "0.9.0"
    assert r["message"] == ("verification on the device failed, nothing activated: labels.txt sha256; "
                            "removed from staging, run the play again to re-upload")
    assert result(str(work), "h1", scripts.RC_VERIFY, "")["message"].startswith(
        "verification on the device failed, nothing activated: ?;")


def test_result_for_a_host_without_a_plan(work):
    """No plan.json for the host (the plan step never ran there): no previous version, "" as plan.json
    would say.  Kills x_result__mutmut_20 (previous None) and _48 (the "VERSION" key)."""
    assert result(str(work), "h2", 0, "DONE\n") == {
        "name": "demo", "version": "1.0.0", "previous": "", "pruned": [], "result": "deployed", "active": "1.0.0",
        "message": "demo 1.0.0 active"}
    r = result(str(work), "h2", 1, "")
    assert r["previous"] == "" and r["active"] == "" and r["result"] == "failed"


def test_stage_links_the_files_instead_of_copying_them(tmp_path):
    """A bundle directory on the workdir's file system is staged by hard links (a model of gigabytes
    is not copied once more).  Kills x_stage__mutmut_24 (os.link of "None": always the copy)."""
    bundle = make_bundle(tmp_path / "b", version="1.0.0")
    info = stage(str(bundle), str(tmp_path / "work"))
    for rel in ("model.onnx", "labels.txt"):
        staged = os.path.join(info["files_dir"], rel)
        assert os.path.samefile(staged, str(bundle / rel)), rel


def test_help_names_the_module_and_says_what_it_is(capsys):
    """Kills x__parser__mutmut_7 (prog upper-cased) and _10 (the description is the docstring's second,
    empty line)."""
    from jetson_deploy.ansible_steps import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith("usage: python -m jetson_deploy.ansible_steps ")
    assert "The controller-side steps of the Ansible play" in out
