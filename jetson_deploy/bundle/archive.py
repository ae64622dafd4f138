"""Packing a verified bundle into one file, and unpacking one back into a verified directory.

The entry points over :mod:`.pack` (tar I/O) and :mod:`.reader` (verification):
the reader decides what a sound bundle is, the tar layer only moves bytes.
"""
import os
import tarfile
from pathlib import Path
from typing import Any, Dict, Optional, Union

from ..errors import BadInput, CheckFailed
from .manifest import MANIFEST, SIGNATURE
from .pack import MAX_MEMBER_BYTES, MAX_MEMBERS, MAX_TOTAL_BYTES, extract_archive, write_archive
from .reader import Bundle, open_bundle, read_manifest

PathLike = Union[str, "os.PathLike[str]"]


def pack_bundle(bundle_dir: "PathLike", out_file: "PathLike") -> "Dict[str, Any]":
    """Pack a bundle directory into one deterministic tar file; return a summary.

    The bundle is checked while it is streamed (each artifact hashed as it is
    written), so a bundle that does not match its manifest is never packed:
    CheckFailed names the artifact and no output file is left behind.
    """
    b = open_bundle(bundle_dir, verify=False)
    try:
        return _pack_opened(b, bundle_dir, Path(out_file))
    finally:
        b.close()


def _pack_opened(b: "Bundle", bundle_dir: "PathLike", out: Path) -> "Dict[str, Any]":
    if b.packed:
        raise BadInput("{} is already a packed bundle; pack takes a bundle directory".format(bundle_dir))
    try:
        out.resolve().relative_to(b.root.resolve())
        raise BadInput("output {} is inside the bundle directory {}; write it elsewhere".format(out, b.root))
    except ValueError:
        pass
    probs = b.problems(hash_files=False)  # cheap checks first; sha256 while streaming
    if probs:
        raise CheckFailed("{}: {}".format(b.source, probs[0]["message"]))
    prefix = "{}-{}".format(b.name, b.version)
    files = [MANIFEST] + ([SIGNATURE] if b.signed else []) + sorted(a["path"] for a in b.artifacts)
    expected = {a["path"]: a for a in b.artifacts}

    def check(rel: str, size: int, sha: str) -> None:
        art = expected.get(rel)
        if art is not None and (size != art["size"] or sha != art["sha256"]):
            raise CheckFailed("{}: artifact {}: sha256 mismatch (manifest {}..., file {}...); not packed".format(
                b.source, rel, art["sha256"][:12], sha[:12]))
        if rel == MANIFEST and sha != b.sha256:
            raise CheckFailed("{}: manifest.json changed while packing".format(b.source))

    # read through the handle the bundle was opened by: the files checked are the files packed
    total = write_archive(out, b.handle_path, prefix, files, on_member=check)
    return {"path": str(out), "bundle": prefix, "files": len(files), "content_bytes": total,
            "size": out.stat().st_size, "manifest_sha256": b.sha256}


def unpack_archive(
    archive: "PathLike",
    dest: "PathLike",
    verify: bool = True,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_members: int = MAX_MEMBERS,
    overwrite: bool = False,
) -> Path:
    """Extract a packed bundle safely into the new directory ``dest`` (see
    :func:`.pack.extract_archive` for what is refused); return it.

    With ``verify`` the extracted bundle is checked against its manifest before it
    appears at ``dest``: a bundle that does not verify is never unpacked.
    """
    source = str(archive)

    def check(tmp: Path) -> None:
        manifest, raw = read_manifest(tmp, source)
        b = Bundle(tmp, manifest, raw, source=source)
        try:
            b.verify()
        finally:
            b.close()

    return extract_archive(archive, dest, max_member_bytes=max_member_bytes, max_total_bytes=max_total_bytes,
                           max_members=max_members, overwrite=overwrite, before_swap=check if verify else None)


_BLOCK = 512


def archive_damage(archive: "PathLike") -> "Optional[str]":
    """One line saying how a packed bundle's tar stream is damaged, or None when every header is sound.

    ``tarfile`` reads a member header whose checksum does not match as the end of the archive, so
    one flipped byte makes every later member look absent ("artifact model.onnx: missing", "not
    signed"). Walking the headers ourselves (512-byte blocks: checksum, size, then the data blocks)
    tells a damaged archive from a bundle that lacks files. Compressed archives are not walked.
    """
    path = Path(archive)
    try:
        size = path.stat().st_size
        with open(str(path), "rb") as f:
            if f.read(2) == b"\x1f\x8b":  # gzip: its own CRC catches damage
                return None
            offset = 0
            while offset + _BLOCK <= size:
                f.seek(offset)
                header = f.read(_BLOCK)
                if header == b"\0" * _BLOCK:
                    return None  # the end-of-archive marker
                problem = _header_problem(header)
                if problem:
                    return _damaged(path, offset, problem)
                member = tarfile.nti(header[124:136])
                offset += _BLOCK + -(-member // _BLOCK) * _BLOCK
    except (OSError, tarfile.TarError, ValueError) as exc:
        return "{}: corrupt archive ({}): copy or pack the bundle again".format(path, exc)
    if offset > size or offset + _BLOCK > size:
        return "{}: corrupt archive: it ends inside a member or without the end-of-archive blocks (truncated at {} " \
               "bytes): copy or pack the bundle again".format(path, size)
    return None


def _header_problem(header: bytes) -> "Optional[str]":
    try:
        stored = tarfile.nti(header[148:156])
    except (tarfile.TarError, ValueError):
        return "unreadable checksum field"
    if stored not in tarfile.calc_chksums(header):
        return "checksum mismatch"
    return None


def _damaged(path: Path, offset: int, problem: str) -> str:
    return ("{}: corrupt archive: the tar header at byte {} is damaged ({}), so the members from there on cannot be "
            "read; copy or pack the bundle again".format(path, offset, problem))
