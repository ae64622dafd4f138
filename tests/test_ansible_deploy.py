"""The Ansible path (ansible/deploy.yml) against two loopback sshd: same inventory, same semantics.

Skips with the reason where ansible-core is not installed (pip install ansible-core).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import tool
from support.deploy import active_version, assert_active_verified, make_bundle, needs_sshd, out, runner
from jetson_deploy.ansible_steps import plan, prepare, result, stage
from jetson_deploy.cli import cli
from jetson_deploy.deploy import load_inventory
from jetson_deploy.errors import JetsonDeployError

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = ROOT / "ansible" / "deploy.yml"


ANSIBLE = tool("ansible-playbook")
needs_ansible = pytest.mark.needs("bin:ansible-playbook")


def _env(tmp: Path):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_HOME": str(tmp / "ansible-home"), "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp / "ansible-remote"), "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp / "cp"),
        "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable, "ANSIBLE_CONFIG": str(tmp / "none.cfg"),
        "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
    })
    return env


def _play(tmp: Path, inventory: Path, bundle: Path, health: str):
    extra = {"jd_bundle": str(bundle), "jd_health_cmd": health, "jd_health_timeout": 30}
    cmd = [ANSIBLE, "-i", str(inventory), str(PLAYBOOK), "-e", json.dumps(extra)]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          cwd=str(tmp), env=_env(tmp), timeout=300)


def _recap(text: str, host: str) -> str:
    lines = [l for l in text.splitlines() if l.startswith(host + " ") and "ok=" in l]
    assert lines, text[-3000:]
    return lines[-1]


@pytest.mark.slow
@needs_sshd
@needs_ansible
def test_play_deploys_to_two_hosts_one_rolled_back(sshd_pair, tmp_path):
    a, b, cfg = sshd_pair
    ra, rb = tmp_path / "root-a", tmp_path / "root-b"
    inv = tmp_path / "inventory.ini"
    inv.write_text("\n".join([
        "[shelf_a]", "jd-a jd_root={}".format(ra), "",
        "[shelf_b]", "jd-b jd_root={}".format(rb), "",
        "[jetsons:children]", "shelf_a", "shelf_b", "",
        "[jetsons:vars]", 'ansible_ssh_common_args="-F {}"'.format(cfg), "",
    ]))
    # the inventory `deploy --hosts` reads: v1 goes out through jetson-deploy deploy
    assert [h.label for h in load_inventory(str(inv), "jetsons")] == ["jd-a", "jd-b"]
    v1 = make_bundle(tmp_path / "b1", version="1.0.0")
    for group, root in (("shelf_a", ra), ("shelf_b", rb)):
        res = runner().invoke(cli, ["deploy", str(v1), "--hosts", str(inv), "--group", group, "--root", str(root),
                                    "--ssh-config", str(cfg), "-q"], catch_exceptions=False)
        assert res.exit_code == 0, out(res)
    # v2, packed, through the Ansible play; host b's health check fails
    v2dir = make_bundle(tmp_path / "b2", version="2.0.0")
    v2 = tmp_path / "demo-2.0.0.jdb"
    res = runner().invoke(cli, ["bundle", "pack", str(v2dir), "-o", str(v2)], catch_exceptions=False)
    assert res.exit_code == 0, out(res)
    (rb / "fail-health").write_text("x")
    p = _play(tmp_path, inv, v2, 'test ! -e "$JETSON_DEPLOY_ROOT/fail-health"')
    assert p.returncode == 2, p.stdout[-4000:]   # ansible-playbook: some host failed
    assert "failed=0" in _recap(p.stdout, "jd-a") and "failed=1" in _recap(p.stdout, "jd-b")
    assert "health check failed" in p.stdout and "switched back to 1.0.0" in p.stdout
    assert_active_verified(ra, "demo", "2.0.0", v2dir)
    assert_active_verified(rb, "demo", "1.0.0", v1)
    assert (rb / "bundles" / "demo" / "2.0.0").is_dir()            # installed, verified, not active
    assert not list((ra / "staging").glob("demo/*")) and not list((rb / "staging").glob("demo/*"))
    # again, b healthy now: a has nothing to do, b switches to the installed 2.0.0 without upload
    (rb / "fail-health").unlink()
    p = _play(tmp_path, inv, v2, 'test ! -e "$JETSON_DEPLOY_ROOT/fail-health"')
    assert p.returncode == 0, p.stdout[-4000:]
    assert "already active and verified" in p.stdout
    assert active_version(ra) == "2.0.0" and active_version(rb) == "2.0.0"
    assert "Upload the bundle" in p.stdout and "skipping: [jd-b]" in p.stdout.split("Upload the bundle")[1].split("TASK")[0]


def test_steps_plan_without_ansible(tmp_path):
    """The controller steps alone, with LocalTransport-style shell runs: prepare -> plan -> finalize."""
    bundle = make_bundle(tmp_path / "b", version="3.0.0")
    work, root = tmp_path / "work", tmp_path / "root"
    info = stage(str(bundle), str(work))
    assert info["name"] == "demo" and Path(info["files_dir"], "manifest.json").is_file()
    script = prepare(str(work), "h1", str(root))["script"]
    p = subprocess.run(["sh", script], stdout=subprocess.PIPE, universal_newlines=True)
    pl = plan(str(work), "h1", str(root), p.returncode, p.stdout, service="demo")
    assert pl["action"] == "upload" and pl["staging"] == "{}/staging/demo/3.0.0".format(root)
    fin = Path(pl["finalize"]).read_text()
    assert "is-active" in fin
    # the restart after a failed gate lives in finalize itself (ONRB), not in a later play task
    assert "ONRB='if [ -n \"${JETSON_DEPLOY_PREVIOUS:-}\" ]" in fin and "systemctl restart jetson-deploy-demo.service" in fin
    for f in Path(info["files_dir"]).rglob("*"):
        if f.is_file():
            dst = Path(pl["staging"]) / f.relative_to(info["files_dir"])
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(str(f), str(dst))
    pl = plan(str(work), "h1", str(root), 0, p.stdout)   # no service: plain gate
    f = subprocess.run(["sh", pl["finalize"]], stdout=subprocess.PIPE, universal_newlines=True)
    r = result(str(work), "h1", f.returncode, f.stdout)
    assert r["result"] == "deployed" and r["active"] == "3.0.0", f.stdout
    assert_active_verified(root, "demo", "3.0.0", bundle)
    with pytest.raises(JetsonDeployError, match="absolute"):
        prepare(str(work), "h1", "relative/root")
    with pytest.raises(JetsonDeployError, match="sha256sum"):
        plan(str(work), "h1", str(root), 0, "PREPARED\n")
