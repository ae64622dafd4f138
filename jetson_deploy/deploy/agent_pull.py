"""One update on the board: the tag moved to a new digest; pull it, check it, activate it, or refuse it.

Order, cheapest refusal first, so a bundle this board must not run is refused before its layer
is downloaded:

1. the manifest by digest (sha256 checked), which must be a bundle this tool published;
2. its config: the bundle's ``manifest.json`` (sha256 checked), and against it the signature
   from the annotations (Ed25519, :func:`~jetson_deploy.bundle.sign.signature_state_of`), the
   TensorRT minimum (:func:`~jetson_deploy.bundle.opset.compat_problem`) and the engine targets
   (an engines-only bundle needs one for this TensorRT and SM);
3. free space for the download and the unpacked bundle (``shutil.disk_usage``);
4. the layer, resumable (``ROOT/agent/downloads/<sha256>.jdb.part``), its sha256 checked;
5. the packed bundle opened as ``deploy`` opens one (:func:`.local_bundle.open_local_bundle`:
   safe unpack, every artifact's sha256, the signature again, now over the layer's own files);
6. the staged activation of ``deploy`` run on this machine (:func:`.single_host.deploy_host`
   over :class:`.transport.LocalTransport`): staging, verify, atomic switch, service restart,
   health gate, switch-back, retention.
"""
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

from ..bundle.manifest import normalize_sm, normalize_trt_version
from ..bundle.opset import compat_problem
from ..errors import BadInput, CheckFailed, JetsonDeployError
from . import artifact
from .agent_state import Outcome
from .local_bundle import open_local_bundle
from .oci import Registry
from .oci_ref import Reference
from .single_host import deploy_host
from .transport import LocalTransport

log = logging.getLogger(__name__)

_BLOB_RE = re.compile(r"^[a-f0-9]{64}\.jdb(\.part)?\Z")

def _margin(need: int) -> int:
    return max(1 << 20, need // 100)  # as deploy's space check (single_host)


class Refused(JetsonDeployError):
    """This board will not run that bundle; ``sticky``: the same digest is refused again every time."""

    exit_code = 1

    def __init__(self, message: str, sticky: bool = True) -> None:
        super().__init__(message)
        self.sticky = sticky


class Board(object):
    """What the checks compare a bundle against: this board's TensorRT and SM (None: not known here),
    the public key a bundle must be signed by (None: unsigned allowed), the bundle name it keeps."""

    __slots__ = ("tensorrt", "sm", "public_key", "name")

    def __init__(self, tensorrt: "Optional[str]", sm: "Optional[int]", public_key: "Optional[str]", name: "Optional[str]") -> None:
        self.tensorrt = normalize_trt_version(tensorrt) if tensorrt else None
        self.sm = normalize_sm(sm) if sm is not None else None
        self.public_key, self.name = public_key, name


def engine_problem(manifest: "Dict[str, Any]", tensorrt: "Optional[str]", sm: "Optional[int]") -> "Optional[str]":
    """An engines-only bundle with no engine for this TensorRT and SM cannot run here (nothing to build from)."""
    arts = manifest.get("artifacts") or []
    engines = [a.get("target") or {} for a in arts if a.get("kind") == "engine"]
    if not engines or tensorrt is None or sm is None or any(a.get("kind") == "onnx" for a in arts):
        return None
    for t in engines:
        try:
            if normalize_trt_version(t.get("tensorrt")) == tensorrt and normalize_sm(t.get("sm")) == sm:
                return None
        except BadInput:
            continue
    have = ", ".join("TensorRT {} sm{}".format(t.get("tensorrt"), t.get("sm")) for t in engines)
    return "bundle {} has engines for {} only and no model.onnx to build one for this board (TensorRT {} sm{})".format(
        manifest.get("name"), have, tensorrt, sm)


def check_config(config: bytes, pb: "artifact.PublishedBundle", board: "Board") -> "Dict[str, Any]":
    """The bundle's manifest.json from the config blob, refused (sticky) when this board must not run it."""
    try:
        manifest = json.loads(config.decode("utf-8"))
        name, version = str(manifest["name"]), str(manifest["version"])
    except (ValueError, UnicodeError, KeyError, TypeError):
        raise Refused("the bundle's manifest.json (the config blob) cannot be read")
    if board.name and name != board.name:
        raise Refused("the tag holds bundle {} {}; this agent keeps {} (--name)".format(name, version, board.name))
    if board.public_key is not None:
        from ..bundle.sign import VALID, signature_state_of

        state, detail = signature_state_of(config, pb.signature, board.public_key)
        if state != VALID:
            raise Refused("{} {}: signature {}: {}".format(name, version, state, detail or "no manifest.sig; sign it with 'jetson-deploy bundle sign' and publish again"))
    problem = (compat_problem(manifest, board.tensorrt) if board.tensorrt else None) or engine_problem(manifest, board.tensorrt, board.sm)
    if problem:
        raise Refused(problem)
    return manifest


def _free(path: str) -> int:
    return shutil.disk_usage(path).free


def check_space(root: str, layer_left: int, unpacked: int) -> None:
    """The rest of the download plus the unpacked bundle (staging) must fit under ROOT, and the
    unpacked bundle in the temporary directory (where it is opened) when that is another filesystem."""
    tmp = tempfile.gettempdir()
    same = os.stat(tmp).st_dev == os.stat(root).st_dev
    need = layer_left + unpacked * (2 if same else 1)
    need += _margin(need)
    free = _free(root)
    if free < need:
        raise JetsonDeployError("not enough disk space under {}: the update needs {:.1f} MiB (download {:.1f} MiB, "
                                "unpacked {:.1f} MiB), {:.1f} MiB free; nothing downloaded".format(
                                    root, need / 2.0 ** 20, layer_left / 2.0 ** 20, unpacked / 2.0 ** 20, free / 2.0 ** 20))
    if not same and _free(tmp) < unpacked + _margin(unpacked):
        raise JetsonDeployError("not enough space in {} to open the bundle ({:.1f} MiB needed); set TMPDIR to a larger disk".format(
            tmp, (unpacked + _margin(unpacked)) / 2.0 ** 20))


def clean_downloads(downloads: Path, keep: str) -> None:
    """Remove this agent's partial or finished downloads of other layers (only names it makes)."""
    for p in downloads.iterdir():
        if _BLOB_RE.match(p.name) and not p.name.startswith(keep) and p.is_file() and not p.is_symlink():
            p.unlink()


def download(reg: "Registry", ref: "Reference", pb: "artifact.PublishedBundle", downloads: Path, root: str,
             unpacked: int, bwlimit: "Optional[int]") -> Path:
    """The layer in ``downloads/<sha256>.jdb``, resumed from its ``.part`` when a run was cut."""
    hexd = pb.layer_digest.split(":", 1)[1]
    clean_downloads(downloads, hexd)
    dest = downloads / (hexd + ".jdb")
    if dest.is_file():
        dest.unlink()  # a finished download whose activation failed: fetched again, never trusted unhashed
    part = Path(str(dest) + ".part")
    have = part.stat().st_size if part.is_file() else 0
    check_space(root, max(0, pb.layer_size - have), unpacked)
    log.info("[agent] downloading %s %s (%.1f MiB%s)", pb.name, pb.version, pb.layer_size / 2.0 ** 20,
             ", resuming at {:.1f} MiB".format(have / 2.0 ** 20) if have else "")
    try:
        return reg.download_blob(ref.repo, pb.layer_digest, pb.layer_size, dest, bwlimit)
    except CheckFailed as exc:
        raise Refused(str(exc), sticky=False)  # the registry served other bytes; they may be fixed there


def activate(blob: Path, manifest_digest: str, options: Any, public_key: "Optional[str]") -> "Outcome":
    """Open the downloaded bundle as deploy does, then deploy's staged activation on this machine."""
    try:
        lb = open_local_bundle(str(blob), public_key)
    except (CheckFailed, BadInput) as exc:
        raise Refused(str(exc))  # the layer's digest matched: these are the bytes that were published
    try:
        sums = {rel: sha for rel, _, sha in lb.files}
        if "sha256:" + sums.get("manifest.json", "") != manifest_digest:
            raise Refused("the layer's manifest.json is not the one its config announced (published by a broken tool?)")
        res = deploy_host(lb, LocalTransport("agent"), options)
    finally:
        lb.close()
    return Outcome(res.result, res.message or "{} {} active".format(lb.name, lb.version), version=lb.version, name=lb.name)


def update(reg: "Registry", ref: "Reference", digest: str, board: "Board", options: Any, downloads: Path,
           bwlimit: "Optional[int]" = None) -> "Outcome":
    """Pull, check and activate REF's new DIGEST; every refusal or failure is an Outcome, never half-applied."""
    where = "{}/{}@{}".format(ref.host, ref.repo, digest[:19])
    version = ""
    try:
        body, _, _ = reg.get_manifest(ref.repo, digest)
        pb = artifact.parse_bundle_manifest(body, digest, where)
        version = pb.version
        config = reg.get_blob(ref.repo, pb.config_digest)
        manifest = check_config(config, pb, board)
        version = str(manifest["version"])
        unpacked = sum(int(a.get("size", 0)) for a in manifest.get("artifacts", [])) + len(config)
        blob = download(reg, ref, pb, downloads, options.root, unpacked, bwlimit)
        try:
            out = activate(blob, pb.config_digest, options, board.public_key)
        finally:
            if blob.is_file():
                blob.unlink()
    except Refused as exc:
        return Outcome("refused", str(exc), digest, version, sticky=exc.sticky)
    except CheckFailed as exc:  # a manifest or config that does not match its digest
        return Outcome("refused", str(exc), digest, version, sticky=False)
    except JetsonDeployError as exc:  # the registry, the disk, the staged activation
        return Outcome("failed", str(exc), digest, version)
    out.digest = digest
    return out
