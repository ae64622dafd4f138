"""Faults against a real sshd: a killed upload, a full disk. After each, the active version
is a complete, verified bundle and the next deploy resumes or cleans up."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.deploy import (assert_active_verified, installed, jd_cmd, make_bundle, needs_sshd, over_ssh,
                             staged_bytes)
from jetson_deploy.deploy import deploy

pytestmark = needs_sshd

BIG = 24 << 20  # a bundle large enough to kill mid-upload under --bwlimit


def _kill_mid_upload(sshd, bundle: Path, root: Path, transfer: str) -> int:
    """Start the CLI, kill its whole process group (python, rsync/sftp, ssh) once some bytes
    arrived in staging; return how many bytes were staged at the kill."""
    cmd = jd_cmd() + ["deploy", str(bundle), sshd.alias, "--root", str(root), "--ssh-config", str(sshd.ssh_config),
                      "--transfer", transfer, "--bwlimit", "2048", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail("deploy finished before it could be interrupted: " + proc.stderr.read().decode())
            if staged_bytes(root) > (1 << 20):
                break
            time.sleep(0.05)
        else:
            pytest.fail("no upload progress within 60 s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
    # the device side sees the connection drop and keeps its partial file; wait until it settles
    last, stable = -1, 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and stable < 4:
        now = staged_bytes(root)
        stable = stable + 1 if now == last else 0
        last = now
        time.sleep(0.1)
    return last


# (a stale partial upload of another version being cleaned is covered cheaply in test_deploy_ssh)
@pytest.mark.parametrize("transfer", ["rsync", "sftp"])
def test_interrupted_upload_keeps_previous_and_next_deploy_resumes(sshd, tmp_path, transfer):
    root = tmp_path / "dev"
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    assert deploy(str(b1), [sshd.alias], over_ssh(sshd, str(root)))[0].result == "deployed"
    big = make_bundle(tmp_path / "big", version="2.0.0", sizes={"model.onnx": BIG, "labels.txt": 100})

    staged = _kill_mid_upload(sshd, big, root, transfer)
    assert 0 < staged < BIG, staged
    # the previous version is still active and complete; nothing of 2.0.0 was installed
    assert_active_verified(root, "demo", "1.0.0", b1)
    assert installed(root) == ["1.0.0"]

    # the same deploy again resumes from what is on the device (rsync: partial dir; sftp: put -a)
    r = deploy(str(big), [sshd.alias], over_ssh(sshd, str(root), transfer=transfer))[0]
    assert r.result == "deployed", r
    assert r.details["resumed_bytes"] > 0, r.details
    assert_active_verified(root, "demo", "2.0.0", big)
    assert not (root / "staging" / "demo").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs as the device root (needs root to mount; skipped otherwise)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        pytest.skip("cannot mount a small tmpfs to fill up (needs root): " + p.stdout.decode(errors="replace").strip())
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_full_disk_gives_a_clear_error(sshd, tmp_path, small_disk):
    root = small_disk / "jd"
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    assert deploy(str(b1), [sshd.alias], over_ssh(sshd, str(root)))[0].result == "deployed"

    # larger than the disk: refused by the df -Pk check before any upload
    huge = make_bundle(tmp_path / "huge", version="2.0.0", sizes={"model.onnx": 6 << 20})
    r = deploy(str(huge), [sshd.alias], over_ssh(sshd, str(root)))[0]
    assert r.result == "failed"
    assert "not enough disk space" in r.message and "df -Pk" in r.message
    assert_active_verified(root, "demo", "1.0.0", b1)
    assert staged_bytes(root) < 4096  # only the expected-checksums list, no artifact data

    # the disk fills up during the upload (something else wrote to it): one clear line
    mid = make_bundle(tmp_path / "mid", version="3.0.0", sizes={"model.onnx": 2 << 20})
    filler = small_disk / "filler"

    def fill(**_):
        st = os.statvfs(str(small_disk))
        free = st.f_bavail * st.f_frsize
        with open(str(filler), "wb") as f:
            f.write(b"\0" * max(0, free - (256 << 10)))

    r = deploy(str(mid), [sshd.alias], over_ssh(sshd, str(root)), hooks={"after_prepare": fill})[0]
    assert r.result == "failed"
    assert "No space left on device" in r.message and "disk space" in r.message
    assert "\n" not in r.message
    assert_active_verified(root, "demo", "1.0.0", b1)

    # space freed: the next deploy goes through
    filler.unlink()
    r = deploy(str(mid), [sshd.alias], over_ssh(sshd, str(root)))[0]
    assert r.result == "deployed", r
    assert_active_verified(root, "demo", "3.0.0", mid)


def test_link_drop_during_activation_finishes_on_the_device(sshd, tmp_path):
    """Kill the client while the device runs the activate step (a slow health check): the device
    finishes the step on its own; the state is consistent and the lock is released."""
    root = tmp_path / "dev"
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    b2 = make_bundle(tmp_path / "b2", version="2.0.0")
    assert deploy(str(b1), [sshd.alias], over_ssh(sshd, str(root)))[0].result == "deployed"
    done = tmp_path / "health-done"
    cmd = jd_cmd() + ["deploy", str(b2), sshd.alias, "--root", str(root), "--ssh-config", str(sshd.ssh_config), "-q",
                      "--health-cmd", "sleep 2; touch {}".format(done)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if (root / "active" / "demo").is_symlink() and os.readlink(str(root / "active" / "demo")).endswith("2.0.0"):
                break
            time.sleep(0.02)
        else:
            pytest.fail("the switch to 2.0.0 never happened while the client ran")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not done.exists() or (root / "state" / "demo.lock").exists()):
        time.sleep(0.1)
    assert done.exists(), "the health check did not finish after the client was killed"
    assert not (root / "state" / "demo.lock").exists()
    assert_active_verified(root, "demo", "2.0.0", b2)
    assert (root / "state" / "demo.history").read_text().split() == ["1.0.0", "2.0.0"]
    # and the next deploy sees a consistent device
    assert deploy(str(b2), [sshd.alias], over_ssh(sshd, str(root)))[0].result == "unchanged"


def test_read_only_root_is_one_clear_line(sshd, tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mnt)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs (needs root)")
    try:
        b1 = make_bundle(tmp_path / "b1", version="1.0.0")
        r = deploy(str(b1), [sshd.alias], over_ssh(sshd, str(mnt / "jd")))[0]
        assert r.result == "failed"
        assert "cannot create directories under" in r.message and "Read-only file system" in r.message
        assert "\n" not in r.message
    finally:
        subprocess.run(["umount", "-l", str(mnt)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_stale_lock_is_broken(sshd, tmp_path):
    """A deploy killed at the worst moment leaves state/NAME.lock; after 10 minutes it is stale."""
    root = tmp_path / "dev"
    lock = root / "state" / "demo.lock"
    lock.mkdir(parents=True)
    old = time.time() - 3600
    os.utime(str(lock), (old, old))
    b1 = make_bundle(tmp_path / "b1", version="1.0.0")
    r = deploy(str(b1), [sshd.alias], over_ssh(sshd, str(root)))[0]
    assert r.result == "deployed", r
    assert not lock.exists()
    assert_active_verified(root, "demo", "1.0.0", b1)
