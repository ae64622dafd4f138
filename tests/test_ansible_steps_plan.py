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
