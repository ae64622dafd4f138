"""bundle pack/unpack: determinism, streaming, and refusing hostile archives."""
import io
import os
import shutil
import tarfile
import time

import pytest

from support.bundles import flip_byte, make_bundle, sha
from jetson_deploy.bundle import open_bundle, pack_bundle, unpack_archive
from jetson_deploy.bundle import pack as packmod
from jetson_deploy.errors import BadInput, CheckFailed


def test_pack_is_byte_identical_across_runs_and_mtimes(tmp_path):
    d = make_bundle(tmp_path / "a" / "demo-0.1.0")
    r1 = pack_bundle(d, tmp_path / "one.jdb")
    pack_bundle(d, tmp_path / "two.jdb")
    assert (tmp_path / "one.jdb").read_bytes() == (tmp_path / "two.jdb").read_bytes()
    # a copy elsewhere with other mtimes/permissions packs to the same bytes
    other = tmp_path / "b" / "demo-0.1.0"
    shutil.copytree(str(d), str(other))
    past = time.time() - 86400 * 400
    for root, _dirs, files in os.walk(str(other)):
        for f in files:
            os.utime(os.path.join(root, f), (past, past))
            os.chmod(os.path.join(root, f), 0o600)
    pack_bundle(other, tmp_path / "three.jdb")
    assert sha(tmp_path / "three.jdb") == sha(tmp_path / "one.jdb")
    assert r1["manifest_sha256"] == open_bundle(d).sha256
    with tarfile.open(str(tmp_path / "one.jdb")) as t:
        members = t.getmembers()
    names = [m.name for m in members]
    assert names[0] == "demo-0.1.0/manifest.json"
    assert names[1:] == sorted(names[1:])
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == "" and m.mode == 0o644 for m in members)
    assert not any(m.pax_headers for m in members)


def test_unpack_roundtrip_and_open_packed(tmp_path):
    d = make_bundle(tmp_path / "demo-0.1.0")
    pack_bundle(d, tmp_path / "d.jdb")
    out = unpack_archive(tmp_path / "d.jdb", tmp_path / "out")
    assert open_bundle(out).sha256 == open_bundle(d).sha256
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in d.iterdir())
    b = open_bundle(tmp_path / "d.jdb")
    assert b.packed and b.path("onnx").read_bytes() == (d / "model.onnx").read_bytes()
    root = b.root
    b.close()
    assert not root.exists()
    with pytest.raises(BadInput, match="already exists"):
        unpack_archive(tmp_path / "d.jdb", tmp_path / "out")


def test_pack_refuses_tampered_bundle_and_leaves_nothing(tmp_path):
    d = make_bundle(tmp_path / "demo-0.1.0")
    flip_byte(d / "model.onnx", 4321)
    with pytest.raises(CheckFailed, match="artifact model.onnx: sha256 mismatch"):
        pack_bundle(d, tmp_path / "x.jdb")
    assert not (tmp_path / "x.jdb").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["demo-0.1.0"]
    d2 = make_bundle(tmp_path / "e")
    (d2 / "stray.txt").write_text("x")
    with pytest.raises(CheckFailed, match="stray.txt: unlisted file"):
        pack_bundle(d2, tmp_path / "y.jdb")


def test_pack_and_unpack_stream_in_chunks(tmp_path, monkeypatch):
    big = os.urandom(3 << 20)
    from jetson_deploy.bundle import BundleWriter

    with BundleWriter(tmp_path / "big", name="big", version="1.0.0") as w:
        w.add_bytes(big, "model.onnx", kind="onnx")
    sizes = []
    orig = packmod._HashingReader.read

    def spy(self, size=-1):
        sizes.append(size)
        return orig(self, size)

    monkeypatch.setattr(packmod._HashingReader, "read", spy)
    pack_bundle(tmp_path / "big", tmp_path / "big.jdb")
    assert sizes and all(0 < s <= packmod.CHUNK for s in sizes), "never a whole-file read"
    out = unpack_archive(tmp_path / "big.jdb", tmp_path / "big-out")
    assert (out / "model.onnx").read_bytes() == big


# ---- hostile archives ----------------------------------------------------------------------


def _tar(path, members, fmt=tarfile.GNU_FORMAT):
    """members: list of (TarInfo, bytes or None)."""
    with tarfile.open(str(path), "w", format=fmt) as t:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
    return path


def _reg(name, data=b"x"):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    return ti, data


def _special(name, kind, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = linkname
    return ti, None


def _manifest_member(tmp_path):
    d = make_bundle(tmp_path / "good-src")
    return _reg("demo-0.1.0/manifest.json", (d / "manifest.json").read_bytes())


HOSTILE = {
    "absolute": (lambda m: [m, _reg("/tmp/jd-evil-abs")], "absolute path"),
    "dotdot": (lambda m: [m, _reg("demo-0.1.0/../../jd-evil")], r"'\.\.' in path"),
    "symlink": (lambda m: [m, _special("demo-0.1.0/model.onnx", tarfile.SYMTYPE, "/etc/passwd")], "symbolic link"),
    "hardlink": (lambda m: [m, _special("demo-0.1.0/model.onnx", tarfile.LNKTYPE, "/etc/passwd")], "hard link"),
    "chardev": (lambda m: [m, _special("demo-0.1.0/tty", tarfile.CHRTYPE)], "device file"),
    "blockdev": (lambda m: [m, _special("demo-0.1.0/sda", tarfile.BLKTYPE)], "device file"),
    "fifo": (lambda m: [m, _special("demo-0.1.0/pipe", tarfile.FIFOTYPE)], "FIFO"),
    "duplicate": (lambda m: [m, _reg("demo-0.1.0/labels.txt", b"a"), _reg("demo-0.1.0/labels.txt", b"b")], "duplicate name"),
    "outside-top": (lambda m: [m, _reg("other/labels.txt")], "not under the top-level directory"),
    "odd-chars": (lambda m: [m, _reg("demo-0.1.0/ev il\n.txt")], "may only use"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused(tmp_path, case):
    build, expect = HOSTILE[case]
    arc = _tar(tmp_path / "evil.jdb", build(_manifest_member(tmp_path)))
    dest = tmp_path / "dest"
    with pytest.raises(CheckFailed, match=expect):
        unpack_archive(arc, dest)
    assert not dest.exists(), "nothing is left at the destination"
    assert not (tmp_path.parent / "jd-evil").exists() and not os.path.exists("/tmp/jd-evil-abs")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("evil.jdb", "good-src")]
    assert leftovers == [], leftovers
    with pytest.raises(CheckFailed):
        open_bundle(arc)


def test_oversized_member_and_total_are_refused(tmp_path):
    m = _manifest_member(tmp_path)
    arc = _tar(tmp_path / "big.jdb", [m, _reg("demo-0.1.0/model.onnx", b"x" * 5000)])
    with pytest.raises(CheckFailed, match="over the 4096-byte member limit"):
        unpack_archive(arc, tmp_path / "d1", max_member_bytes=4096)
    arc2 = _tar(tmp_path / "many.jdb", [m] + [_reg("demo-0.1.0/f{}".format(i), b"y" * 3000) for i in range(5)])
    with pytest.raises(CheckFailed, match="total limit"):
        unpack_archive(arc2, tmp_path / "d2", max_total_bytes=10000)
    with pytest.raises(CheckFailed, match="more than 3 members"):
        unpack_archive(arc2, tmp_path / "d3", max_members=3)
    assert not any((tmp_path / n).exists() for n in ("d1", "d2", "d3"))


def test_truncated_and_non_tar_inputs(tmp_path):
    d = make_bundle(tmp_path / "demo-0.1.0")
    pack_bundle(d, tmp_path / "ok.jdb")
    data = (tmp_path / "ok.jdb").read_bytes()
    (tmp_path / "cut.jdb").write_bytes(data[: len(data) // 2 + 100])
    with pytest.raises(CheckFailed, match="truncated|damaged"):
        unpack_archive(tmp_path / "cut.jdb", tmp_path / "o1")
    assert not (tmp_path / "o1").exists()
    (tmp_path / "junk.jdb").write_bytes(b"this is not a tar file at all" * 10)
    with pytest.raises(BadInput, match="not a bundle directory or a packed"):
        open_bundle(tmp_path / "junk.jdb")
    with pytest.raises(BadInput, match="does not exist"):
        unpack_archive(tmp_path / "missing.jdb", tmp_path / "o2")


def test_tampered_member_inside_archive_fails_verify(tmp_path):
    d = make_bundle(tmp_path / "demo-0.1.0")
    pack_bundle(d, tmp_path / "ok.jdb")
    data = bytearray((tmp_path / "ok.jdb").read_bytes())
    idx = data.find((d / "model.onnx").read_bytes()[20000:20064])
    assert idx > 0
    data[idx + 10] ^= 0xFF
    (tmp_path / "bad.jdb").write_bytes(bytes(data))
    with pytest.raises(CheckFailed, match="artifact model.onnx: sha256 mismatch"):
        open_bundle(tmp_path / "bad.jdb")
    with pytest.raises(CheckFailed, match="model.onnx"):
        unpack_archive(tmp_path / "bad.jdb", tmp_path / "o")


def test_hand_made_tar_with_dirs_and_pax_is_accepted(tmp_path):
    d = make_bundle(tmp_path / "src" / "demo-0.1.0")
    with tarfile.open(str(tmp_path / "hand.tar"), "w", format=tarfile.PAX_FORMAT) as t:
        t.add(str(d), arcname="demo-0.1.0")  # directory entries, real mtimes, pax
    out = unpack_archive(tmp_path / "hand.tar", tmp_path / "out")
    assert open_bundle(out).sha256 == open_bundle(d).sha256


def test_inspect_packed_reads_in_place(tmp_path, monkeypatch):
    from jetson_deploy.bundle import inspect_bundle

    d = make_bundle(tmp_path / "demo-0.1.0")
    pack_bundle(d, tmp_path / "d.jdb")

    def no_extract(*a, **k):
        raise AssertionError("inspect must not extract")

    from jetson_deploy.bundle import reader as readermod

    monkeypatch.setattr(packmod, "extract_archive", no_extract)
    monkeypatch.setattr(readermod, "extract_archive", no_extract)
    packed = inspect_bundle(tmp_path / "d.jdb")
    plain = inspect_bundle(d)
    assert packed["packed"] is True and packed["integrity"]["ok"] is True
    for k in ("name", "version", "manifest_sha256", "artifacts", "targets", "total_size", "spec", "signature"):
        assert packed[k] == plain[k], k
    # a member with the wrong size and an extra member show up as problems
    with tarfile.open(str(tmp_path / "d.jdb")) as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    bad = []
    for m, data in members:
        if m.name.endswith("labels.txt"):
            data = data + b"more\n"
        bad.append((m, data))
    bad.append((tarfile.TarInfo("demo-0.1.0/extra.bin"), b"?"))
    _tar(tmp_path / "bad.jdb", bad)
    info = inspect_bundle(tmp_path / "bad.jdb")
    assert info["integrity"]["ok"] is False
    assert any("labels.txt: size mismatch" in p for p in info["integrity"]["problems"])
    assert any("extra.bin: unlisted" in p for p in info["integrity"]["problems"])


def test_random_corruption_never_escapes_or_crashes(tmp_path):
    """Seeded single-byte corruptions: unpacking either refuses cleanly (CheckFailed/BadInput)
    or yields a bundle that verifies: the original (the byte hit padding) or one whose
    manifest.json text was edited into another valid manifest; nothing else happens."""
    import random

    d = make_bundle(tmp_path / "demo-0.1.0", onnx_size=3000)
    pack_bundle(d, tmp_path / "ok.jdb")
    good = (tmp_path / "ok.jdb").read_bytes()
    want = open_bundle(d).sha256
    rng = random.Random(7)
    # bias half the hits towards the header blocks, where tar parsing happens
    headers = [i for i in range(0, len(good), 512) if good[i:i + 1] not in (b"\0",)]
    outcomes = {"refused": 0, "same": 0}
    for n in range(60):
        data = bytearray(good)
        pos = rng.choice(headers) + rng.randrange(512) if n % 2 == 0 else rng.randrange(len(good))
        data[pos] = (data[pos] + rng.randrange(1, 256)) % 256
        arc = tmp_path / "c{}.jdb".format(n)
        arc.write_bytes(bytes(data))
        dest = tmp_path / "o{}".format(n)
        try:
            out = unpack_archive(arc, dest)
        except (CheckFailed, BadInput):
            outcomes["refused"] += 1
            assert not dest.exists()
            continue
        got = open_bundle(out).sha256
        if got != want:
            # only a still-valid edit of manifest.json itself can pass verification (a signature catches that)
            manifest_size = os.path.getsize(str(d / "manifest.json"))
            assert 512 <= pos < 512 + manifest_size, pos
        outcomes["same"] += 1
    assert outcomes["refused"] > 10
    import re

    assert sorted(p.name for p in tmp_path.iterdir() if not re.match(r"^[co]\d+", p.name)) == ["demo-0.1.0", "ok.jdb"]


def test_flat_tar_in_any_member_order_unpacks(tmp_path):
    """tar -cf x.tar -C dir engines labels.txt manifest.json: first member in a subdirectory."""
    import subprocess

    d = make_bundle(tmp_path / "src")
    names = sorted(p.name for p in d.iterdir())
    names.sort(key=lambda n: (n == "manifest.json", n))  # manifest last, directories first
    arc = tmp_path / "flat.tar"
    subprocess.run(["tar", "-cf", str(arc), "-C", str(d)] + names, check=True)
    out = unpack_archive(arc, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in d.iterdir())
    assert open_bundle(arc).name == open_bundle(d).name


# Every path that unpacks an archive gets every hostile case: the library call, opening a packed
# bundle (extracted to a temp dir), the CLI's unpack/verify, and deploy --rootfs of a .jdb file.
def _via_unpack(arc, tmp_path):
    with pytest.raises(CheckFailed):
        unpack_archive(arc, tmp_path / "dest")


def _via_open(arc, tmp_path):
    with pytest.raises(CheckFailed):
        open_bundle(arc)


def _via_open_local(arc, tmp_path):
    from jetson_deploy.deploy import open_local_bundle

    with pytest.raises(CheckFailed):
        with open_local_bundle(str(arc)):
            pass


def _cli(args):
    from support.deploy import out, runner
    from jetson_deploy.cli import cli

    res = runner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 1, (res.exit_code, out(res))


def _via_cli_unpack(arc, tmp_path):
    _cli(["bundle", "unpack", arc, "-o", tmp_path / "dest"])


def _via_cli_verify(arc, tmp_path):
    _cli(["bundle", "verify", arc])


def _via_deploy_rootfs(arc, tmp_path):
    (tmp_path / "rootfs").mkdir()
    _cli(["deploy", arc, "--rootfs", tmp_path / "rootfs", "-q"])
    assert not (tmp_path / "rootfs" / "opt").exists() or not any((tmp_path / "rootfs" / "opt").rglob("manifest.json"))


UNPACKERS = {"unpack_archive": _via_unpack, "open_bundle": _via_open, "open_local_bundle": _via_open_local,
             "cli-unpack": _via_cli_unpack, "cli-verify": _via_cli_verify, "deploy-rootfs": _via_deploy_rootfs}


@pytest.mark.parametrize("path", sorted(UNPACKERS))
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_every_unpacking_path_refuses_hostile_archives(tmp_path, case, path):
    build, _expect = HOSTILE[case]
    work = tmp_path / "w"
    work.mkdir()
    arc = _tar(work / "evil.jdb", build(_manifest_member(tmp_path)))
    UNPACKERS[path](arc, work)
    assert not (work / "dest").exists()
    for escaped in (tmp_path / "jd-evil", tmp_path.parent / "jd-evil", "/tmp/jd-evil", "/tmp/jd-evil-abs"):
        assert not os.path.lexists(str(escaped)), escaped
    assert sorted(p.name for p in work.iterdir()) in (["evil.jdb"], ["evil.jdb", "rootfs"])
