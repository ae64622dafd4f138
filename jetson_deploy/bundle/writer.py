"""Writing bundles: :class:`BundleWriter` (whole bundle) and :func:`add_engine` (one engine).

Nothing is ever half-written: a bundle is built in a temporary directory beside
the target and renamed into place only after ``manifest.json`` (written last,
schema-validated) is complete.
"""
import copy
import hashlib
import logging
import os
import re
import shutil
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Union

from .. import __version__
from .._files import BUNDLE, CHUNK, atomic_dir, sha256_file
from ..errors import BadInput
from .manifest import (
    FORMAT,
    KINDS,
    MANIFEST,
    RESERVED,
    SCHEMA_VERSION,
    SIGNATURE,
    check_relpath,
    created_now,
    engine_filename,
    manifest_bytes,
    normalize_precision,
    normalize_target,
    validate_manifest,
)

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?\Z")


def copy_hashed(src: "IO[bytes]", dst: "IO[bytes]") -> tuple:
    """Stream ``src`` into ``dst``; return (sha256 hex, size)."""
    h = hashlib.sha256()
    size = 0
    while True:
        block = src.read(CHUNK)
        if not block:
            break
        h.update(block)
        dst.write(block)
        size += len(block)
    return h.hexdigest(), size


def _check_target(kind: str, path: str, target: "Optional[Dict[str, Any]]") -> "Optional[Dict[str, Any]]":
    target = normalize_target(target)
    if kind == "engine":
        if not target or any(target.get(k) is None for k in ("tensorrt", "sm", "precision")):
            raise BadInput("engine {}: target needs tensorrt, sm and precision, e.g. {{'tensorrt': '8.6.2', 'sm': 87, 'precision': 'fp16'}}".format(path))
        want = engine_filename(target["tensorrt"], target["sm"], target["precision"])
        if path != want:
            raise BadInput("engine for target {} must be stored as {}, not {}".format(_target_text(target), want, path))
    if kind == "calib-cache" and (not target or target.get("tensorrt") is None):
        raise BadInput("calibration cache {}: target needs the TensorRT version, e.g. {{'tensorrt': '8.6.2'}}".format(path))
    return target


def _target_text(target: "Dict[str, Any]") -> str:
    return "TensorRT {} sm{} {}".format(target.get("tensorrt"), target.get("sm"), target.get("precision"))


class BundleWriter:
    """Build a bundle directory atomically.

    ::

        with BundleWriter(out_dir, name="demo", version="0.1.0") as w:
            w.add_file("model.onnx", "model.onnx", kind="onnx")
            w.add_bytes(b"circle\\n", "labels.txt", kind="labels")
            w.manifest["spec"] = spec.to_dict()
            w.manifest["precision"] = "fp32"

    Files are copied (streamed) into a temporary directory beside ``out_dir``
    with their sha256 and size recorded.  On leaving the block without error,
    ``manifest.json`` is validated against the schema and written last, then the
    directory is renamed to ``out_dir`` (replacing an existing one when
    ``overwrite``).  On error nothing is left behind and ``out_dir`` is untouched.
    """

    def __init__(
        self,
        out_dir: "Union[str, 'os.PathLike[str]']",
        name: str,
        version: str,
        precision: str = "fp32",
        overwrite: bool = True,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise BadInput("bundle name {!r} must be letters, digits, '.', '_' or '-' (at most 128 characters)".format(name))
        if not isinstance(version, str) or not _SEMVER.match(version):
            raise BadInput("bundle version {!r} must be a semantic version like 0.1.0".format(version))
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        self.manifest: "Dict[str, Any]" = {
            "schema_version": SCHEMA_VERSION,
            "format": FORMAT,
            "name": name,
            "version": version,
            "created": created_now(),
            "generator": "jetson-deploy {}".format(__version__),
            "precision": normalize_precision(precision),
            "artifacts": [],
        }
        self.root: "Optional[Path]" = None  # the staging directory while inside the block
        self._ctx: Any = None
        self._artifacts: "Dict[str, Dict[str, Any]]" = {}

    # ---- context management ------------------------------------------------------------
    def __enter__(self) -> "BundleWriter":
        self._ctx = atomic_dir(self.out_dir, overwrite=self.overwrite, kind=BUNDLE)
        self.root = self._ctx.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        ctx, self._ctx = self._ctx, None
        if exc_type is None:
            try:
                self._finish()
            except BaseException as err:  # remove the staging dir, keep the old bundle
                ctx.__exit__(type(err), err, err.__traceback__)
                raise
            ctx.__exit__(None, None, None)
            self.root = self.out_dir
            return False
        ctx.__exit__(exc_type, exc, tb)
        self.root = None
        return False

    # ---- adding artifacts ---------------------------------------------------------------
    def _staged(self, relpath: str, kind: str, target: "Optional[Dict[str, Any]]") -> tuple:
        if self._ctx is None or self.root is None:
            raise RuntimeError("BundleWriter: add files inside the 'with' block")
        check_relpath(relpath, "artifact path")
        if relpath in RESERVED:
            raise BadInput("{} is reserved for the bundle itself; pick another artifact path".format(relpath))
        if kind not in KINDS:
            raise BadInput("artifact kind {!r} is not one of {}".format(kind, ", ".join(sorted(KINDS))))
        if relpath in self._artifacts:
            raise BadInput("artifact {} was already added to this bundle".format(relpath))
        target = _check_target(kind, relpath, target)
        dest = self.root / relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest, target

    def _record(self, relpath: str, kind: str, sha: str, size: int, target: "Optional[Dict[str, Any]]", extra: "Dict[str, Any]") -> "Dict[str, Any]":
        art: "Dict[str, Any]" = {"path": relpath, "kind": kind, "sha256": sha, "size": size}
        if target:
            art["target"] = target
        for k, v in extra.items():
            if k in art:
                raise BadInput("artifact field {!r} is set by the writer".format(k))
            art[k] = v
        self._artifacts[relpath] = art
        return art

    def add_file(
        self, src: "Union[str, 'os.PathLike[str]']", relpath: str, kind: str, target: "Optional[Dict[str, Any]]" = None, **extra: Any
    ) -> "Dict[str, Any]":
        """Copy ``src`` (streamed) to ``relpath`` in the bundle; return the artifact entry."""
        src = Path(src)
        if not src.is_file():
            raise BadInput("cannot add {} to the bundle: not a file".format(src))
        dest, target = self._staged(relpath, kind, target)
        with open(str(src), "rb") as fin, open(str(dest), "xb") as fout:
            sha, size = copy_hashed(fin, fout)
        return self._record(relpath, kind, sha, size, target, extra)

    def add_bytes(self, data: bytes, relpath: str, kind: str, target: "Optional[Dict[str, Any]]" = None, **extra: Any) -> "Dict[str, Any]":
        """Write ``data`` to ``relpath`` in the bundle; return the artifact entry."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("add_bytes needs bytes, got {}".format(type(data).__name__))
        dest, target = self._staged(relpath, kind, target)
        data = bytes(data)
        with open(str(dest), "xb") as fout:
            fout.write(data)
        return self._record(relpath, kind, hashlib.sha256(data).hexdigest(), len(data), target, extra)

    def staging_path(self, relpath: str) -> Path:
        """Where to write ``relpath`` directly (e.g. torch.onnx.export); then call :meth:`record`."""
        if self.root is None or self._ctx is None:
            raise RuntimeError("BundleWriter: use staging_path inside the 'with' block")
        check_relpath(relpath, "artifact path")
        dest = self.root / relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest

    def record(self, relpath: str, kind: str, target: "Optional[Dict[str, Any]]" = None, **extra: Any) -> "Dict[str, Any]":
        """Record a file already written at :meth:`staging_path` (hashes it, no copy)."""
        if self.root is None:
            raise RuntimeError("BundleWriter: use record inside the 'with' block")
        path = self.root / relpath
        if not path.is_file() or path.is_symlink():
            raise BadInput("record({}): write the file at staging_path({!r}) first".format(relpath, relpath))
        # _staged checks path/kind/target; the file already exists so don't touch it
        check_relpath(relpath, "artifact path")
        if relpath in RESERVED or relpath in self._artifacts:
            raise BadInput("artifact {} is reserved or already added".format(relpath))
        if kind not in KINDS:
            raise BadInput("artifact kind {!r} is not one of {}".format(kind, ", ".join(sorted(KINDS))))
        target = _check_target(kind, relpath, target)
        return self._record(relpath, kind, sha256_file(path), path.stat().st_size, target, extra)

    @property
    def artifacts(self) -> "List[Dict[str, Any]]":
        return [self._artifacts[k] for k in sorted(self._artifacts)]

    # ---- finishing -------------------------------------------------------------------------
    def _finish(self) -> None:
        assert self.root is not None
        m = self.manifest
        if "spec" in m and hasattr(m["spec"], "to_dict"):
            m["spec"] = m["spec"].to_dict()
        m["precision"] = normalize_precision(m.get("precision", "fp32"))
        m["artifacts"] = copy.deepcopy(self.artifacts)
        stray = []
        for dirpath, _dirs, files in os.walk(str(self.root)):
            for fn in files:
                rel = os.path.relpath(os.path.join(dirpath, fn), str(self.root)).replace(os.sep, "/")
                if rel not in self._artifacts:
                    stray.append(rel)
        if stray:
            raise BadInput("bundle {}: files written but not recorded: {} (use add_file/record)".format(self.out_dir, ", ".join(sorted(stray))))
        validate_manifest(m, str(self.out_dir), error=BadInput)
        with open(str(self.root / MANIFEST), "xb") as f:
            f.write(manifest_bytes(m))
            f.flush()
            os.fsync(f.fileno())


def add_engine(
    bundle_dir: "Union[str, 'os.PathLike[str]']",
    engine: "Union[str, 'os.PathLike[str]', bytes]",
    target: "Dict[str, Any]",
) -> "Dict[str, Any]":
    """Add (or replace) one engine in an existing bundle directory; return its artifact.

    Only ``manifest.json`` and the engine change: every other artifact keeps its
    bytes and checksum (they are hard-linked into the new version of the
    directory, which is swapped in atomically).  A ``manifest.sig`` no longer
    matches the new manifest, so it is removed (logged): re-sign with
    ``jetson-deploy bundle sign``.
    """
    from .reader import open_bundle

    # verify first: a tampered bundle (unlisted files, symlinked directories pointing outside,
    # edited artifacts) is refused, never rewritten into a "valid" one
    b = open_bundle(bundle_dir, verify=True)
    if b.packed:
        b.close()
        raise BadInput("add-engine needs a bundle directory, not a packed file: unpack {} first".format(bundle_dir))
    target = normalize_target(target) or {}
    if any(target.get(k) is None for k in ("tensorrt", "sm", "precision")):
        raise BadInput("add_engine: target needs tensorrt, sm and precision")
    relpath = engine_filename(target["tensorrt"], target["sm"], target["precision"])
    if isinstance(engine, (bytes, bytearray, memoryview)):
        data: "Optional[bytes]" = bytes(engine)
        src: "Optional[Path]" = None
        if not data:
            raise BadInput("add_engine: engine bytes are empty")
    else:
        data = None
        src = Path(engine)
        if not src.is_file():
            raise BadInput("engine file {} does not exist".format(src))
    root = Path(os.path.realpath(str(b.root)))  # swap the real directory, never a symlink pointing at it
    manifest = copy.deepcopy(b.manifest)
    old_arts = [a for a in manifest["artifacts"] if a["path"] != relpath]
    signed = (root / SIGNATURE).exists()
    with atomic_dir(root, overwrite=True) as tmp:
        for a in old_arts:
            s, d = root / a["path"], tmp / a["path"]
            d.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(str(s), str(d))
            except OSError:
                shutil.copy2(str(s), str(d))
        d = tmp / relpath
        d.parent.mkdir(parents=True, exist_ok=True)
        with open(str(d), "xb") as fout:
            if data is not None:
                fout.write(data)
                sha, size = hashlib.sha256(data).hexdigest(), len(data)
            else:
                assert src is not None
                with open(str(src), "rb") as fin:
                    sha, size = copy_hashed(fin, fout)
            fout.flush()
            os.fsync(fout.fileno())
        art: "Dict[str, Any]" = {"path": relpath, "kind": "engine", "sha256": sha, "size": size, "target": target}
        manifest["artifacts"] = sorted(old_arts + [art], key=lambda a: a["path"])
        validate_manifest(manifest, str(root), error=BadInput)
        with open(str(tmp / MANIFEST), "xb") as f:
            f.write(manifest_bytes(manifest))
            f.flush()
            os.fsync(f.fileno())
    if signed:
        log.warning("%s: manifest changed, so its signature (manifest.sig) was removed: re-sign with 'jetson-deploy bundle sign'", root)
    return art
