"""Reading and verifying bundles: :func:`open_bundle` and :class:`Bundle`.

A bundle directory is trusted only after every artifact's size and sha256 match
the manifest and no unlisted file is present.  A packed bundle (``.tar``/``.jdb``)
is first extracted safely (:func:`.pack.extract_archive`) into a temporary directory.
This is the one place that decides whether a bundle is sound; packing and
unpacking (:mod:`.archive`) ask it.
"""
import atexit
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .._files import sha256_file
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
_TEMP_DIRS: "List[str]" = []


def _cleanup_temp_dirs() -> None:
    for d in _TEMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup_temp_dirs)


def _short(sha: str) -> str:
    return sha[:12] + "..."


def check_artifact(root: Path, art: "Dict[str, Any]", hash_files: bool = True) -> "Optional[str]":
    """Problem with one artifact as a short phrase, or None when it matches."""
    p = root / art["path"]
    try:
        st = os.lstat(str(p))
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "missing (a parent is not a directory)"
    # no parent may be a symlink either
    cur = root
    for seg in art["path"].split("/")[:-1]:
        cur = cur / seg
        if cur.is_symlink():
            return "parent directory {} is a symlink".format(cur.relative_to(root).as_posix())
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink (bundles hold regular files only)"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_size != art["size"]:
        return "size mismatch (manifest {} bytes, file {} bytes)".format(art["size"], st.st_size)
    if hash_files:
        got = sha256_file(p)
        if got != art["sha256"]:
            return "sha256 mismatch (manifest {}, file {})".format(_short(art["sha256"]), _short(got))
    return None


def check_files(root: Path, manifest: "Dict[str, Any]", hash_files: bool = True) -> "List[Dict[str, str]]":
    """All problems of a bundle directory: [{'path', 'problem'}], empty when it is intact.

    Checks every listed artifact (exists, regular file, size, sha256) and that no
    unlisted file, link or special file is present.
    """
    problems: "List[Dict[str, str]]" = []
    listed = {a["path"] for a in manifest.get("artifacts", [])}
    for art in sorted(manifest.get("artifacts", []), key=lambda a: a["path"]):
        why = check_artifact(root, art, hash_files=hash_files)
        if why:
            problems.append({"path": art["path"], "problem": why, "message": "artifact {}: {}".format(art["path"], why)})
    for dirpath, dirs, files in os.walk(str(root), followlinks=False):
        for name in sorted(dirs + files):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, str(root)).replace(os.sep, "/")
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

    Create with :func:`open_bundle`.  ``path()`` and ``labels`` check the
    artifact they return against the manifest if that was not done at open.
    """

    def __init__(self, root: Path, manifest: "Dict[str, Any]", manifest_raw: bytes, source: "Optional[str]" = None, temp_dir: "Optional[str]" = None, packed: bool = False) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.manifest_raw = manifest_raw
        self.source = source or str(root)
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
            st = os.lstat(str(self.root / relpath))
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)

    def verify_artifact(self, art: "Dict[str, Any]") -> Path:
        """Check one artifact (size, sha256) unless checked already and unchanged since
        (same size, mtime, ctime, inode); return its path.  CheckFailed names it."""
        key = self._stat_key(art["path"])
        if key is None or self._verified.get(art["path"]) != key:
            why = check_artifact(self.root, art)
            if why:
                self._verified.pop(art["path"], None)
                raise CheckFailed("{}: artifact {}: {}".format(self.source, art["path"], why))
            self._verified[art["path"]] = key
        return self.root / art["path"]

    def path(self, kind: str, **target_filter: Any) -> "Optional[Path]":
        """Path of the first artifact of ``kind`` matching ``target_filter`` (checked), or None."""
        art = self.artifact(kind, target_filter or None)
        if art is None:
            return None
        return self.verify_artifact(art)

    @property
    def labels(self) -> "List[str]":
        """labels.txt (one label a line) if bundled, else the spec's labels, else []."""
        p = self.path("labels")
        if p is not None:
            return [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        spec = self.manifest.get("spec") or {}
        labels = spec.get("labels")
        return list(labels) if isinstance(labels, list) else []

    # ---- checks --------------------------------------------------------------------------
    def problems(self, hash_files: bool = True) -> "List[Dict[str, str]]":
        return check_files(self.root, self.manifest, hash_files=hash_files)

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
        return self.signature_path.is_file()

    # ---- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Remove the extraction directory of a packed bundle (no-op for directories)."""
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


def read_manifest(root: Path, source: str) -> tuple:
    mpath = root / MANIFEST
    if mpath.is_symlink() or not mpath.is_file():
        raise BadInput("{} is not a bundle: it has no manifest.json (expected a bundle directory or a packed .jdb/.tar file)".format(source))
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise CheckFailed("{}: manifest.json is larger than {} bytes".format(source, MAX_MANIFEST_BYTES))
    raw = mpath.read_bytes()
    manifest = parse_manifest(raw, source)
    validate_manifest(manifest, source, error=CheckFailed)
    return manifest, raw


def open_bundle(path: "Union[str, 'os.PathLike[str]', Bundle]", verify: bool = True, extract_dir: "Optional[Union[str, 'os.PathLike[str]']]" = None) -> "Bundle":
    """Open a bundle directory or a packed ``.jdb``/``.tar`` file.

    The manifest is always schema-checked.  With ``verify`` every artifact's size
    and sha256 is checked and unlisted files are refused before anything is
    returned (CheckFailed naming the artifact).  A packed bundle is extracted
    safely into ``extract_dir`` (default: a temporary directory removed by
    ``Bundle.close()`` or at exit).  A missing path is BadInput.
    """
    if isinstance(path, Bundle):
        if verify and not path.verified:
            path.verify()
        return path
    p = Path(path)
    source = str(p)
    if not p.exists():
        raise BadInput("bundle {} does not exist: pass a bundle directory or a packed .jdb/.tar file".format(source))
    if p.is_dir():
        manifest, raw = read_manifest(p, source)
        b = Bundle(p, manifest, raw, source=source)
        if verify:
            b.verify()
        return b
    if extract_dir is None:
        tmp = tempfile.mkdtemp(prefix="jetson-deploy-bundle-")
        _TEMP_DIRS.append(tmp)
        dest = Path(tmp) / "bundle"
        temp_dir: "Optional[str]" = tmp
    else:
        dest = Path(extract_dir)
        temp_dir = None
    try:
        root = extract_archive(p, dest)
        manifest, raw = read_manifest(root, source)
        b = Bundle(root, manifest, raw, source=source, temp_dir=temp_dir, packed=True)
        if verify:
            b.verify()
    except BaseException:
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
            if temp_dir in _TEMP_DIRS:
                _TEMP_DIRS.remove(temp_dir)
        raise
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
