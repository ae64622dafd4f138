"""What a bundle and a board's status look like in an OCI registry: media types and annotations.

A published bundle is one OCI image manifest (image-spec v1.1 artifact form, as ORAS pushes):

* ``config``: the bundle's own ``manifest.json`` bytes (:data:`CONFIG_TYPE`), so a board reads the
  name, version, TensorRT minimum and engine targets, and checks the signature, before it
  downloads anything large;
* one layer: the packed bundle (:data:`LAYER_TYPE`, the deterministic tar of ``bundle pack``;
  same bundle, same digest);
* annotations: name, version, precision, engine targets and SMs, minimum TensorRT, whether it is
  signed and the detached Ed25519 signature itself (base64), so ``oras manifest fetch`` or
  ``crane manifest`` show what a tag holds.

A board's status is a manifest with the empty config, no layers, and annotations (:data:`STATUS_TYPE`),
tagged with the board's id in the status repository (``REPO/status`` by default).

Standard library only: the board's Python 3.6 parses these.
"""
import base64
import binascii
import json
from typing import Any, Dict, List, Optional

from ..errors import BadInput, CheckFailed
from .oci import OCI_MANIFEST
from .oci_ref import check_digest, sha256_digest

ARTIFACT_TYPE = "application/vnd.jetson-deploy.bundle.v1"
CONFIG_TYPE = "application/vnd.jetson-deploy.bundle.manifest.v1+json"
LAYER_TYPE = "application/vnd.jetson-deploy.bundle.layer.v1.tar"
STATUS_TYPE = "application/vnd.jetson-deploy.board-status.v1"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"

STATUS_SUFFIX = "status"  # boards report to REPO/status unless told otherwise (--status-repo)

NS = "dev.jetson-deploy."
TITLE = "org.opencontainers.image.title"
VERSION = "org.opencontainers.image.version"
CREATED = "org.opencontainers.image.created"


def _targets(manifest: "Dict[str, Any]") -> "List[Dict[str, Any]]":
    return [a.get("target") or {} for a in manifest.get("artifacts", []) if a.get("kind") == "engine"]


def bundle_annotations(manifest: "Dict[str, Any]", signature: "Optional[bytes]", tensorrt_min: "Optional[str]") -> "Dict[str, str]":
    """The annotations of a published bundle (every value a string, as the spec requires)."""
    targets = _targets(manifest)
    sms = sorted({str(t.get("sm")) for t in targets if t.get("sm") is not None})
    ann = {
        VERSION: str(manifest["version"]),
        NS + "name": str(manifest["name"]),
        NS + "version": str(manifest["version"]),
        NS + "precision": str(manifest.get("precision", "fp32")),
        NS + "engines": ",".join("{}/sm{}/{}".format(t.get("tensorrt"), t.get("sm"), t.get("precision")) for t in targets),
        NS + "sm": ",".join("sm" + s for s in sms),
        NS + "platforms": ",".join(sorted({str(t["platform"]) for t in targets if t.get("platform")})),
        NS + "tensorrt-min": tensorrt_min or "",
        NS + "signed": "true" if signature else "false",
    }
    if manifest.get("created"):
        ann[CREATED] = str(manifest["created"])
    if signature:
        ann[NS + "signature"] = base64.b64encode(signature).decode("ascii")
    return ann


def descriptor(media_type: str, data: bytes, annotations: "Optional[Dict[str, str]]" = None) -> "Dict[str, Any]":
    d: "Dict[str, Any]" = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    if annotations:
        d["annotations"] = annotations
    return d


def bundle_manifest(config: "Dict[str, Any]", layer: "Dict[str, Any]", annotations: "Dict[str, str]") -> bytes:
    """The OCI manifest bytes of a published bundle (sorted keys: same bundle, same digest)."""
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT_TYPE, "config": config,
           "layers": [layer], "annotations": annotations}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


class PublishedBundle(object):
    """A pulled bundle manifest, checked to be ours: its config and layer descriptors and annotations."""

    __slots__ = ("digest", "config_digest", "config_size", "layer_digest", "layer_size", "annotations")

    def __init__(self, digest: str, doc: "Dict[str, Any]") -> None:
        self.digest = digest
        self.annotations = {str(k): str(v) for k, v in (doc.get("annotations") or {}).items()}
        cfg, layers = doc.get("config") or {}, doc.get("layers") or []
        self.config_digest = check_digest(str(cfg.get("digest")))
        self.config_size = int(cfg.get("size", 0))
        self.layer_digest = check_digest(str(layers[0].get("digest")))
        self.layer_size = int(layers[0].get("size", 0))

    @property
    def name(self) -> str:
        return self.annotations.get(NS + "name", "?")

    @property
    def version(self) -> str:
        return self.annotations.get(NS + "version", "?")

    @property
    def signature(self) -> "Optional[bytes]":
        text = self.annotations.get(NS + "signature")
        if not text:
            return None
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (ValueError, binascii.Error):
            raise CheckFailed("{}: the signature annotation is not base64".format(self.digest[:19]))


def parse_bundle_manifest(body: bytes, digest: str, where: str) -> "PublishedBundle":
    """Check that BODY is a bundle this tool published (one layer of :data:`LAYER_TYPE`, config of
    :data:`CONFIG_TYPE`); CheckFailed naming what it is otherwise."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeError):
        raise CheckFailed("{}: the manifest is not JSON".format(where))
    if not isinstance(doc, dict):
        raise CheckFailed("{}: the manifest is not a JSON object".format(where))
    cfg = doc.get("config") or {}
    layers = doc.get("layers") or []
    if cfg.get("mediaType") != CONFIG_TYPE or len(layers) != 1 or not isinstance(layers[0], dict) \
            or layers[0].get("mediaType") != LAYER_TYPE:
        kind = doc.get("artifactType") or cfg.get("mediaType") or doc.get("mediaType") or "unknown"
        raise CheckFailed("{} is not a jetson-deploy bundle (it is {}); publish one with 'jetson-deploy publish'".format(where, kind))
    try:
        return PublishedBundle(digest, doc)
    except (BadInput, TypeError, ValueError, AttributeError) as exc:
        raise CheckFailed("{}: malformed bundle manifest ({})".format(where, exc))


# ----------------------------------------------------------------------------- board status

STATUS_KEYS = ("board", "ref", "name", "version", "digest", "state", "message", "attempt_version", "attempt_digest",
               "time", "tensorrt", "sm", "agent")


def status_manifest(status: "Dict[str, Any]") -> bytes:
    """A board's status as a manifest: the empty config, no layers, one annotation per field."""
    ann = {NS + "status." + k: "" if status.get(k) is None else str(status.get(k)) for k in STATUS_KEYS}
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": STATUS_TYPE,
           "config": descriptor(EMPTY_TYPE, EMPTY_BLOB), "layers": [], "annotations": ann}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def parse_status(body: bytes) -> "Optional[Dict[str, str]]":
    """The status fields of a status manifest, or None when BODY is something else."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeError):
        return None
    if not isinstance(doc, dict) or doc.get("artifactType") != STATUS_TYPE:
        return None
    ann = doc.get("annotations") or {}
    return {k: str(ann.get(NS + "status." + k, "")) for k in STATUS_KEYS}
