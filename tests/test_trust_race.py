"""Trust what was verified, and nothing else (issue #29 item 1): the path is resolved once.

``run LINK --key signing.pub`` where LINK points at a signed bundle; a watcher flips LINK to an
unsigned bundle the moment ``manifest.sig`` is closed (inotify ``IN_CLOSE_NOWRITE``, the instant
after the signature was read).  What runs must be the signed bundle (or the run is refused); never
the unsigned one's labels or model.  Repeated 20 times: a race test that passed once proves little.
"""
import ctypes
import ctypes.util
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from support.bundles import write_bundle
from support.runtime import LABELS, color_onnx_bytes, spec_dict

pytestmark = pytest.mark.needs("onnxruntime", "cryptography")

ROOT = Path(__file__).resolve().parent.parent
EVIL = ["evil-0", "evil-1", "evil-2", "evil-3"]
IN_CLOSE_NOWRITE = 0x10


def _bundle(dest: Path, labels) -> Path:
    files = {"model.onnx": color_onnx_bytes(), "labels.txt": ("\n".join(labels) + "\n").encode()}
    return write_bundle(dest, "colors", "1.0.0", files, {"spec": spec_dict(labels=labels), "precision": "fp32"})


def flip(link: Path, target: Path) -> None:
    """LINK -> TARGET in one rename (what an attacker owning LINK's directory can do)."""
    tmp = link.with_name(link.name + ".new")
    if os.path.lexists(str(tmp)):
        os.unlink(str(tmp))
    os.symlink(str(target), str(tmp))
    os.replace(str(tmp), str(link))


class FlipOnClose(threading.Thread):
    """Flip LINK to TARGET when WATCHED is closed after reading (inotify; Linux)."""

    def __init__(self, watched: Path, link: Path, target: Path) -> None:
        super().__init__(daemon=True)
        self.link, self.target = link, target
        self.libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(str(watched)), IN_CLOSE_NOWRITE)
        assert wd >= 0, os.strerror(ctypes.get_errno())
        self.flipped = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                ready, _, _ = select.select([self.fd], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(self.fd, 4096)
                while data:
                    _, mask, _, n = struct.unpack_from("iIII", data)
                    data = data[16 + n:]
                    if mask & IN_CLOSE_NOWRITE and not self.flipped.is_set():
                        flip(self.link, self.target)
                        self.flipped.set()
        finally:
            os.close(self.fd)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from jetson_deploy.bundle.sign import keygen, sign_bundle

    base = tmp_path_factory.mktemp("race")
    signed = _bundle(base / "signed", LABELS)
    keys = keygen(base / "signing")
    sign_bundle(signed, keys["private_key"])
    unsigned = _bundle(base / "unsigned", EVIL)
    return signed, unsigned, keys["public_key"]


def _run(link: Path, pub: str, out: Path, tmp: Path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp))
    env.pop("JETSON_DEPLOY_REQUIRE_KEY", None)
    return subprocess.run([sys.executable, "-m", "jetson_deploy", "run", str(link), "--key", pub, "--source",
                           "synthetic://32x24?pool=2", "--backend", "onnxruntime", "--max-frames", "4", "--interval", "0",
                           "--sink", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          env=env, timeout=240)


@pytest.mark.parametrize("attempt", range(20))
def test_symlink_flipped_after_the_signature_is_read_changes_nothing(pair, tmp_path, attempt):
    signed, unsigned, pub = pair
    link = tmp_path / "LINK"
    os.symlink(str(signed), str(link))
    watcher = FlipOnClose(signed / "manifest.sig", link, unsigned)
    watcher.start()
    try:
        p = _run(link, pub, tmp_path / "out.jsonl", tmp_path)
    finally:
        watcher.stop.set()
        watcher.join(5)
    assert watcher.flipped.is_set(), "the watcher never saw manifest.sig closed: the race did not happen"
    assert os.readlink(str(link)) == str(unsigned)
    assert p.returncode == 0, p.stderr  # the signed bundle was verified; a later swap must not refuse or change it
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    labels = {r["label"] for r in rows}
    assert rows and labels <= set(LABELS), labels  # never the unsigned bundle's labels


def test_labels_are_the_bytes_that_were_hashed(pair, tmp_path):
    """In process: a labels.txt replaced inside the opened bundle after verification is refused, and
    the directory it was opened through is what is read after the path was flipped."""
    from jetson_deploy.bundle.sign import open_trusted

    signed, unsigned, pub = pair
    copy = tmp_path / "copy"
    shutil.copytree(str(signed), str(copy))
    link = tmp_path / "LINK"
    os.symlink(str(copy), str(link))
    with open_trusted(link, pub) as b:
        flip(link, unsigned)
        assert b.labels == LABELS and b.root == copy.resolve()
        onnx = b.path("onnx")
        assert onnx.read_bytes() == (copy / "model.onnx").read_bytes() and os.path.samefile(str(onnx), str(copy / "model.onnx"))
        os.replace(str(unsigned / "labels.txt"), str(copy / "labels.txt.new"))
        shutil.copyfile(str(copy / "labels.txt.new"), str(unsigned / "labels.txt"))
        os.replace(str(copy / "labels.txt.new"), str(copy / "labels.txt"))
        from jetson_deploy.errors import CheckFailed

        with pytest.raises(CheckFailed, match="labels.txt"):
            b.labels


def test_the_directory_renamed_and_replaced_after_verification_changes_nothing(pair, tmp_path):
    """The verified directory itself is moved away and an unsigned one put at its path: what is read
    (labels, the model, the signature) is still the verified directory's, through its handle."""
    from jetson_deploy.bundle.sign import VALID, open_trusted, signature_state

    signed, unsigned, pub = pair
    place = tmp_path / "bundle"
    shutil.copytree(str(signed), str(place))
    with open_trusted(place, pub) as b:
        os.rename(str(place), str(tmp_path / "moved"))
        shutil.copytree(str(unsigned), str(place))
        (place / "manifest.sig").write_bytes(b"\0" * 64)
        assert b.labels == LABELS
        assert b.path("onnx").read_bytes() == (tmp_path / "moved" / "model.onnx").read_bytes()
        assert os.path.samefile(str(b.path("labels")), str(tmp_path / "moved" / "labels.txt"))
        assert signature_state(b, pub)[0] == VALID
