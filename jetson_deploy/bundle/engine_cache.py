"""The on-device engine cache: TensorRT plans built on the device, reused next time.

Entries are keyed by what makes a plan valid: the bundle's identity (sha256 of its
manifest.json), the TensorRT version, the GPU's SM, the precision and the input
shapes.  Layout under the cache root (``JETSON_DEPLOY_CACHE``, default
``~/.cache/jetson-deploy/engines``)::

    <key>.engine    the plan, written atomically (temp + rename)
    <key>.json      {"sha256", "size", "last_used", bundle name/version/sha, target, shapes}
    <key>.lock      flock so two processes never build the same key at once
    inductor/       torch inductor's own caches for the torch path (compiled kernels, Triton's
                    cubins), kept where a reboot keeps them; made with a marker, removed by clear()

Every hit re-checks size and sha256: a corrupt or truncated plan is removed and
reported as a miss (the caller rebuilds), never loaded.  The cache is bounded in
bytes (``JETSON_DEPLOY_CACHE_MAX``, e.g. ``2G``; default 4 GiB); the least recently
used entries are evicted after each store.
"""
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

from .._files import DirHandle, atomic_write_bytes, atomic_write_json
from ..errors import BadInput

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 4 << 30
#: the sub-directory holding torch inductor's own caches (see :meth:`EngineCache.tool_dir`)
INDUCTOR_DIR = "inductor"
_MARKER = ".made-by-jetson-deploy"
ORPHAN_AGE_S = 600
PathLike = Union[str, "os.PathLike[str]"]


def default_cache_dir() -> Path:
    env = os.environ.get("JETSON_DEPLOY_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "jetson-deploy" / "engines"


def parse_size(text: "Union[str, int]") -> int:
    """'4G', '512M', '100k', '123' -> bytes."""
    if isinstance(text, int):
        return text
    t = str(text).strip().upper().rstrip("B").rstrip("I")
    mult = 1
    if t and t[-1] in "KMGT":
        mult = 1 << (10 * ("KMGT".index(t[-1]) + 1))
        t = t[:-1]
    try:
        value = float(t)
    except ValueError:
        raise BadInput("cache size {!r} must look like 4G, 512M or a number of bytes".format(text))
    if value <= 0:
        raise BadInput("cache size {!r} must be positive".format(text))
    return int(value * mult)


def canonical_shapes(shapes: "Optional[Dict[str, Any]]") -> "Optional[Dict[str, List[int]]]":
    if shapes is None:
        return None
    if not isinstance(shapes, dict):
        raise BadInput("shapes must map input names to shapes, e.g. {'input': [1, 3, 224, 224]}")
    return {str(k): [int(x) for x in v] for k, v in sorted(shapes.items())}


def cache_key(bundle_sha256: str, tensorrt: str, sm: int, precision: str, shapes: "Optional[Dict[str, Any]]") -> str:
    """The key of a TensorRT plan built on this device."""
    return artifact_key({"bundle": bundle_sha256, "tensorrt": tensorrt, "sm": int(sm), "precision": precision,
                         "shapes": canonical_shapes(shapes)})


def artifact_key(fields: "Dict[str, Any]") -> str:
    """sha256 of the fields (JSON, sorted): one key space for TensorRT plans and compiled torch models,
    which differ in their fields (a torch entry carries ``kind``, GPU name, torch and Triton versions)."""
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


_KEY = re.compile(r"^[0-9a-f]{64}\Z")
# one handle per cache directory (device, inode) for the life of the process: plan paths handed
# out through it stay valid however long the caller keeps them
_HANDLES: "Dict[tuple, DirHandle]" = {}


def _dir_handle(root: Path) -> "Optional[DirHandle]":
    try:
        h = DirHandle(root)
    except OSError:
        return None
    st = os.fstat(h.fd)
    old = _HANDLES.get((st.st_dev, st.st_ino))
    if old is not None:
        h.close()
        return old
    _HANDLES[(st.st_dev, st.st_ino)] = h
    return h


def _lexists(h: "DirHandle", name: str) -> bool:
    try:
        h.lstat(name)
        return True
    except OSError:
        return False


class EngineCache:
    """Size-bounded, checksummed, LRU store of built engines."""

    def __init__(self, root: "Optional[PathLike]" = None, max_bytes: "Optional[Union[int, str]]" = None) -> None:
        self.root = Path(root).expanduser() if root else default_cache_dir()
        if max_bytes is None:
            env = os.environ.get("JETSON_DEPLOY_CACHE_MAX")
            max_bytes = parse_size(env) if env else DEFAULT_MAX_BYTES
        self.max_bytes = parse_size(max_bytes)
        self.last_event: "Optional[str]" = None  # "hit" | "miss" | "corrupt: <why>" (for reports and tests)

    # ---- paths -------------------------------------------------------------------------
    def engine_path(self, key: str) -> Path:
        return self.root / (key + ".engine")

    def meta_path(self, key: str) -> Path:
        return self.root / (key + ".json")

    def _ensure(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput("engine cache {} cannot be created ({}); set JETSON_DEPLOY_CACHE to a writable directory".format(self.root, exc.strerror))

    def tool_dir(self, name: str) -> Path:
        """A directory of this cache's own for another tool's caches (torch inductor's), made with a
        marker file so that :meth:`clear` removes only what it made; a link there is refused."""
        self._ensure()
        d = self.root / name
        if d.is_symlink() or (d.exists() and not d.is_dir()):
            raise BadInput("engine cache: {} is not a directory this tool made; remove it or set JETSON_DEPLOY_CACHE "
                           "elsewhere".format(d))
        if not d.is_dir():
            d.mkdir()
            (d / _MARKER).write_text("jetson-deploy made this directory; `jetson-deploy bundle cache clear` removes it\n")
        return d

    @contextlib.contextmanager
    def lock(self, key: str) -> "Iterator[None]":
        """Exclusive lock on one key (flock), so concurrent loads build once."""
        self._ensure()
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        fd = os.open(str(self.root / (key + ".lock")), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    # ---- entries -----------------------------------------------------------------------
    def _read_meta(self, key: str) -> "Optional[Dict[str, Any]]":
        try:
            meta = json.loads(self.meta_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) or not isinstance(meta.get("size"), int):
            return None
        return meta

    def remove(self, key: str) -> None:
        for p in (self.engine_path(key), self.meta_path(key)):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def get(self, key: str) -> "Optional[Path]":
        """The checked plan for ``key``, or None (missing or corrupt: then removed).

        Checked and returned through one handle of the cache directory (``/proc/self/fd/N/KEY.engine``
        on Linux, valid for the life of the process), with no symlink followed: a directory or
        symlink swapped after the check changes nothing the caller then reads."""
        eng = self.engine_path(key)
        meta = self._read_meta(key)
        h = _dir_handle(self.root)
        name = key + ".engine"
        if meta is None and (h is None or not _lexists(h, name)):
            self.last_event = "miss"
            return None
        why = self._problem(h, name, meta)
        if why:
            log.warning("cached engine %s is corrupt (%s): removed, it will be rebuilt", eng, why)
            self.remove(key)
            self.last_event = "corrupt: " + why
            return None
        assert meta is not None and h is not None
        meta["last_used"] = time.time()
        meta["hits"] = int(meta.get("hits", 0)) + 1
        try:
            atomic_write_json(self.meta_path(key), meta)
        except OSError:  # a read-only cache still serves hits
            pass
        self.last_event = "hit"
        return h.path / name

    @staticmethod
    def _problem(h: "Optional[DirHandle]", name: str, meta: "Optional[Dict[str, Any]]") -> "Optional[str]":
        if meta is None:
            return "no or unreadable metadata"
        try:
            st = h.lstat(name) if h is not None else None
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            return "plan file missing"
        if st.st_size != meta["size"]:
            return "size {} bytes, recorded {} (truncated?)".format(st.st_size, meta["size"])
        try:
            size, sha = h.sha256(name)  # type: ignore[union-attr]
        except OSError:
            return "plan file missing"
        if size != meta["size"] or sha != meta["sha256"]:
            return "sha256 mismatch"
        return None

    def put(self, key: str, data: bytes, info: "Optional[Dict[str, Any]]" = None) -> Path:
        """Store a plan atomically with its sha256, then evict LRU entries over the bound."""
        try:  # bytes, bytearray, memoryview or TensorRT's IHostMemory (buffer protocol)
            data = data if isinstance(data, bytes) else memoryview(data).tobytes()
        except TypeError:
            raise BadInput("engine build returned {} instead of plan bytes; nothing cached".format(type(data).__name__))
        if len(data) == 0:
            raise BadInput("engine build returned an empty plan; nothing cached")
        if len(data) > self.max_bytes:
            log.warning("engine (%d bytes) is larger than the cache bound (%d bytes); raise JETSON_DEPLOY_CACHE_MAX", len(data), self.max_bytes)
        self._ensure()
        now = time.time()
        meta = dict(info or {})
        meta.update(key=key, sha256=hashlib.sha256(data).hexdigest(), size=len(data), created=now, last_used=now, hits=0)
        self.remove(key)  # metadata never describes another plan, even for a moment
        path = atomic_write_bytes(self.engine_path(key), data)
        atomic_write_json(self.meta_path(key), meta)
        self.evict(keep=key)
        h = _dir_handle(self.root)  # what the caller reads next: through the handle, as get() returns it
        return h.path / path.name if h is not None else path

    def _ours(self, pattern: str) -> "List[Path]":
        """Files named like our entries (``<sha256 key>.engine|json|lock``): a cache directory may
        hold files of others (``--cache-dir .``), and those are never touched."""
        return [p for p in self.root.glob(pattern) if _KEY.match(p.stem) and not p.is_symlink()]

    def entries(self) -> "List[Dict[str, Any]]":
        """Metadata of every entry, most recently used first."""
        out = []
        if not self.root.is_dir():
            return out
        for p in self._ours("*.json"):
            key = p.stem
            meta = self._read_meta(key)
            if meta is None:
                continue
            meta["key"] = key
            out.append(meta)
        out.sort(key=lambda m: m.get("last_used", 0), reverse=True)
        return out

    @staticmethod
    def _size(p: Path) -> int:
        try:  # another process may evict it between listing and stat
            return p.stat().st_size
        except OSError:
            return 0

    def total_bytes(self) -> int:
        if not self.root.is_dir():
            return 0
        return sum(self._size(p) for p in self._ours("*.engine"))

    def evict(self, keep: "Optional[str]" = None) -> "List[str]":
        """Remove least recently used entries until the total fits ``max_bytes``; return removed keys."""
        removed: "List[str]" = []
        if not self.root.is_dir():
            return removed
        # orphans first: plans without metadata left by an interrupted store (old enough that
        # no other process is between writing the plan and its metadata right now)
        metas = {p.stem for p in self._ours("*.json")}
        now = time.time()
        for p in self._ours("*.engine"):
            if p.stem not in metas and p.stem != keep:
                try:
                    if now - p.stat().st_mtime < ORPHAN_AGE_S:
                        continue
                except OSError:
                    continue
                try:
                    p.unlink()
                except FileNotFoundError:
                    continue
                removed.append(p.stem)
        total = self.total_bytes()
        for meta in reversed(self.entries()):  # oldest first
            if total <= self.max_bytes:
                break
            if meta["key"] == keep:
                continue
            size = self._size(self.engine_path(meta["key"]))
            self.remove(meta["key"])
            total -= size
            removed.append(meta["key"])
            log.info("evicted cached engine %s (%d bytes) to stay under %d bytes", meta["key"][:12], size, self.max_bytes)
        return removed

    def clear(self) -> int:
        """Remove the entries of the cache's index (``<key>.json`` with our metadata) and their
        engines and locks, and the tool directories this cache made (their marker says so); any
        other file in the directory stays."""
        n = 0
        if not self.root.is_dir():
            return 0
        d = self.root / INDUCTOR_DIR
        if d.is_dir() and not d.is_symlink() and (d / _MARKER).is_file():
            shutil.rmtree(str(d), ignore_errors=True)
        for meta in self.entries():
            key = meta["key"]
            if self.engine_path(key).is_file():
                n += 1
            self.remove(key)
            with contextlib.suppress(OSError):
                (self.root / (key + ".lock")).unlink()
        return n
