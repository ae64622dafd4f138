"""The bundle on this machine, prepared for upload: opened and verified, its files listed.

Opening and verifying is :func:`jetson_deploy.bundle.open_bundle`'s job (schema check,
sizes, sha256, safe unpack of ``.jdb``/``.tar``); this adds what the upload needs: the
file list with checksums and the names that travel into remote shell scripts.
"""
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .._files import sha256_bytes
from ..bundle import open_bundle
from ..bundle.manifest import MANIFEST, SIGNATURE
from ..errors import BadInput

# Names and versions travel inside remote shell scripts and rsync/sftp arguments: keep them
# to characters that need no quoting anywhere (artifact paths are held to that by the schema).
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]*\Z")
_RSYNC_PARTIAL = ".rsync-partial"  # rsync's --partial-dir in staging: no artifact may live there


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value) or len(value) > 128:
        raise BadInput("bundle {} {!r} cannot be deployed: use letters, digits, '.', '_', '+', '-'".format(what, value))
    return value


def _uploadable(path: str) -> str:
    if path.split("/", 1)[0] == _RSYNC_PARTIAL:
        raise BadInput("artifact path {!r} cannot be deployed: {}/ is the upload's scratch directory on the device".format(
            path, _RSYNC_PARTIAL))
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


def _bytes_entry(rel: str, data: bytes) -> "Tuple[str, int, str]":
    return (rel, len(data), sha256_bytes(data))


def open_local_bundle(path: str, public_key: "Optional[str]" = None) -> "LocalBundle":
    """Open and verify a bundle (directory or packed file) for deployment.

    With ``public_key`` the bundle must carry a valid ``manifest.sig`` by that key
    (CheckFailed otherwise), checked before anything is uploaded anywhere.  The sums the device
    checks are those of what was verified here (the manifest and signature bytes read once, the
    manifest's artifact sums), so a file swapped after this check fails on the device.
    """
    b = open_bundle(str(path), verify=True)  # a missing path is BadInput there
    try:
        if public_key is not None:
            from ..bundle.sign import verify_signature

            verify_signature(b, public_key)
        files = [_bytes_entry(MANIFEST, b.manifest_raw)]
        if b.signature_raw is not None:
            files.append(_bytes_entry(SIGNATURE, b.signature_raw))
        for art in b.artifacts:
            files.append((_uploadable(str(art["path"])), int(art["size"]), str(art["sha256"]).lower()))
        return LocalBundle(Path(b.root), dict(b.manifest), files, cleanup=b.close, source=str(path))
    except BaseException:
        b.close()
        raise
