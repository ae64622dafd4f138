"""Host specs, inventories, retention and error mapping (no ssh needed)."""
import pytest

from jetson_deploy.deploy import collect_hosts, load_inventory, parse_host, retention
from jetson_deploy.deploy.options import check_root
from jetson_deploy.deploy.transport import describe_failure
from jetson_deploy.errors import BadInput


@pytest.mark.parametrize("text,user,host,port", [
    ("nvidia@orin1", "nvidia", "orin1", None),
    ("nvidia@10.0.0.5:2222", "nvidia", "10.0.0.5", 2222),
    ("orin1", None, "orin1", None),
    ("orin1:22", None, "orin1", 22),
    ("root@[::1]:2200", "root", "::1", 2200),
    ("fe80::1", None, "fe80::1", None),
])
def test_parse_host(text, user, host, port):
    h = parse_host(text)
    assert (h.user, h.hostname, h.port) == (user, host, port)
    assert h.label == text


def test_parse_host_ipv6_copy_destination_is_bracketed():
    h = parse_host("root@[::1]:2200")
    assert h.destination == "root@::1"
    assert h.copy_destination == "root@[::1]"


@pytest.mark.parametrize("bad", ["", "user@", "host:port", "host:99999", "-oProxyCommand=x", "a b", "u@h;rm", "[::1"])
def test_parse_host_rejects(bad):
    with pytest.raises(BadInput):
        parse_host(bad)


def test_plain_host_list(tmp_path):
    f = tmp_path / "hosts.txt"
    f.write_text("# shelf A\nnvidia@orin1\n\n  nvidia@orin2:2222   # spare\n; old style comment\norin1\n")
    hosts = load_inventory(str(f))
    assert [(h.user, h.hostname, h.port) for h in hosts] == [("nvidia", "orin1", None), ("nvidia", "orin2", 2222), (None, "orin1", None)]


def test_ansible_inventory_groups_vars_children(tmp_path):
    f = tmp_path / "inventory.ini"
    f.write_text(
        "bastion ansible_host=192.0.2.1\n"
        "[nanos]\n"
        "nano1 ansible_host=192.0.2.10\n"
        "nano2 ansible_host=192.0.2.11 ansible_port=2201 ansible_user=ops\n"
        "[orins]\n"
        "orin1 ansible_ssh_host=192.0.2.20\n"
        "[nanos:vars]\n"
        "ansible_user=nvidia\n"
        "[all:vars]\n"
        "ansible_port=2022\n"
        "[jetsons:children]\n"
        "nanos\n"
        "orins\n"
    )
    nanos = load_inventory(str(f), "nanos")
    assert [(h.label, h.user, h.hostname, h.port) for h in nanos] == [
        ("nano1", "nvidia", "192.0.2.10", 2022),   # group var user, all var port
        ("nano2", "ops", "192.0.2.11", 2201),      # host vars win
    ]
    jetsons = load_inventory(str(f), "jetsons")
    assert [h.label for h in jetsons] == ["nano1", "nano2", "orin1"]
    assert jetsons[2].hostname == "192.0.2.20" and jetsons[2].user is None
    everything = load_inventory(str(f))
    assert [h.label for h in everything] == ["bastion", "nano1", "nano2", "orin1"]
    with pytest.raises(BadInput, match="nanos"):
        load_inventory(str(f), "xaviers")


def test_inventory_errors(tmp_path):
    f = tmp_path / "bad.ini"
    f.write_text("[g]\nhost1 ansible_port=abc\n")
    with pytest.raises(BadInput, match="port"):
        load_inventory(str(f))
    f.write_text("[g:weird]\nx\n")
    with pytest.raises(BadInput, match="section"):
        load_inventory(str(f))
    with pytest.raises(BadInput, match="cannot read"):
        load_inventory(str(tmp_path / "missing.txt"))
    f.write_text("# only comments\n")
    with pytest.raises(BadInput, match="no hosts"):
        load_inventory(str(f))


def test_collect_hosts_dedupes_and_needs_some(tmp_path):
    f = tmp_path / "h"
    f.write_text("a@h1\na@h2\n")
    hosts = collect_hosts(["a@h1", "a@h3"], str(f))
    assert [h.label for h in hosts] == ["a@h1", "a@h3", "a@h2"]
    with pytest.raises(BadInput):
        collect_hosts([], None)
    with pytest.raises(BadInput, match="--hosts"):
        collect_hosts(["a@h1"], None, "nanos")


def test_retention_keeps_recent_active_and_previous():
    # history order is activation order; the newest activations are kept
    assert retention(["1", "2", "3", "4"], ["1", "2", "3", "4"], "5", "4", keep=3) == ["1", "2"]
    # keep=1 still keeps the previous one, so a rollback has somewhere to go
    assert retention(["1", "2", "3"], ["1", "2", "3"], "4", "3", keep=1) == ["1", "2"]
    # an older version re-activated counts as recent
    assert retention(["1", "2", "3", "1"], ["1", "2", "3"], "4", "1", keep=2) == ["2", "3"]
    # installed but never activated (failed health check) goes first
    assert retention(["1"], ["1", "9"], "2", "1", keep=3) == ["9"]


def test_check_root():
    assert check_root("/opt/jetson-deploy/") == "/opt/jetson-deploy"
    assert check_root("jd") == "jd"
    for bad in ["", "/opt/a b", "/opt/$(reboot)", "-rf", "/opt/../etc"]:
        with pytest.raises(BadInput):
            check_root(bad)


@pytest.mark.parametrize("text,expect", [
    ("rsync: write failed on \"x\": No space left on device (28)", "disk space"),
    ("root@h: Permission denied (publickey).", "authentication"),
    ("ssh: connect to host 127.0.0.1 port 1: Connection refused", "connection refused"),
    ("ssh: connect to host 192.0.2.1 port 22: Connection timed out", "timed out"),
    ("Host key verification failed.", "host key"),
])
def test_describe_failure(text, expect):
    assert expect in describe_failure(text)


def test_install_system_deps_is_idempotent():
    """With the tools present the script changes nothing and says so (CI calls it every run)."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    if not (os.path.exists("/usr/sbin/sshd") and shutil.which("ssh") and shutil.which("rsync") and shutil.which("ssh-keygen")):
        pytest.skip("tools not installed here; the script would install them")
    script = Path(__file__).resolve().parent.parent / "scripts" / "install_system_deps.sh"
    p = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert p.returncode == 0, p.stdout
    assert b"already present" in p.stdout
