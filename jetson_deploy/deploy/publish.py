"""``publish``: a verified bundle into an OCI registry, tagged per channel; ``--promote``: move a tag.

The bundle is opened and verified here (and with ``--key`` its signature checked) before a byte
leaves; it is packed into the deterministic tar of ``bundle pack`` (same bundle, same layer
digest), and pushed as one layer with its ``manifest.json`` as the config (see :mod:`.artifact`).
Blobs the repository already has are not sent again (``HEAD`` first), so re-publishing a bundle
under another tag costs two HEADs and a manifest PUT.  Promotion copies the manifest bytes from
one tag to another: nothing is uploaded, and the digest boards see is the one that was tested.
"""
import logging
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .._files import sha256_file
from ..bundle.archive import pack_bundle
from ..bundle.opset import bundle_requirement
from ..bundle.reader import open_bundle
from ..errors import BadInput
from . import artifact
from .oci import OCI_MANIFEST, Registry, RegistryError, RegistryOptions
from .oci_ref import Reference, check_tag

log = logging.getLogger(__name__)


def version_tag(version: str) -> str:
    """The tag naming a version (``1.2.0``; ``+`` is not allowed in tags and becomes ``_``)."""
    return check_tag(str(version).replace("+", "_"), "version tag")


def _target(ref: str) -> "Reference":
    r = Reference.parse(ref, tag_required=True)
    if r.digest:
        raise BadInput("{}: publish to a tag (REPO:TAG), not a digest".format(ref))
    return r


def publish(bundle: str, ref: str, tags: "Sequence[str]" = (), options: "Optional[RegistryOptions]" = None,
            public_key: "Optional[str]" = None, version_tagged: bool = True) -> "Dict[str, Any]":
    """Push BUNDLE to REF (``HOST/REPO:TAG``) and tag it TAG, each of ``tags`` and its version.
    Returns ``{ref, digest, name, version, tags, layer: {digest, size, uploaded}, signed}``."""
    r = _target(ref)
    extra = [check_tag(t) for t in tags]
    b = open_bundle(bundle, verify=True)  # a bad bundle stops here, before the registry is contacted
    try:
        if public_key is not None:
            from ..bundle.sign import verify_signature

            verify_signature(b, public_key)
        with tempfile.TemporaryDirectory(prefix="jd-publish-") as tmp:
            packed = Path(tmp) / "{}-{}.jdb".format(b.name, b.version)
            pack_bundle(b.root, packed)
            return _push(b, packed, r, extra, options, version_tagged)
    finally:
        b.close()


def _push(b: Any, packed: Path, r: "Reference", extra: "List[str]", options: "Optional[RegistryOptions]",
          version_tagged: bool) -> "Dict[str, Any]":
    sig = b.signature_path.read_bytes() if b.signed else None
    need = bundle_requirement(b.manifest)
    config = artifact.descriptor(artifact.CONFIG_TYPE, b.manifest_raw)
    size = packed.stat().st_size
    layer = {"mediaType": artifact.LAYER_TYPE, "digest": "sha256:" + sha256_file(packed), "size": size,
             "annotations": {artifact.TITLE: packed.name}}
    body = artifact.bundle_manifest(config, layer, artifact.bundle_annotations(b.manifest, sig, need[0] if need else None))
    reg = Registry(r.host, options)
    try:
        reg.upload_blob(r.repo, None, config["digest"], config["size"], data=b.manifest_raw)
        log.info("uploading %s %s (%.1f MiB) to %s/%s", b.name, b.version, size / (1 << 20), r.host, r.repo)
        sent = reg.upload_blob(r.repo, packed, layer["digest"], size)
        if not sent:
            log.info("the layer is in %s/%s already: not sent again", r.host, r.repo)
        _prepare_status_repo(reg, "{}/{}".format(r.repo, artifact.STATUS_SUFFIX))
        all_tags = [r.tag] + [t for t in extra if t != r.tag]
        if version_tagged and version_tag(b.version) not in all_tags:
            all_tags.append(version_tag(b.version))
        digest = ""
        for t in all_tags:
            digest = reg.put_manifest(r.repo, t, body)
    finally:
        reg.close()
    return {"ref": str(r), "digest": digest, "name": b.name, "version": b.version, "tags": all_tags,
            "layer": {"digest": layer["digest"], "size": size, "uploaded": sent}, "signed": sig is not None}


def _prepare_status_repo(reg: "Registry", repo: str) -> None:
    """The empty config blob of the boards' status records, once, from here: a fleet reporting at
    once then never uploads it (nor races on it); each report is one manifest PUT."""
    data = artifact.EMPTY_BLOB
    try:
        reg.upload_blob(repo, None, artifact.descriptor(artifact.EMPTY_TYPE, data)["digest"], len(data), data=data)
    except RegistryError as exc:  # no push rights there: the agents upload it when they need it
        log.info("could not prepare %s for status records (%s); the agents will", repo, exc)


def promote(ref: str, from_tag: str, to_tag: str, options: "Optional[RegistryOptions]" = None) -> "Dict[str, Any]":
    """Point REPO:TO_TAG at what REPO:FROM_TAG points at (the same manifest bytes, so the same
    digest), after checking FROM_TAG holds a bundle.  Nothing is uploaded."""
    r = Reference.parse(ref)
    if r.digest:
        raise BadInput("{}: --promote works on a repository (HOST/REPO), not a digest".format(ref))
    check_tag(from_tag, "--promote FROM")
    check_tag(to_tag, "--promote TO")
    if from_tag == to_tag:
        raise BadInput("--promote {0} {0}: give two different tags".format(from_tag))
    reg = Registry(r.host, options)
    try:
        body, media_type, digest = reg.get_manifest(r.repo, from_tag)
        pb = artifact.parse_bundle_manifest(body, digest, "{}/{}:{}".format(r.host, r.repo, from_tag))
        before = reg.head_manifest(r.repo, to_tag)
        reg.put_manifest(r.repo, to_tag, body, media_type or OCI_MANIFEST)
    finally:
        reg.close()
    return {"repository": "{}/{}".format(r.host, r.repo), "from": from_tag, "to": to_tag, "digest": digest,
            "name": pb.name, "version": pb.version, "previous": before, "changed": before != digest}


def describe_publish(res: "Dict[str, Any]") -> str:
    layer = res["layer"]
    from ..bundle.report import human_size

    return "published {} {} to {} ({}); layer {} {}; tags: {}{}".format(
        res["name"], res["version"], res["ref"], res["digest"][:19], human_size(layer["size"]),
        "uploaded" if layer["uploaded"] else "already there", ", ".join(res["tags"]),
        "" if res["signed"] else "; UNSIGNED (agents refuse it unless --allow-unsigned)")


def describe_promote(res: "Dict[str, Any]") -> str:
    if not res["changed"]:
        return "{}:{} already points at {} ({} {}); nothing changed".format(
            res["repository"], res["to"], res["digest"][:19], res["name"], res["version"])
    return "{repo}:{to} -> {d} ({n} {v}, as {frm}){was}; nothing uploaded".format(
        repo=res["repository"], to=res["to"], d=res["digest"][:19], n=res["name"], v=res["version"], frm=res["from"],
        was="; was {}".format(res["previous"][:19]) if res["previous"] else "")


__all__ = ["describe_promote", "describe_publish", "promote", "publish", "version_tag"]
