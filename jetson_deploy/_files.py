"""Atomic writes, the output policy and streaming hashes: nothing we write is half-written,
and nothing we did not make is replaced.

Everything goes to a temporary path beside the target and is renamed into place,
so an interrupted run leaves either the old file/directory or the new one.  Before
an existing output is replaced, :func:`prepare_output` checks that this tool made it
(a bundle, a calibration set, a packed bundle): ``-o`` never destroys user data.
Temporary names are short (``.jd-PID-XXXX.partial``) so a long output name still
fits in 255 bytes, and carry the PID so a later run can remove those of a killed one.
"""
import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from .errors import BadInput

PathLike = Union[str, "os.PathLike[str]"]
CHUNK = 1 << 20
TEMP_PREFIX = ".jd-"  # beside an output: .jd-PID-XXXXXXXX.{partial,old,tmp}
TEMP_SUFFIXES = (".partial", ".old", ".tmp")

# What each kind of output looks like when this tool made it (see prepare_output).
BUNDLE, CALIBRATION_SET, PACKED, FILE = "bundle", "calibration set", "packed bundle", "file"


def sha256_file(path: "PathLike") -> str:
    """Streamed sha256 of a file (bundles hold engines of hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- the output policy ----------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > (16 << 20):
            return None
        with open(str(path), "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def is_bundle_dir(path: "PathLike") -> bool:
    """A directory whose manifest.json is a jetson-deploy bundle manifest (our marker)."""
    m = _read_json(Path(path) / "manifest.json")
    return isinstance(m, dict) and m.get("format") == "jetson-deploy-bundle" and isinstance(m.get("artifacts"), list)


def is_calibration_dir(path: "PathLike") -> bool:
    m = _read_json(Path(path) / "manifest.json")
    return isinstance(m, dict) and m.get("kind") == "calibration-set"


def is_packed_bundle(path: "PathLike") -> bool:
    """A tar whose first member is ``NAME-VERSION/manifest.json`` (how pack_bundle writes it)."""
    try:
        with tarfile.open(str(path), mode="r|*") as tar:
            first = tar.next()
    except (OSError, tarfile.TarError, EOFError, ValueError):
        return False
    if first is None or not first.isfile():
        return False
    parts = first.name.split("/")
    return len(parts) == 2 and parts[1] == "manifest.json" and "-" in parts[0]


def _ours(path: Path, kind: str, st: "os.stat_result") -> bool:
    if stat.S_ISDIR(st.st_mode):
        if kind == BUNDLE and is_bundle_dir(path):
            return True
        if kind == CALIBRATION_SET and is_calibration_dir(path):
            return True
        with contextlib.suppress(OSError):
            return not any(True for _ in os.scandir(str(path))) and kind in (BUNDLE, CALIBRATION_SET)
        return False
    if stat.S_ISREG(st.st_mode):
        if kind == FILE:
            return True
        return kind == PACKED and (st.st_size == 0 or is_packed_bundle(path))
    return False


def is_utf8_path(path: "Any") -> bool:
    """Whether ``path`` can be handed to OpenCV/FFmpeg: a non-UTF-8 name crashes them (segfault)."""
    s = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\0" not in s


def check_path(path: "PathLike", what: str = "path") -> Path:
    """Refuse a path a system call would choke on (not UTF-8, too long, NUL) with one line."""
    s = os.fspath(path)
    if isinstance(s, bytes):
        s = os.fsdecode(s)
    if s == "":
        raise BadInput("{} is empty: give a file or directory".format(what))
    if "\0" in s:
        raise BadInput("{} contains a NUL byte".format(what))
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput("{} {!r} is not valid UTF-8: rename it".format(what, s))
    if len(os.fsencode(s)) >= 4096:
        raise BadInput("{} is {} bytes long (the limit is 4095): use a shorter path".format(what, len(os.fsencode(s))))
    if any(len(os.fsencode(p)) > 255 for p in s.split(os.sep)):
        raise BadInput("{}: a name in {!r} is over 255 bytes: use a shorter name".format(what, s[:80] + "..."))
    return Path(s)


def prepare_output(path: "PathLike", kind: str, flag: str = "-o") -> Path:
    """Check that ``path`` may be written as a ``kind`` output; return it.

    A new path is fine.  An existing one may be replaced only if this tool made it
    (a bundle directory, a calibration set, a packed bundle; an empty directory or
    file too): anything else -- a user's directory, a device node, the current
    directory -- is refused with exit 2 naming the path.  Stale temporaries of
    killed runs beside it are removed.
    """
    path = check_path(path, "{} {}".format(flag, path) if flag else str(path))
    if path.name in ("", ".", "..") or _is_cwd_or_above(path):
        raise BadInput("{} {}: give a new name for the {} (not the current directory or one above it)".format(flag, path, kind))
    try:
        st = os.stat(str(path))
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise BadInput("{} {}: a parent of it is a file, not a directory".format(flag, path))
    except OSError as exc:
        raise BadInput("{} {}: {}".format(flag, path, exc.strerror or exc))
    if st is not None and not _ours(path, kind, st):
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise BadInput("{} {} is not a regular file or directory (a device, pipe or socket): it is never replaced; "
                           "give a new path".format(flag, path))
        raise BadInput("{} {} exists and is not a {} made by jetson-deploy: refusing to replace it; give a new path "
                       "or remove it yourself".format(flag, path, kind))
    if path.parent.is_dir():
        clean_stale_temps(path.parent)
    return path


def _is_cwd_or_above(path: Path) -> bool:
    try:
        target, cwd = os.path.realpath(str(path)), os.path.realpath(os.getcwd())
    except OSError:
        return False
    return cwd == target or cwd.startswith(target.rstrip(os.sep) + os.sep)


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists (stale temporaries of dead runs may be removed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, but not ours to signal
    return True


def clean_stale_temps(directory: "PathLike") -> int:
    """Remove ``.jd-PID-*`` temporaries in ``directory`` whose process is gone (killed runs)."""
    n = 0
    try:
        entries = list(os.scandir(str(directory)))
    except OSError:
        return 0
    for e in entries:
        if not e.name.startswith(TEMP_PREFIX):
            continue
        pid = e.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            n += 1
    return n


def _temp_prefix() -> str:
    return "{}{}-".format(TEMP_PREFIX, os.getpid())


def temp_sibling(path: "PathLike", suffix: str = "") -> Path:
    """A short temporary name beside ``path`` (fits however long ``path``'s name is), e.g. for a writer
    that needs the real suffix (``.mp4``) to pick its format."""
    path = Path(path)
    tag = hashlib.sha1(os.fsencode(path.name)).hexdigest()[:8]
    return path.with_name("{}{}.partial{}".format(_temp_prefix(), tag, suffix))


# ---- atomic writes ----------------------------------------------------------------------------
def atomic_write_bytes(path: "PathLike", data: bytes) -> Path:
    with atomic_output(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: "PathLike", text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: "PathLike", obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_output(path: "PathLike", mode: str = "wb", kind: "Optional[str]" = None) -> "Iterator[Any]":
    """Open a temp file beside ``path``; rename it into place only on success.

    With ``kind`` the output policy is checked first (:func:`prepare_output`).
    """
    path = prepare_output(path, kind) if kind else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind is None and path.exists() and not path.is_file() and not path.is_symlink():
        raise BadInput("{} is not a regular file: it is never replaced".format(path))
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(), suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, str(path))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_dir(path: "PathLike", overwrite: bool = True, kind: "Optional[str]" = None) -> "Iterator[Path]":
    """Build a directory under a temp name beside ``path``, then swap it in.

    Yields the temp directory to fill.  On error the temp directory is removed and
    any existing ``path`` is untouched.  With ``overwrite`` an existing ``path`` is
    replaced (moved aside first, removed after the rename succeeds); with ``kind``
    only if the output policy allows it (:func:`prepare_output`).
    """
    path = prepare_output(path, kind) if kind else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(), suffix=".partial", dir=str(path.parent)))
    os.chmod(str(tmp), 0o777 & ~_umask())  # mkdtemp makes 0700; a bundle must be readable like any mkdir
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(str(tmp), ignore_errors=True)
        raise
    try:
        _swap_in(tmp, path, overwrite, kind)
    except BaseException:
        shutil.rmtree(str(tmp), ignore_errors=True)
        raise


def _swap_in(tmp: Path, path: Path, overwrite: bool, kind: "Optional[str]") -> None:
    old = None
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(errno.EEXIST, "already exists", str(path))
        if kind:
            prepare_output(path, kind)  # still ours (it may have changed while we worked)
        old = Path(tempfile.mkdtemp(prefix=_temp_prefix(), suffix=".old", dir=str(path.parent)))
        os.rmdir(str(old))
        os.replace(str(path), str(old))
    os.replace(str(tmp), str(path))
    _fsync_dir(path.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(str(old), ignore_errors=True)
        else:
            old.unlink()


# ---- reading what was verified ---------------------------------------------------------------
_PROC_FD = "/proc/self/fd"


class DirHandle(object):
    """A directory opened once: every later read goes through this handle, never through the
    path it was opened by again, so a symlink flipped (or a directory renamed) after a check
    cannot change what is read (``openat`` with ``O_NOFOLLOW`` on every component).

    ``path`` names the handle itself (``/proc/self/fd/N`` on Linux) for code that wants a path
    to the same directory in this process; ``real`` is where it was when opened (messages,
    subprocesses).  Where ``/proc`` is missing both are the resolved path.
    """

    def __init__(self, path: "PathLike") -> None:
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
        self.fd = os.open(str(path), flags)  # follows a symlink once: this directory from now on
        proc = "{}/{}".format(_PROC_FD, self.fd)
        try:
            self.real = Path(os.readlink(proc))
            self.path = Path(proc)
        except OSError:  # no /proc (not Linux): the resolved path is the best there is
            self.real = Path(os.path.realpath(str(path)))
            self.path = self.real

    def _walk(self, rel: str) -> "tuple":
        """(fd of the parent directory of REL, its last name); no component may be a symlink."""
        parts = rel.split("/")
        cur = os.dup(self.fd)
        try:
            for seg in parts[:-1]:
                nxt = os.open(seg, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0), dir_fd=cur)
                os.close(cur)
                cur = nxt
        except BaseException:
            os.close(cur)
            raise
        return cur, parts[-1]

    def lstat(self, rel: str) -> "os.stat_result":
        """lstat of REL below the handle; a symlinked parent is ELOOP/ENOTDIR, as missing."""
        parent, name = self._walk(rel)
        try:
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(parent)

    def open(self, rel: str) -> int:
        """A read-only fd of the regular file REL below the handle (no symlink followed, a FIFO
        never blocks); OSError otherwise (ELOOP for a link, EINVAL for a special file)."""
        parent, name = self._walk(rel)
        try:
            fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                         | getattr(os, "O_CLOEXEC", 0), dir_fd=parent)
        finally:
            os.close(parent)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file", rel)
        return fd

    def read_bytes(self, rel: str, limit: int) -> bytes:
        """REL's bytes (at most LIMIT; more is ValueError), read once through the handle."""
        fd = self.open(rel)
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ValueError("{} is larger than {} bytes".format(rel, limit))
        return data

    def sha256(self, rel: str) -> "tuple":
        """(size, sha256) of REL, streamed through one fd opened below the handle."""
        fd = self.open(rel)
        h = hashlib.sha256()
        n = 0
        with os.fdopen(fd, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                h.update(block)
                n += len(block)
        return n, h.hexdigest()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def read_text_file(path: "PathLike", what: str, limit: int) -> str:
    """A text input (a host list, an inventory) read whole: a regular file (never a FIFO that blocks
    or a device that never ends), at most LIMIT bytes, UTF-8; BadInput naming WHAT otherwise."""
    try:
        fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise BadInput("cannot read {} {}: {}".format(what, path, exc.strerror or exc))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadInput("{} {} is not a regular file (a device, pipe or directory): give a text file".format(what, path))
        data = f.read(limit + 1)
    if len(data) > limit:
        raise BadInput("{} {} is larger than {} bytes: is it really a {}?".format(what, path, limit, what))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("{} {} is not UTF-8 text".format(what, path))
