"""Tar I/O for packed bundles: deterministic writing, safe extraction, reading the index.

Plain I/O with no notion of a verified bundle: :mod:`.archive` packs an opened
bundle through :func:`write_archive` and verifies what :func:`extract_archive`
wrote; :func:`~.reader.open_bundle` extracts packed bundles with it.

The packed form is a plain POSIX tar (GNU header format, no compression, no pax
records) whose members all sit under ``NAME-VERSION/``:
``manifest.json`` first, then ``manifest.sig`` if present, then the artifacts
sorted by path; every member has mtime 0, uid/gid 0, empty user/group names and
mode 0644; no directory entries.  Same bundle, same bytes.

Unpacking never trusts the archive: a first pass over the member headers refuses
members that are absolute, contain ``..`` or odd characters, are links, devices,
FIFOs or sparse files, are duplicated, exceed the caller's bounds, or are not
exactly what the manifest lists (name and size), and checks the free space; only
then are members streamed out, each bounded by its manifest size.
Files are created with ``O_EXCL|O_NOFOLLOW`` inside a temporary directory that
is swapped into place only when the whole archive was read.
"""
import contextlib
import hashlib
import os
import stat
import tarfile
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Set, Union

from .._files import BUNDLE, CHUNK, PACKED, atomic_dir, atomic_output
from ..errors import BadInput, CheckFailed
from .manifest import MANIFEST, SIGNATURE, check_relpath, parse_manifest, validate_manifest

#: Defaults for unpacking; pass other bounds to :func:`unpack_archive`.
MAX_MEMBER_BYTES = 16 << 30
MAX_TOTAL_BYTES = 32 << 30
MAX_MEMBERS = 10000
FIXED_MTIME = 0
MAX_MANIFEST_BYTES = 16 << 20

PathLike = Union[str, "os.PathLike[str]"]


class _HashingReader:
    """File wrapper that hashes what tarfile reads through it (one pass, streamed)."""

    def __init__(self, f: "IO[bytes]") -> None:
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.h.update(data)
        self.n += len(data)
        return data


class _TarInfo(tarfile.TarInfo):
    """TarInfo whose headers are the same bytes under every Python.

    Before 3.9, tarfile wrote ``devmajor``/``devminor`` as octal zeros for every
    member; 3.9+ leaves them empty unless the member is a device (CPython
    ``Lib/tarfile.py``, bpo-41316 era change).  Bundles only hold regular files,
    so blank the fields and recompute the checksum: a bundle packed on the Nano
    (3.6) and on a workstation (3.11) has one sha256.
    """

    @staticmethod
    def _create_header(info: "Dict[str, Any]", format: int, encoding: str, errors: str) -> bytes:  # noqa: A002
        buf = tarfile.TarInfo._create_header(info, format, encoding, errors)
        if info.get("type", tarfile.REGTYPE) in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            return buf
        buf = buf[:329] + b"\0" * 16 + buf[345:]
        chksum = 256 + sum(buf[:148]) + sum(buf[156:512])  # the chksum field counts as 8 spaces
        return buf[:148] + "{:06o}\0".format(chksum).encode("ascii") + buf[155:]


def _tarinfo(name: str, size: int) -> "tarfile.TarInfo":
    ti = _TarInfo(name)
    ti.size = size
    ti.mtime = FIXED_MTIME
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = tarfile.REGTYPE
    return ti


def write_archive(
    out_file: "PathLike",
    root: Path,
    prefix: str,
    rels: "List[str]",
    on_member: "Optional[Callable[[str, int, str], None]]" = None,
) -> int:
    """Write ``root/REL`` for each of ``rels`` as ``PREFIX/REL`` into a deterministic tar; return content bytes.

    Each file is streamed once; ``on_member(rel, bytes_read, sha256)`` runs after each
    member so the caller can refuse what it read (raise), and then no output is left.
    """
    total = 0
    with atomic_output(Path(out_file), "wb", kind=PACKED) as f:
        tar = tarfile.open(fileobj=f, mode="w", format=tarfile.GNU_FORMAT)
        try:
            for rel in rels:
                path = root / rel
                size = os.stat(str(path)).st_size
                with open(str(path), "rb") as src:
                    reader = _HashingReader(src)
                    tar.addfile(_tarinfo(prefix + "/" + rel, size), reader)
                total += size
                if on_member is not None:
                    on_member(rel, reader.n, reader.h.hexdigest())
        finally:
            tar.close()
    return total


def _mkdirs(root: Path, parts: list, made: "Set[str]") -> Path:
    cur = root
    for i, seg in enumerate(parts):
        cur = cur / seg
        key = "/".join(parts[: i + 1])
        if key in made:
            continue
        try:
            os.mkdir(str(cur), 0o755)
        except FileExistsError:
            st = os.lstat(str(cur))
            if not stat.S_ISDIR(st.st_mode):
                raise CheckFailed("member directory {} collides with a file".format(key))
        made.add(key)
    return cur


def extract_archive(
    archive: "PathLike",
    dest: "PathLike",
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_members: int = MAX_MEMBERS,
    overwrite: bool = False,
    before_swap: "Optional[Callable[[Path], None]]" = None,
) -> Path:
    """Extract a packed bundle into the directory ``dest`` (created atomically); return it.

    Two passes over one open file.  The first reads member headers only (no data is written):
    each member must be structurally sound, the manifest must parse and validate, and every
    member must be the manifest, its signature or an artifact it lists, of exactly the size it
    lists; the free space where ``dest`` goes must hold them.  The second pass extracts, each
    member bounded by its manifest size, so a 2 GiB member of zeros the manifest does not list
    is refused before a byte of it is written.

    Members must all sit under one top-level directory (stripped) or all at the
    top level.  Refused (CheckFailed, nothing written at ``dest``): absolute
    paths, ``.``/``..`` segments, characters outside ``A-Za-z0-9._+-/``,
    symlinks, hard links, devices, FIFOs, sparse or other special members,
    duplicate names, a member over ``max_member_bytes``, more than
    ``max_total_bytes`` in all or more than ``max_members`` members, a member the
    manifest does not list or of another size.  Not enough free space is BadInput.
    ``before_swap(tmp)`` may refuse the extracted tree (raise) before it appears at ``dest``.
    """
    archive = Path(archive)
    source = str(archive)
    if not archive.exists():
        raise BadInput("bundle archive {} does not exist".format(source))
    if archive.is_dir():
        raise BadInput("{} is a directory; unpack takes a packed .jdb/.tar file".format(source))
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise BadInput("{} already exists; pick a new output directory".format(dest))
    f = open_archive(archive)
    try:
        caps = _Caps(max_member_bytes, max_total_bytes, max_members)
        limits = _precheck(f, source, caps)
        _check_free_space(dest, sum(limits.values()), source)
        f.seek(0)
        try:
            tar = tarfile.open(fileobj=f, mode="r|*")
        except tarfile.TarError as exc:
            raise BadInput("{} is not a bundle directory or a packed .jdb/.tar file ({})".format(source, exc))
        with atomic_dir(dest, overwrite=overwrite, kind=BUNDLE) as tmp:
            _extract_members(tar, tmp, source, caps, limits)
            if before_swap is not None:
                before_swap(tmp)
    finally:
        f.close()
    return dest


def open_archive(archive: Path) -> "IO[bytes]":
    """The packed bundle opened for reading: a regular file only (a FIFO would block, a device
    never end); BadInput naming it otherwise."""
    try:
        fd = os.open(str(archive), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise BadInput("cannot read {}: {}".format(archive, exc.strerror or exc))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BadInput("{} is not a bundle directory or a packed .jdb/.tar file (a device, pipe or socket)".format(archive))
    return os.fdopen(fd, "rb")


class _Caps(object):
    """The caller's bounds (``--max-size``); the manifest's own sizes bound each member further."""

    def __init__(self, member: int, total: int, members: int) -> None:
        self.member, self.total, self.members = member, total, members


def _refusal(source: str, name: str, why: str) -> "CheckFailed":
    return CheckFailed("{}: archive member {!r}: {}; refusing to unpack".format(source, name, why))


def _member_name(m: "tarfile.TarInfo", source: str) -> "Optional[str]":
    """The member's relative name, or None for a directory entry; CheckFailed for anything that is
    not a plain file at a plain relative path."""
    name = m.name[2:] if m.name.startswith("./") else m.name
    name = name.rstrip("/") if m.type == tarfile.DIRTYPE else name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise _refusal(source, m.name, "absolute path")
    if ".." in name.split("/"):
        raise _refusal(source, m.name, "'..' in path")
    kinds = {tarfile.SYMTYPE: "symbolic link", tarfile.LNKTYPE: "hard link", tarfile.CHRTYPE: "device file",
             tarfile.BLKTYPE: "device file", tarfile.FIFOTYPE: "FIFO"}
    if m.type in kinds:
        raise _refusal(source, m.name, kinds[m.type])
    if m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE) or m.issparse():
        raise _refusal(source, m.name, "special member type {!r}".format(m.type))
    try:
        check_relpath(name, "path")
    except BadInput as exc:
        raise _refusal(source, m.name, str(exc))
    return None if m.type == tarfile.DIRTYPE else name


def _precheck(f: "IO[bytes]", source: str, caps: "_Caps") -> "Dict[str, int]":
    """Headers only: {member name as stored: size the manifest gives it}; CheckFailed for a member
    that is unsound, over a bound, or not the manifest's."""
    try:
        tar = tarfile.open(fileobj=f, mode="r:*")
    except tarfile.TarError as exc:
        raise BadInput("{} is not a bundle directory or a packed .jdb/.tar file ({})".format(source, exc))
    sizes: "Dict[str, int]" = {}
    small: "Dict[str, bytes]" = {}
    total = 0
    with _archive_errors(source):
        for count, m in enumerate(tar, 1):
            if count > caps.members:
                raise CheckFailed("{}: more than {} members; refusing to unpack".format(source, caps.members))
            name = _member_name(m, source)
            if name is None:
                continue
            if name in sizes:
                raise _refusal(source, m.name, "duplicate name")
            if m.size < 0 or m.size > caps.member:
                raise _refusal(source, m.name, "{} bytes is over the {}-byte member limit".format(m.size, caps.member))
            total += m.size
            if total > caps.total:
                raise _refusal(source, m.name, "archive content over the {}-byte total limit".format(caps.total))
            sizes[name] = m.size
            if name.rsplit("/", 1)[-1] in (MANIFEST, SIGNATURE) and name.count("/") <= 1 and m.size <= MAX_MANIFEST_BYTES:
                data = tar.extractfile(m)
                small[name] = data.read() if data is not None else b""
    if not sizes:
        raise CheckFailed("{}: empty archive".format(source))
    return _against_manifest(sizes, small, source)


def _against_manifest(sizes: "Dict[str, int]", small: "Dict[str, bytes]", source: str) -> "Dict[str, int]":
    prefix = _top_level(set(sizes), source)
    raw = small.get(prefix + MANIFEST)
    if raw is None:
        raise CheckFailed("{}: manifest.json is larger than {} bytes; refusing to unpack".format(source, MAX_MANIFEST_BYTES))
    manifest = parse_manifest(raw, source)
    validate_manifest(manifest, source, error=CheckFailed)
    want = {prefix + a["path"]: int(a["size"]) for a in manifest["artifacts"]}
    want[prefix + MANIFEST] = len(raw)
    if prefix + SIGNATURE in sizes:
        want[prefix + SIGNATURE] = min(sizes[prefix + SIGNATURE], 64 * 1024)
    for name in sorted(sizes):
        if name not in want:
            raise _refusal(source, name, "not listed in manifest.json ({} bytes)".format(sizes[name]))
        if sizes[name] != want[name]:
            raise _refusal(source, name, "{} bytes, manifest.json lists {}".format(sizes[name], want[name]))
    return {n: want[n] for n in sizes}


def _check_free_space(dest: Path, need: int, source: str) -> None:
    """BadInput unless the file system where DEST will be has NEED bytes free (and a margin)."""
    place = dest.parent
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        st = os.statvfs(str(place))
    except (OSError, AttributeError):  # no statvfs: the write itself will say
        return
    free = st.f_bavail * st.f_frsize
    if need + (1 << 20) > free:
        raise BadInput("not enough free space in {} to unpack {}: it needs {:.1f} MiB, {:.1f} MiB are free "
                       "(set TMPDIR to a larger disk, or free space)".format(place, source, need / 1048576.0, free / 1048576.0))


@contextlib.contextmanager
def _archive_errors(source: str) -> "Iterator[None]":
    """tarfile's errors while reading members, as one line naming the archive."""
    try:
        yield
    except tarfile.TarError as exc:
        raise CheckFailed("{}: damaged or truncated archive ({})".format(source, exc))
    except EOFError:
        raise CheckFailed("{}: truncated archive".format(source))


def _extract_members(tar: "tarfile.TarFile", tmp: Path, source: str, caps: "_Caps", limits: "Dict[str, int]") -> None:
    seen: "Set[str]" = set()
    made: "Set[str]" = set()
    with _archive_errors(source):
        for m in tar:
            name = _member_name(m, source)
            if name is None:
                continue
            if name in seen:
                raise _refusal(source, m.name, "duplicate name")
            seen.add(name)
            if name not in limits or m.size != limits[name]:  # the file changed since the first pass
                raise _refusal(source, m.name, "not what the archive held a moment ago")
            parts = name.split("/")
            parent = _mkdirs(tmp, parts[:-1], made)
            src = tar.extractfile(m)
            if src is None:
                raise _refusal(source, m.name, "cannot be read")
            _write_member(src, parent / parts[-1], m, source)
    if not seen:
        raise CheckFailed("{}: empty archive".format(source))
    _hoist_wrapper(tmp, source)


def _write_member(src: "IO[bytes]", target: Path, m: "tarfile.TarInfo", source: str) -> None:
    try:
        fd = os.open(str(target), os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except FileExistsError:
        raise _refusal(source, m.name, "duplicate name")
    except (IsADirectoryError, NotADirectoryError):
        raise _refusal(source, m.name, "collides with a directory")
    written = 0
    with os.fdopen(fd, "wb") as out:
        while True:
            block = src.read(CHUNK)
            if not block:
                break
            written += len(block)
            if written > m.size:
                raise _refusal(source, m.name, "more data than its header says")
            out.write(block)
    if written != m.size:
        raise _refusal(source, m.name, "truncated ({} of {} bytes)".format(written, m.size))


def _top_level(names: "Set[str]", source: str) -> str:
    """'' for a flat archive, 'DIR/' when everything sits under one DIR with the manifest.

    Decided from all member names, not the first one: tar order is free, and a flat
    archive may well start with ``engines/...``.
    """
    if MANIFEST in names:
        return ""
    tops = {n.split("/", 1)[0] for n in names}
    wrappers = [t for t in tops if t + "/" + MANIFEST in names]
    if len(wrappers) != 1:
        raise CheckFailed("{}: no manifest.json at the top level or under one top-level directory; not a bundle".format(source))
    others = sorted(n for n in names if not n.startswith(wrappers[0] + "/"))
    if others:
        raise CheckFailed(
            "{}: archive member {!r}: not under the top-level directory {}/; refusing to unpack".format(source, others[0], wrappers[0])
        )
    return wrappers[0] + "/"


def _hoist_wrapper(tmp: Path, source: str) -> None:
    """Move a single wrapping directory's contents up to the bundle root."""
    names = {str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()}
    prefix = _top_level(names, source)
    if not prefix:
        return
    inner = tmp / prefix.rstrip("/")
    moved = tmp / "wrapper~"  # '~' is not allowed in member names, so this cannot collide
    os.replace(str(inner), str(moved))
    for child in list(moved.iterdir()):
        os.replace(str(child), str(tmp / child.name))
    moved.rmdir()


def read_packed_index(archive: "PathLike", max_manifest_bytes: int = 16 << 20) -> "Dict[str, Any]":
    """Read a packed bundle's manifest, signature and member sizes without extracting it.

    Returns ``{"manifest": bytes, "signature": bytes | None, "sizes": {path: size},
    "problems": [str]}`` where problems name members that unpacking would refuse.
    Raises BadInput when the file is not a tar, CheckFailed when it has no manifest.
    """
    archive = Path(archive)
    source = str(archive)
    f = open_archive(archive)
    try:
        tar = tarfile.open(fileobj=f, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        f.close()
        raise BadInput("{} is not a bundle directory or a packed .jdb/.tar file ({})".format(source, exc))
    out: "Dict[str, Any]" = {"manifest": None, "signature": None, "sizes": {}, "problems": []}
    sizes: "Dict[str, int]" = {}
    small: "Dict[str, bytes]" = {}
    try:
        for m in tar:
            name = m.name[2:] if m.name.startswith("./") else m.name
            if m.type == tarfile.DIRTYPE:
                continue
            if m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or m.issparse():
                out["problems"].append("archive member {!r}: not a regular file".format(m.name))
                continue
            try:
                check_relpath(name, "archive member")
            except BadInput as exc:
                out["problems"].append(str(exc))
                continue
            if name in sizes:
                out["problems"].append("archive member {!r}: duplicate name".format(m.name))
            sizes[name] = m.size
            if name.rsplit("/", 1)[-1] in (MANIFEST, SIGNATURE) and name.count("/") <= 1:
                if m.size > max_manifest_bytes:
                    out["problems"].append("{}: {} bytes is too large".format(name, m.size))
                    continue
                member = tar.extractfile(m)  # not ``f``: that is the archive, closed below
                small[name] = member.read() if member is not None else b""
    except (tarfile.TarError, EOFError) as exc:
        raise CheckFailed("{}: damaged or truncated archive ({})".format(source, exc))
    finally:
        tar.close()
        f.close()
    try:
        prefix = _top_level(set(sizes), source)
    except CheckFailed as exc:
        if not any(n.rsplit("/", 1)[-1] == MANIFEST for n in sizes):
            raise CheckFailed("{}: packed bundle has no manifest.json".format(source))
        out["problems"].append(str(exc).split(": ", 1)[1])
        prefix = ""
    out["sizes"] = {n[len(prefix):]: v for n, v in sizes.items() if n.startswith(prefix)}
    out["manifest"] = small.get(prefix + MANIFEST)
    out["signature"] = small.get(prefix + SIGNATURE)
    if out["manifest"] is None:
        raise CheckFailed("{}: packed bundle has no manifest.json".format(source))
    return out
