"""The bundle on this machine: open, verify, and list what goes to the device.

Uses :func:`jetson_deploy.bundle.open_bundle` (schema check, sizes, sha256, safe unpack of
``.jdb``/``.tar``) when it is importable; otherwise a small reader of ``manifest.json``
with the same size/sha256 checks, so deploy works on a base install.
"""
import json
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .._files import sha256_file
from ..errors import BadInput, CheckFailed, MissingDependency

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"

# Names, versions and artifact paths travel inside remote shell scripts and rsync/sftp
# arguments: keep them to characters that need no quoting anywhere.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]*$")
_PATH_RE = re.compile(r"^[A-Za-z0-9._+@=,\-/]+$")


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value) or len(value) > 128:
        raise BadInput("bundle {} {!r} cannot be deployed: use letters, digits, '.', '_', '+', '-'".format(what, value))
    return value


def check_relpath(path: str) -> str:
    parts = path.split("/")
    if (not isinstance(path, str) or not _PATH_RE.match(path) or path.startswith("/")
            or any(p in ("", ".", "..") for p in parts) or parts[0] in (".rsync-partial",)):
        raise BadInput("artifact path {!r} cannot be deployed safely: use a relative path of letters, digits, '.', '_', '-', '/'".format(path))
    return path


class LocalBundle(object):
    """A verified bundle ready to upload: its files with size and sha256.

    ``files`` lists ``(relpath, size, sha256)`` for manifest.json, manifest.sig (if present)
    and every artifact. ``sums_text`` is that list in ``sha256sum -c`` format.
    """

    def __init__(self, root: Path, manifest: "Dict[str, Any]", files: "List[Tuple[str, int, str]]", cleanup: "Optional[Any]" = None, source: str = "") -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.name = check_name(manifest.get("name"), "name")
        self.version = check_name(str(manifest.get("version")), "version")
        self.files = files
        self.source = source or str(root)
        self._cleanup = cleanup

    @property
    def total_size(self) -> int:
        return sum(size for _, size, _ in self.files)

    @property
    def sums_text(self) -> str:
        return "".join("{}  {}\n".format(sha, rel) for rel, _, sha in self.files)

    @property
    def sizes_text(self) -> str:
        return "".join("{} {}\n".format(size, rel) for rel, size, _ in self.files)

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None

    def __enter__(self) -> "LocalBundle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _file_entry(root: Path, rel: str) -> "Tuple[str, int, str]":
    p = root / rel
    return (rel, p.stat().st_size, sha256_file(p))


def open_local_bundle(path: str, public_key: "Optional[str]" = None) -> "LocalBundle":
    """Open and verify a bundle (directory or packed file) for deployment.

    With ``public_key`` the bundle must carry a valid ``manifest.sig`` by that key
    (CheckFailed otherwise), checked before anything is uploaded anywhere.
    """
    p = Path(path)
    if not p.exists():
        raise BadInput("bundle {} does not exist: pass a bundle directory or a packed .jdb/.tar file".format(path))
    try:
        from ..bundle import open_bundle  # type: ignore
    except ImportError:  # the bundle package is optional for deploy
        open_bundle = None  # type: ignore
    if public_key is not None and open_bundle is None:
        raise MissingDependency("--key needs jetson_deploy.bundle (signature checks), which is not importable here")
    if open_bundle is not None:
        b = open_bundle(str(p), verify=True)
        try:
            if public_key is not None:
                from ..bundle.sign import verify_signature

                verify_signature(b, public_key)
            return _from_verified(Path(b.root), dict(b.manifest), list(b.artifacts), b.close, str(p))
        except BaseException:
            b.close()
            raise
    return _fallback_open(p)


def _from_verified(root: Path, manifest: "Dict[str, Any]", artifacts: "List[Dict[str, Any]]", cleanup: Any, source: str) -> "LocalBundle":
    files = [_file_entry(root, MANIFEST)]
    if (root / SIGNATURE).is_file():
        files.append(_file_entry(root, SIGNATURE))
    for art in artifacts:
        rel = check_relpath(str(art["path"]))
        files.append((rel, int(art["size"]), str(art["sha256"]).lower()))
    return LocalBundle(root, manifest, files, cleanup=cleanup, source=source)


def _fallback_open(p: Path) -> "LocalBundle":
    cleanup = None
    root = p
    if p.is_file():
        tmp = tempfile.mkdtemp(prefix="jetson-deploy-unpack-")
        cleanup = lambda: shutil.rmtree(tmp, ignore_errors=True)  # noqa: E731
        try:
            root = _safe_extract(p, Path(tmp))
        except BaseException:
            cleanup()
            raise
    try:
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise BadInput("{} is not a bundle: no manifest.json".format(p))
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise CheckFailed("{}: manifest.json is not valid JSON: {}".format(p, exc))
        arts = manifest.get("artifacts")
        if not isinstance(arts, list):
            raise CheckFailed("{}: manifest.json has no artifacts list".format(p))
        for art in arts:
            rel = check_relpath(str(art.get("path", "")))
            f = root / rel
            if not f.is_file() or f.is_symlink():
                raise CheckFailed("{}: artifact {} is missing".format(p, rel))
            size = f.stat().st_size
            if size != int(art.get("size", -1)):
                raise CheckFailed("{}: artifact {} has {} bytes, manifest says {}".format(p, rel, size, art.get("size")))
            if sha256_file(f) != str(art.get("sha256", "")).lower():
                raise CheckFailed("{}: artifact {} does not match its sha256 in manifest.json".format(p, rel))
        return _from_verified(root, manifest, arts, cleanup, str(p))
    except BaseException:
        if cleanup:
            cleanup()
        raise


def _safe_extract(archive: Path, dest: Path) -> Path:
    try:
        tar = tarfile.open(str(archive), "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise BadInput("{} is not a bundle directory or a readable .tar/.jdb file: {}".format(archive, exc))
    with tar:
        for m in tar.getmembers():
            name = m.name.lstrip("./") if m.name.startswith("./") else m.name
            if name.startswith("/") or ".." in name.split("/"):
                raise CheckFailed("{}: refusing unsafe member {!r}".format(archive, m.name))
            if not (m.isfile() or m.isdir()):
                raise CheckFailed("{}: refusing non-regular member {!r}".format(archive, m.name))
            target = dest / name
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            with src, open(str(target), "wb") as out:
                shutil.copyfileobj(src, out)
    if (dest / MANIFEST).is_file():
        return dest
    subs = [d for d in dest.iterdir() if d.is_dir()]
    if len(subs) == 1 and (subs[0] / MANIFEST).is_file():
        return subs[0]
    raise BadInput("{} holds no manifest.json".format(archive))
