"""``service install NAME --agent REF -- AGENT_OPTIONS``: the pull agent as a systemd unit, under the run
unit's rules (marker, user, quoting, back-off), its options checked at install by the agent command."""
import shlex
import subprocess

import pytest

from support import tool
from support.deploy import out, runner
from jetson_deploy.cli import cli

REF = "registry.local:5000/fleet/shapes:stable"


def invoke(args):
    return runner().invoke(cli, args, catch_exceptions=False)


def _exec_start(text):
    line = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
    assert len(line) == 1, text
    return shlex.split(line[0][len("ExecStart="):])


@pytest.mark.needs("bin:systemd-analyze")
def test_agent_unit_text_is_valid_and_runs_the_agent(tmp_path):
    res = invoke(["service", "install", "shapes", "--agent", REF, "--user", "nvidia", "--print", "--",
                  "--key", "/etc/jetson-deploy/fleet.pub", "--interval", "30", "--ca-cert", "/etc/jetson-deploy/ca.pem"])
    assert res.exit_code == 0, out(res)
    text = res.stdout
    argv = _exec_start(text)
    assert argv[1:] == ["-m", "jetson_deploy", "agent", REF, "--root", "/opt/jetson-deploy", "--name", "shapes",
                        "--restart-service", "shapes", "--key", "/etc/jetson-deploy/fleet.pub", "--interval", "30",
                        "--ca-cert", "/etc/jetson-deploy/ca.pem"]
    assert "Description=jetson-deploy: keep bundle shapes on {} (pull agent)".format(REF) in text
    # a stop lets an update in progress finish: only the agent gets SIGINT, and time to end its health gate
    service = text.split("[Service]", 1)[1].split("[Install]", 1)[0].splitlines()
    assert service.index("KillMode=mixed") > service.index("TimeoutStopSec=20")
    assert service[-2:] == ["KillMode=mixed", "TimeoutStopSec=300"] or "TimeoutStopSec=300" in service
    unit = tmp_path / "jetson-deploy-agent-shapes.service"
    unit.write_text(text)
    p = subprocess.run([tool("systemd-analyze"), "verify", str(unit)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=60)
    assert p.returncode == 0 and not p.stdout.strip(), p.stdout


def test_agent_options_are_checked_at_install(tmp_path):
    cases = [
        (["--agent", REF, "--print", "--", "--key", "/k.pub", "--intervl", "3"], "No such option '--intervl'"),
        (["--agent", REF, "--print", "--", "--key", "/k.pub", "--once"], "--once: the agent unit sets these itself"),
        (["--agent", REF, "--print", "--", "--key", "/k.pub", "--root", "/x"], "--root: the agent unit sets these itself"),
        (["--agent", REF, "--print", "--key", "/k.pub"], "run options (--key /k.pub) belong to NAME's run service"),
        (["--agent", REF, "--print", "--source", "csi://0"], "run options (csi://0) belong"),
        (["--agent", REF, "--print"], "needs the publisher's public key on the board"),
        (["--agent", "https://x/y:z", "--print", "--", "--allow-unsigned"], "without a scheme"),
        (["--print", "--", "--key", "/k.pub"], "give --agent REGISTRY/REPO:TAG"),
    ]
    for extra, words in cases:
        res = invoke(["service", "install", "shapes", "--user", "nvidia"] + extra)
        assert res.exit_code == 2, (extra, out(res))
        assert words in out(res), (extra, out(res))


def test_agent_unit_into_a_rootfs_next_to_the_run_unit(tmp_path):
    from support.deploy import board_venv

    fs = tmp_path / "rootfs"
    (fs / "etc").mkdir(parents=True)
    python = board_venv(fs)  # the board's venv with jetson-deploy: a rootfs unit needs it named
    agent = ["service", "install", "shapes", "--agent", REF, "--rootfs", str(fs), "--user", "nvidia",
             "--python", python, "--", "--key", "/etc/jetson-deploy/fleet.pub"]
    res = invoke(agent)
    assert res.exit_code == 2 and "install NAME's run service first" in out(res), out(res)
    assert not (fs / "etc/systemd/system/jetson-deploy-agent-shapes.service").exists()
    res = invoke(["service", "install", "shapes", "--source", "csi://0", "--rootfs", str(fs), "--user", "nvidia",
                  "--python", python])
    assert res.exit_code == 0, out(res)
    res = invoke(agent)
    assert res.exit_code == 0, out(res)
    unit = fs / "etc/systemd/system/jetson-deploy-agent-shapes.service"
    assert _exec_start(unit.read_text())[3:5] == ["agent", REF]
    link = fs / "etc/systemd/system/multi-user.target.wants/jetson-deploy-agent-shapes.service"
    assert link.is_symlink()
    res = invoke(["service", "status", "agent-shapes", "--rootfs", str(fs)])
    assert res.exit_code == 0 and "installed, enabled" in res.stdout, out(res)
    res = invoke(["service", "uninstall", "agent-shapes", "--rootfs", str(fs)])
    assert res.exit_code == 0, out(res)
    assert not unit.exists() and not link.is_symlink()
    assert (fs / "etc/systemd/system/jetson-deploy-shapes.service").is_file()  # the run unit stays
