"""Atomic writes and streaming hashes: nothing we write is ever half-written.

Everything goes to a temporary path beside the target and is renamed into place,
so an interrupted run leaves either the old file/directory or the new one.
"""
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]
CHUNK = 1 << 20


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


def atomic_write_bytes(path: "PathLike", data: bytes) -> Path:
    with atomic_output(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: "PathLike", text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: "PathLike", obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_output(path: "PathLike", mode: str = "wb") -> "Iterator[Any]":
    """Open a temp file beside ``path``; rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=str(path.parent))
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
def atomic_dir(path: "PathLike", overwrite: bool = True) -> "Iterator[Path]":
    """Build a directory under a temp name beside ``path``, then swap it in.

    Yields the temp directory to fill.  On error the temp directory is removed and
    any existing ``path`` is untouched.  With ``overwrite`` an existing ``path`` is
    replaced (moved aside first, removed after the rename succeeds).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="." + path.name + ".", suffix=".partial", dir=str(path.parent)))
    os.chmod(str(tmp), 0o777 & ~_umask())  # mkdtemp makes 0700; a bundle must be readable like any mkdir
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(str(tmp), ignore_errors=True)
        raise
    old = None
    if path.exists() or path.is_symlink():
        if not overwrite:
            shutil.rmtree(str(tmp), ignore_errors=True)
            raise FileExistsError(str(path))
        old = Path(tempfile.mkdtemp(prefix="." + path.name + ".", suffix=".old", dir=str(path.parent)))
        os.rmdir(str(old))
        os.replace(str(path), str(old))
    os.replace(str(tmp), str(path))
    _fsync_dir(path.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(str(old), ignore_errors=True)
        else:
            old.unlink()
