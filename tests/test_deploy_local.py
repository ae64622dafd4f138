"""The local side of deploy: opening/verifying bundles for upload and the remote scripts'
syntax, no ssh needed.  Hostile archives are refused by unpack_archive (tests/test_bundle_pack.py)."""
import io
import json
import shutil
import subprocess
import tarfile

import pytest

from support.bundles import sha
from support.deploy import make_bundle
from jetson_deploy.deploy import open_local_bundle, scripts
from jetson_deploy.deploy.local_bundle import check_name
from jetson_deploy.errors import BadInput, CheckFailed


def test_open_lists_every_file_with_checksums(tmp_path):
    b = make_bundle(tmp_path / "b", version="1.2.3")
    with open_local_bundle(str(b)) as lb:
        assert (lb.name, lb.version) == ("demo", "1.2.3")
        rels = [rel for rel, _, _ in lb.files]
        assert rels[0] == "manifest.json"
        assert set(rels) == {"manifest.json", "model.onnx", "labels.txt", "engines/8.6.2_sm87_fp16.engine"}
        for rel, size, digest in lb.files:
            assert size == (b / rel).stat().st_size and digest == sha(b / rel)
        assert lb.total_size == sum((b / r).stat().st_size for r in rels)
        # sha256sum -c format, one line per file
        assert lb.sums_text.splitlines()[0] == "{}  manifest.json".format(sha(b / "manifest.json"))


def test_open_rejects_a_corrupted_artifact_by_name(tmp_path):
    b = make_bundle(tmp_path / "b")
    p = b / "labels.txt"
    data = p.read_bytes()
    p.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])
    with pytest.raises(CheckFailed, match="labels.txt"):
        open_local_bundle(str(b))
    with pytest.raises(BadInput):
        open_local_bundle(str(tmp_path / "missing"))


def test_packed_bundle_is_unpacked_safely(tmp_path):
    b = make_bundle(tmp_path / "b")
    tar_path = tmp_path / "demo.jdb"
    with tarfile.open(str(tar_path), "w") as tar:  # NAME-VERSION/ on top, manifest first
        for p in sorted(b.rglob("*"), key=lambda q: (q.name != "manifest.json", str(q))):
            if p.is_file():
                tar.add(str(p), arcname="demo-1.0.0/" + str(p.relative_to(b)))
    with open_local_bundle(str(tar_path)) as lb:
        root = lb.root
        assert root.is_dir() and sha(root / "model.onnx") == sha(b / "model.onnx")
    assert not root.exists()  # the temporary unpack dir is removed on close
    evil = tmp_path / "evil.tar"
    with tarfile.open(str(evil), "w") as tar:
        data = b"owned"
        info = tarfile.TarInfo("../../escape.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises((CheckFailed, BadInput)):
        open_local_bundle(str(evil))
    assert not (tmp_path.parent / "escape.txt").exists()


def test_names_and_paths_that_cannot_travel_safely_are_refused(tmp_path):
    b = make_bundle(tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    # names given on the command line (rollback, status) are checked by deploy itself
    with pytest.raises(BadInput, match="name"):
        check_name("demo; reboot", "name")
    # inside a bundle, the manifest schema refuses them before deploy sees them
    m["name"] = "demo; reboot"
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises((BadInput, CheckFailed), match="name"):
        open_local_bundle(str(b))
    m["name"] = "demo"
    (b / "labels.txt").rename(b / "my labels.txt")
    for art in m["artifacts"]:
        if art["path"] == "labels.txt":
            art["path"] = "my labels.txt"
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises((BadInput, CheckFailed), match="my labels.txt"):
        open_local_bundle(str(b))


def test_an_artifact_in_the_upload_scratch_directory_is_refused(tmp_path):
    b = make_bundle(tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    (b / ".rsync-partial").mkdir()
    (b / "labels.txt").rename(b / ".rsync-partial" / "labels.txt")
    for art in m["artifacts"]:
        if art["path"] == "labels.txt":
            art["path"] = ".rsync-partial/labels.txt"
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BadInput, match="rsync-partial"):
        open_local_bundle(str(b))


@pytest.mark.parametrize("shell", ["sh", "dash", "bash", "busybox"])
def test_remote_scripts_parse_in_posix_shells(shell):
    argv = [shell, "sh", "-n"] if shell == "busybox" else [shell, "-n"]
    if shutil.which(shell) is None:
        pytest.skip("{} not installed".format(shell))
    for text in (scripts.prepare("/opt/jd", "demo", "1.0.0", "ab  model.onnx\n"),
                 scripts.finalize("/opt/jd", "demo", "1.0.0", "upload", "3 model.onnx\n", ["0.9.0"], "curl -f x", 5),
                 scripts.rollback("/opt/jd", "demo", None), scripts.status("/opt/jd", "demo", True),
                 scripts.free_space("/opt/jd")):
        p = subprocess.run(argv, input=text.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        assert p.returncode == 0, p.stderr.decode()
        assert text.rstrip().endswith("jd_main")  # nothing runs until the whole script has arrived


HOSTILE_WORDS = ["$(touch {m}1)", "`touch {m}2`", "x; touch {m}3", "x' ; touch {m}4 ; '", 'x" ; touch {m}5 ; "', "a\ntouch {m}6"]


def _sh(text, cwd):
    p = subprocess.run(["sh", "-s"], input=text.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(cwd), timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def _markers(tmp_path):
    return sorted(p.name for p in tmp_path.rglob("MARK*"))


def _switchable(root, name, version):
    """An installed, verified version ready for finalize's 'switch' mode."""
    d = root / "bundles" / name / version
    d.mkdir(parents=True)
    (d / "f.txt").write_text("hello " + version)
    sums = "{}  f.txt\n".format(sha(d / "f.txt"))
    (root / "staging" / name).mkdir(parents=True, exist_ok=True)
    (root / "active").mkdir(exist_ok=True)
    (root / "staging" / name / ".{}.sha256".format(version)).write_text(sums)


@pytest.mark.parametrize("word", HOSTILE_WORDS)
def test_scripts_run_with_hostile_values_inject_nothing(tmp_path, word):
    """Root, name, version and prune list reach the device as data: the rendered scripts are RUN
    with hostile values and no injected command may create its marker file."""
    w = word.format(m=tmp_path / "MARK")
    root = tmp_path / ("r " + w.replace("/", "_"))
    name, version = "demo" + w.replace("/", "_"), "1.0" + w.replace("/", "_")
    _switchable(root, name, version)
    rc, so, se = _sh(scripts.finalize(str(root), name, version, "switch", "", [w, "1.0.0"], None, 5), tmp_path)
    assert rc == 0 and "DONE" in so, so + se
    assert (root / "active" / name).is_symlink()
    for text in (scripts.prepare(str(root), name, version, ""), scripts.status(str(root), name, True),
                 scripts.rollback(str(root), name, w), scripts.free_space(str(root))):
        _sh(text, tmp_path)
    assert _markers(tmp_path) == []


def test_health_command_runs_as_written_not_reinterpreted(tmp_path):
    """The health command is one shell command run inside the new version; quoting inside it is
    the user's: a single-quoted $(...) stays text, and nothing runs before the switch."""
    root = tmp_path / "root"
    _switchable(root, "demo", "1.0.0")
    mark = tmp_path / "MARK_quoted"
    health = "echo '$(touch {})' > seen.txt; test -f f.txt".format(mark)
    rc, so, se = _sh(scripts.finalize(str(root), "demo", "1.0.0", "switch", "", [], health, 5), tmp_path)
    assert rc == 0 and "HEALTH_OK" in so, so + se
    assert _markers(tmp_path) == []
    assert "$(touch" in (root / "bundles" / "demo" / "1.0.0" / "seen.txt").read_text()


def test_failed_health_check_switches_back_to_the_previous_version(tmp_path):
    root = tmp_path / "root"
    _switchable(root, "demo", "1.0.0")
    rc, so, se = _sh(scripts.finalize(str(root), "demo", "1.0.0", "switch", "", [], None, 5), tmp_path)
    assert rc == 0, so + se
    _switchable(root, "demo", "2.0.0")
    rc, so, se = _sh(scripts.finalize(str(root), "demo", "2.0.0", "switch", "", [], "echo unhealthy; exit 7", 5), tmp_path)
    assert rc == scripts.RC_HEALTH and "HEALTH_FAILED 7" in so and "HEALTH_LOG unhealthy" in so, so + se
    import os

    assert os.readlink(str(root / "active" / "demo")) == "../bundles/demo/1.0.0"
    assert (root / "state" / "demo.history").read_text().split() == ["1.0.0"]
