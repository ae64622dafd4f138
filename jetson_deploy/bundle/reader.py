"""Reading and verifying bundles: :func:`open_bundle` and :class:`Bundle`.

A bundle directory is trusted only after every artifact's size and sha256 match
the manifest and no unlisted file is present.  A packed bundle (``.tar``/``.jdb``)
is first extracted safely (:func:`.pack.extract_archive`) into a temporary directory.
This is the one place that decides whether a bundle is sound; packing and
unpacking (:mod:`.archive`) ask it.
"""
import atexit
import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

from .._files import DirHandle
from ..errors import BadInput, CheckFailed
from .manifest import (
    MANIFEST,
    RESERVED,
    SIGNATURE,
    normalize_target,
    parse_manifest,
    target_matches,
    validate_manifest,
)
from .pack import extract_archive

MAX_MANIFEST_BYTES = 16 << 20
#: labels and other small artifacts read whole (read_artifact)
MAX_TEXT_ARTIFACT_BYTES = 64 << 20
_TEMP_DIRS: "List[str]" = []


def _cleanup_temp_dirs() -> None:
    for d in _TEMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup_temp_dirs)


def _short(sha: str) -> str:
    return sha[:12] + "..."


@contextlib.contextmanager
def _handle_of(root: "Union[Path, DirHandle]") -> "Iterator[DirHandle]":
    """The caller's handle as it is, or one opened on a path for the call and closed after it."""
    if isinstance(root, DirHandle):
        yield root
        return
    h = DirHandle(root)
    try:
        yield h
    finally:
        h.close()


def check_artifact(root: "Union[Path, DirHandle]", art: "Dict[str, Any]", hash_files: bool = True) -> "Optional[str]":
    """Problem with one artifact as a short phrase, or None when it matches.

    Read through a :class:`~.._files.DirHandle` (opened here from a path): no component of the
    artifact's path is followed if it is a symlink, and what is hashed is what a later read
    through the same handle gets."""
    with _handle_of(root) as h:
        return _artifact_problem(h, art, hash_files)


def _artifact_problem(h: "DirHandle", art: "Dict[str, Any]", hash_files: bool) -> "Optional[str]":
    rel = art["path"]
    parts = rel.split("/")
    for i in range(1, len(parts)):  # no parent may be a symlink either
        sub = "/".join(parts[:i])
        try:
            st = h.lstat(sub)
        except (FileNotFoundError, NotADirectoryError):
            return "missing"
        if stat.S_ISLNK(st.st_mode):
            return "parent directory {} is a symlink".format(sub)
        if not stat.S_ISDIR(st.st_mode):
            return "missing (a parent is not a directory)"
    try:
        st = h.lstat(rel)
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "missing (a parent is not a directory)"
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink (bundles hold regular files only)"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_size != art["size"]:
        return "size mismatch (manifest {} bytes, file {} bytes)".format(art["size"], st.st_size)
    if hash_files:
        try:
            size, got = h.sha256(rel)
        except OSError as exc:  # replaced by a link or a special file since the lstat
            return "cannot be read ({})".format(exc.strerror or exc)
        if size != art["size"]:
            return "size mismatch (manifest {} bytes, file {} bytes)".format(art["size"], size)
        if got != art["sha256"]:
            return "sha256 mismatch (manifest {}, file {})".format(_short(art["sha256"]), _short(got))
    return None


def check_files(root: "Union[Path, DirHandle]", manifest: "Dict[str, Any]", hash_files: bool = True) -> "List[Dict[str, str]]":
    """All problems of a bundle directory: [{'path', 'problem'}], empty when it is intact.

    Checks every listed artifact (exists, regular file, size, sha256) and that no
    unlisted file, link or special file is present.
    """
    with _handle_of(root) as h:
        return _file_problems(h, manifest, hash_files)


def _file_problems(h: "DirHandle", manifest: "Dict[str, Any]", hash_files: bool) -> "List[Dict[str, str]]":
    problems: "List[Dict[str, str]]" = []
    listed = {a["path"] for a in manifest.get("artifacts", [])}
    for art in sorted(manifest.get("artifacts", []), key=lambda a: a["path"]):
        why = _artifact_problem(h, art, hash_files)
        if why:
            problems.append({"path": art["path"], "problem": why, "message": "artifact {}: {}".format(art["path"], why)})
    top = str(h.path)
    for dirpath, dirs, files in os.walk(top, followlinks=False):
        for name in sorted(dirs + files):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, top).replace(os.sep, "/")
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode) and rel not in RESERVED:
                continue
            if rel in listed:
                continue
            if rel in RESERVED:
                if stat.S_ISREG(st.st_mode):
                    continue
                why = "is not a regular file"
            elif stat.S_ISLNK(st.st_mode):
                why = "unlisted symlink"
            elif stat.S_ISREG(st.st_mode):
                why = "unlisted file (not in manifest.json)"
            else:
                why = "unlisted special file"
            problems.append({"path": rel, "problem": why, "message": "{}: {}".format(rel, why)})
    return problems


class Bundle:
    """An opened bundle: manifest plus the directory holding its artifacts.

    Create with :func:`open_bundle`.  The directory is opened once (a :class:`~.._files.DirHandle`)
    and everything after that -- the manifest, ``manifest.sig``, labels, each artifact -- is read
    through that handle, never through the path given: a symlink flipped or a directory swapped
    after verification changes nothing that is read.  ``root`` is where the directory was when
    opened (messages, subprocesses); ``path()`` and ``labels`` check the artifact they return
    against the manifest if that was not done at open.
    """

    def __init__(self, root: "Union[Path, DirHandle]", manifest: "Dict[str, Any]", manifest_raw: bytes, source: "Optional[str]" = None,
                 temp_dir: "Optional[str]" = None, packed: bool = False, signature: "Optional[bytes]" = None) -> None:
        self._handle = root if isinstance(root, DirHandle) else DirHandle(root)
        self.root = self._handle.real
        self.manifest = manifest
        self.manifest_raw = manifest_raw
        #: manifest.sig's bytes as read at open through the same handle (None: unsigned)
        self.signature_raw = signature
        self.source = source or str(self.root)
        self.packed = packed or temp_dir is not None
        self._temp_dir = temp_dir
        # path -> (size, mtime_ns, ino, ctime_ns) when its sha256 was checked; a changed stat re-checks
        self._verified: "Dict[str, tuple]" = {}
        #: every artifact was checked (verify()); later reads re-check only files whose stat changed
        self.verified = False
        self._spec: Any = None

    # ---- identity ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def precision(self) -> str:
        return self.manifest.get("precision", "fp32")

    @property
    def schema_version(self) -> int:
        return int(self.manifest["schema_version"])

    @property
    def sha256(self) -> str:
        """sha256 of manifest.json's bytes: the bundle identity (engine-cache keys, signatures)."""
        return hashlib.sha256(self.manifest_raw).hexdigest()

    @property
    def spec(self) -> Any:
        """The :class:`~jetson_deploy.spec.ModelSpec` stored under ``spec``."""
        if self._spec is None:
            from ..spec import ModelSpec

            data = self.manifest.get("spec")
            if not isinstance(data, dict):
                raise BadInput("{}: manifest.json has no 'spec'; re-convert the model with --spec".format(self.source))
            self._spec = ModelSpec.from_dict(data, source="{} manifest spec".format(self.source), base_dir=self.root)
        return self._spec

    # ---- artifacts -----------------------------------------------------------------------
    @property
    def artifacts(self) -> "List[Dict[str, Any]]":
        return list(self.manifest.get("artifacts", []))

    @property
    def engines(self) -> "List[Dict[str, Any]]":
        return [a for a in self.artifacts if a["kind"] == "engine"]

    def artifact(self, kind: str, target: "Optional[Dict[str, Any]]" = None) -> "Optional[Dict[str, Any]]":
        """First artifact of ``kind`` whose target has all the given ``target`` keys/values."""
        want = normalize_target(target) if target else None
        for a in sorted(self.artifacts, key=lambda a: a["path"]):
            if a["kind"] != kind:
                continue
            if want and not target_matches(a.get("target"), want):
                continue
            return a
        return None

    def _stat_key(self, relpath: str) -> "Optional[tuple]":
        try:
            st = self._handle.lstat(relpath)
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)

    def _check(self, art: "Dict[str, Any]") -> None:
        """Check one artifact (size, sha256) through the handle unless checked already and unchanged
        since (same size, mtime, ctime, inode).  CheckFailed names it."""
        key = self._stat_key(art["path"])
        if key is None or self._verified.get(art["path"]) != key:
            why = check_artifact(self._handle, art)
            if why:
                self._verified.pop(art["path"], None)
                raise CheckFailed("{}: artifact {}: {}".format(self.source, art["path"], why))
            self._verified[art["path"]] = key

    def verify_artifact(self, art: "Dict[str, Any]") -> Path:
        """Check one artifact and return a path to it through the directory handle (valid while
        the bundle is open; on Linux ``/proc/self/fd/N/REL``)."""
        self._check(art)
        return self._handle.path / art["path"]

    def read_artifact(self, art: "Dict[str, Any]") -> bytes:
        """An artifact's bytes, read once and hashed as read: the bytes returned are the bytes checked."""
        if art["size"] > MAX_TEXT_ARTIFACT_BYTES:
            raise CheckFailed("{}: artifact {}: {} bytes is too large to read whole".format(self.source, art["path"], art["size"]))
        try:
            data = self._handle.read_bytes(art["path"], art["size"])
        except (OSError, ValueError) as exc:
            raise CheckFailed("{}: artifact {}: cannot be read ({})".format(self.source, art["path"], getattr(exc, "strerror", None) or exc))
        if len(data) != art["size"] or hashlib.sha256(data).hexdigest() != art["sha256"]:
            raise CheckFailed("{}: artifact {}: sha256 mismatch (changed since the manifest was written)".format(self.source, art["path"]))
        return data

    def path(self, kind: str, **target_filter: Any) -> "Optional[Path]":
        """Path of the first artifact of ``kind`` matching ``target_filter`` (checked), or None."""
        art = self.artifact(kind, target_filter or None)
        if art is None:
            return None
        return self.verify_artifact(art)

    @property
    def labels(self) -> "List[str]":
        """labels.txt (one label a line) if bundled, else the spec's labels, else []."""
        art = self.artifact("labels")
        if art is not None:
            text = self.read_artifact(art).decode("utf-8")
            return [ln.strip() for ln in text.splitlines() if ln.strip()]
        spec = self.manifest.get("spec") or {}
        labels = spec.get("labels")
        return list(labels) if isinstance(labels, list) else []

    # ---- checks --------------------------------------------------------------------------
    def problems(self, hash_files: bool = True) -> "List[Dict[str, str]]":
        return check_files(self._handle, self.manifest, hash_files=hash_files)

    def verify(self) -> "Bundle":
        """Check every artifact and that nothing unlisted is present; raise CheckFailed naming the first problem."""
        stats = {a["path"]: self._stat_key(a["path"]) for a in self.artifacts}
        probs = self.problems()
        if probs:
            more = " (and {} more problems)".format(len(probs) - 1) if len(probs) > 1 else ""
            raise CheckFailed("{}: {}{}".format(self.source, probs[0]["message"], more))
        self._verified = {p: k for p, k in stats.items() if k is not None}
        self.verified = True
        return self

    @property
    def signature_path(self) -> Path:
        return self.root / SIGNATURE

    @property
    def signed(self) -> bool:
        """manifest.sig was there when the bundle was opened."""
        return self.signature_raw is not None

    def shown(self, path: "Union[str, Path]") -> Path:
        """PATH as a user should see it: under ``root`` instead of the handle."""
        p = Path(path)
        try:
            return self.root / p.relative_to(self._handle.path)
        except ValueError:  # another handle's path (the engine cache's): where it leads now
            return Path(os.path.realpath(str(p))) if str(p).startswith("/proc/self/fd/") else p

    @property
    def handle_path(self) -> Path:
        """The bundle directory through its handle (reads in this process; valid while open)."""
        return self._handle.path

    # ---- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Close the directory handle; remove the extraction directory of a packed bundle."""
        self._handle.close()
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            if self._temp_dir in _TEMP_DIRS:
                _TEMP_DIRS.remove(self._temp_dir)
            self._temp_dir = None

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Bundle({}-{} at {})".format(self.name, self.version, self.root)


def read_manifest(root: "Union[Path, DirHandle]", source: str) -> tuple:
    """(manifest, its bytes) read once through the handle; the signature is checked over these
    very bytes (never a second read of the file)."""
    with _handle_of(root) as h:
        try:
            st = h.lstat(MANIFEST)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            raise BadInput("{} is not a bundle: it has no manifest.json (expected a bundle directory or a packed .jdb/.tar file)".format(source))
        try:
            raw = h.read_bytes(MANIFEST, MAX_MANIFEST_BYTES)
        except ValueError:
            raise CheckFailed("{}: manifest.json is larger than {} bytes".format(source, MAX_MANIFEST_BYTES))
    manifest = parse_manifest(raw, source)
    validate_manifest(manifest, source, error=CheckFailed)
    return manifest, raw


def read_signature(h: "DirHandle") -> "Optional[bytes]":
    """manifest.sig's bytes through the handle; None when absent or not a regular file (then
    :func:`check_files` reports it)."""
    try:
        return h.read_bytes(SIGNATURE, 64 * 1024)
    except (OSError, ValueError):
        return None


def _open_dir(root: "Union[Path, DirHandle]", source: str, temp_dir: "Optional[str]" = None) -> "Bundle":
    h = root if isinstance(root, DirHandle) else DirHandle(root)  # the Bundle owns it from here
    try:
        manifest, raw = read_manifest(h, source)
        return Bundle(h, manifest, raw, source=source, temp_dir=temp_dir, packed=temp_dir is not None, signature=read_signature(h))
    except BaseException:
        h.close()
        raise


def open_bundle(path: "Union[str, 'os.PathLike[str]', Bundle]", verify: bool = True, extract_dir: "Optional[Union[str, 'os.PathLike[str]']]" = None) -> "Bundle":
    """Open a bundle directory or a packed ``.jdb``/``.tar`` file.

    The path is resolved once: the directory is opened (or the archive extracted) and from then
    on the returned Bundle reads only through that handle.  The manifest is always
    schema-checked.  With ``verify`` every artifact's size and sha256 is checked and unlisted
    files are refused before anything is returned (CheckFailed naming the artifact).  A packed
    bundle is extracted safely into ``extract_dir`` (default: a temporary directory removed by
    ``Bundle.close()`` or at exit), after its members were checked against its manifest.  A
    missing path is BadInput.
    """
    if isinstance(path, Bundle):
        if verify and not path.verified:
            path.verify()
        return path
    p = Path(path)
    source = str(p)
    try:
        h = DirHandle(p)
    except NotADirectoryError:
        h = None
    except FileNotFoundError:
        raise BadInput("bundle {} does not exist: pass a bundle directory or a packed .jdb/.tar file".format(source))
    if h is not None:
        b = _open_dir(h, source)
        try:
            if verify:
                b.verify()
        except BaseException:
            b.close()
            raise
        return b
    if extract_dir is None:
        tmp = tempfile.mkdtemp(prefix="jetson-deploy-bundle-")
        _TEMP_DIRS.append(tmp)
        dest = Path(tmp) / "bundle"
        temp_dir: "Optional[str]" = tmp
    else:
        dest = Path(extract_dir)
        temp_dir = None
    b = None
    try:
        root = extract_archive(p, dest)
        b = _open_dir(root, source, temp_dir=temp_dir)
        if verify:
            b.verify()
    except BaseException:
        if b is not None:
            b.close()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
            if temp_dir in _TEMP_DIRS:
                _TEMP_DIRS.remove(temp_dir)
        raise
    if extract_dir is not None:
        b.packed = True
    return b



def onnx_model(path: "Union[str, 'os.PathLike[str]']") -> Path:
    """``path`` itself, or when it is a bundle (a directory with a manifest, or a packed file)
    its verified fp32 ``model.onnx``: what ``calibrate --model`` measures.

    Calibration comes before bundles in the data flow and cannot open one; its caller asks here.
    """
    p = Path(path)
    is_bundle = (p / MANIFEST).is_file() if p.is_dir() else (p.is_file() and p.suffix.lower() != ".onnx")
    if not is_bundle:
        return p
    found = open_bundle(p).path("onnx")
    if found is None:
        raise BadInput("bundle {} has no ONNX model (kind onnx) to calibrate".format(p))
    return found
