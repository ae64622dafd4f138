"""The bundle manifest: schema, validation, canonical bytes, engine naming.

``manifest.json`` is the one source of truth of a bundle: every other file is an
artifact listed in it with its size and sha256.  Its exact bytes are what a
signature covers and what identifies the bundle (``Bundle.sha256``), so it is
always written the same way: :func:`manifest_bytes`.
"""
import datetime as _dt
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, Optional

from .._lazy import require
from ..errors import BadInput, CheckFailed
from ..vocab import PRECISIONS

#: The manifest schema major version this code writes and reads.
SCHEMA_VERSION = 1
FORMAT = "jetson-deploy-bundle"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
#: Files at the bundle root that are not artifacts.
RESERVED = (MANIFEST, SIGNATURE)

#: Known artifact kinds (the schema accepts any lower-case kind so that newer
#: writers can add kinds within a schema version; BundleWriter accepts these).
KINDS = {
    "onnx": "ONNX model (model.onnx)",
    "onnx-qdq": "explicit INT8 Q/DQ ONNX model (model.qdq.onnx), TensorRT >= 8.5",
    "engine": "serialized TensorRT plan (engines/<tensorrt>_sm<NN>_<precision>.engine), with target",
    "calib-cache": "TensorRT INT8 calibration cache (calibration/<tensorrt>.cache), with target {tensorrt}",
    "ranges": "per-tensor INT8 dynamic ranges (calibration/ranges.json)",
    "labels": "class labels, one per line (labels.txt)",
    "exported-program": "torch.export program (model.pt2)",
    "torchscript": "TorchScript module (model.ts)",
    "timing-cache": "TensorRT timing cache",
    "other": "anything else the bundle carries",
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SEGMENT = re.compile(r"^[A-Za-z0-9._+-]+\Z")
_SCHEMA: "Optional[Dict[str, Any]]" = None


def schema_path() -> Path:
    return Path(__file__).with_name("manifest.schema.json")


def load_schema() -> "Dict[str, Any]":
    """The JSON Schema shipped in the package (``bundle/manifest.schema.json``)."""
    global _SCHEMA
    if _SCHEMA is None:
        with open(str(schema_path()), "r", encoding="utf-8") as f:
            _SCHEMA = json.load(f)
    return _SCHEMA


def check_relpath(path: str, what: str = "path") -> str:
    """Refuse anything but a plain relative POSIX path of safe ASCII segments.

    Used for manifest artifact paths and for every archive member, so a
    manifest or archive can never name a file outside the bundle.
    """
    if not isinstance(path, str) or not path:
        raise BadInput("{} {!r} is empty or not a string".format(what, path))
    if len(path) > 240:
        raise BadInput("{} {!r} is longer than 240 characters".format(what, path[:60] + "..."))
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise BadInput("{} {!r} must be relative, with '/' separators".format(what, path))
    for seg in path.split("/"):
        if seg in ("", ".", ".."):
            raise BadInput("{} {!r} has an empty, '.' or '..' segment".format(what, path))
        if not _SEGMENT.match(seg):
            raise BadInput("{} {!r} may only use letters, digits and '._+-'".format(what, path))
    return path


def normalize_trt_version(version: Any) -> str:
    """'8.6.2.3' -> '8.6.2', '10.3' -> '10.3.0': engines match on MAJOR.MINOR.PATCH.

    The fourth component of TensorRT versions is a build/packaging number;
    plans are tied to the release (major.minor.patch).
    """
    text = str(version).strip()
    parts = text.split(".")
    if not text or not all(p.isdigit() for p in parts):
        raise BadInput("TensorRT version {!r} must look like 8.6.2".format(version))
    nums = [int(p) for p in parts[:3]]
    while len(nums) < 3:
        nums.append(0)
    return "{}.{}.{}".format(*nums)


def trt_tuple(version: Any) -> tuple:
    return tuple(int(p) for p in normalize_trt_version(version).split("."))


def normalize_sm(sm: Any) -> int:
    """87, '87', '8.7', 'sm87', 'sm_87' -> 87."""
    text = str(sm).strip().lower()
    for prefix in ("sm_", "sm"):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    try:
        if "." in text:
            major, minor = text.split(".", 1)
            return int(major) * 10 + int(minor)
        value = int(text)
    except ValueError:
        raise BadInput("SM {!r} must be an integer like 87 (compute capability 8.7)".format(sm))
    if value < 10:
        raise BadInput("SM {!r} must be an integer like 87 (compute capability 8.7)".format(sm))
    return value


def normalize_precision(precision: Any) -> str:
    p = str(precision).strip().lower()
    if p not in PRECISIONS:
        raise BadInput("precision {!r} must be one of {}".format(precision, "|".join(PRECISIONS)))
    return p


def engine_filename(tensorrt: Any, sm: Any, precision: Any) -> str:
    """Bundle path of an engine: ``engines/<tensorrt>_sm<NN>_<precision>.engine``.

    >>> engine_filename("8.6.2.3", 87, "fp16")
    'engines/8.6.2_sm87_fp16.engine'
    """
    return "engines/{}_sm{}_{}.engine".format(normalize_trt_version(tensorrt), normalize_sm(sm), normalize_precision(precision))


def calib_cache_filename(tensorrt: Any) -> str:
    """Bundle path of a calibration cache: ``calibration/<tensorrt>.cache``."""
    return "calibration/{}.cache".format(normalize_trt_version(tensorrt))


def normalize_target(target: "Optional[Dict[str, Any]]") -> "Optional[Dict[str, Any]]":
    """Canonical target: tensorrt as MAJOR.MINOR.PATCH, sm as int, precision lower-case."""
    if target is None:
        return None
    if not isinstance(target, dict):
        raise BadInput("target must be a mapping like {'tensorrt': '8.6.2', 'sm': 87, 'precision': 'fp16'}")
    out = dict(target)
    if out.get("tensorrt") is not None:
        out["tensorrt"] = normalize_trt_version(out["tensorrt"])
    if out.get("sm") is not None:
        out["sm"] = normalize_sm(out["sm"])
    if out.get("precision") is not None:
        out["precision"] = normalize_precision(out["precision"])
    for k in ("jetpack", "platform"):
        if out.get(k) is not None:
            out[k] = str(out[k])
    return out


def created_now() -> str:
    """ISO-8601 UTC, second resolution; SOURCE_DATE_EPOCH pins it for reproducible builds."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.strip().isdigit():
        t = _dt.datetime.fromtimestamp(int(epoch), tz=_dt.timezone.utc)
    else:
        t = _dt.datetime.now(tz=_dt.timezone.utc)
    return t.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def manifest_bytes(manifest: "Dict[str, Any]") -> bytes:
    """The canonical serialisation: sorted keys, 2-space indent, UTF-8, trailing newline."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def parse_manifest(data: bytes, source: str) -> "Dict[str, Any]":
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckFailed("{}: manifest.json is not valid JSON ({})".format(source, exc))
    if not isinstance(obj, dict):
        raise CheckFailed("{}: manifest.json must hold a JSON object".format(source))
    return obj


def check_schema_version(manifest: "Dict[str, Any]", source: str) -> int:
    v = manifest.get("schema_version")
    if isinstance(v, bool) or not isinstance(v, int):
        raise CheckFailed(
            "{}: manifest.json has no integer schema_version (got {!r}); this jetson-deploy reads schema_version {}".format(
                source, v, SCHEMA_VERSION
            )
        )
    if v > SCHEMA_VERSION:
        raise CheckFailed(
            "{}: manifest schema_version {} is newer than this jetson-deploy reads (schema_version {}): "
            "upgrade jetson-deploy to read this bundle".format(source, v, SCHEMA_VERSION)
        )
    if v < 1:
        raise CheckFailed("{}: manifest schema_version {} is not valid (this jetson-deploy reads {})".format(source, v, SCHEMA_VERSION))
    return v


def _err_path(err: Any) -> str:
    parts = [str(p) for p in getattr(err, "absolute_path", [])]
    return "/".join(parts) if parts else "(top level)"


def validate_manifest(manifest: "Dict[str, Any]", source: str = "bundle", error: type = CheckFailed) -> None:
    """Check the schema version, the JSON Schema and the artifact list.

    Raises ``error`` (CheckFailed when reading, BadInput when writing) naming the
    first offending field.
    """
    try:
        check_schema_version(manifest, source)
    except CheckFailed as exc:
        raise error(str(exc))
    jsonschema = require("jsonschema", "validating bundle manifests")
    validator = jsonschema.Draft7Validator(load_schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: (len(list(e.absolute_path)), str(list(e.absolute_path))))
    if errors:
        e = errors[0]
        more = " (and {} more problems)".format(len(errors) - 1) if len(errors) > 1 else ""
        text = e.message
        if isinstance(e.instance, str) and _CONTROL.search(e.instance):
            text = "{!r} contains a control character (a line break, tab or the like)".format(e.instance)
        raise error("{}: manifest field {}: {}{}".format(source, _err_path(e), text, more))
    seen = set()
    for art in manifest.get("artifacts", []):
        try:
            check_relpath(art["path"], "artifact path")
        except BadInput as exc:
            raise error("{}: {}".format(source, exc))
        if art["path"] in RESERVED:
            raise error("{}: artifact path {} is reserved".format(source, art["path"]))
        key = art["path"]
        if key in seen:
            raise error("{}: artifact {} is listed twice".format(source, key))
        seen.add(key)
    # a file and a directory of the same name cannot both exist
    for p in seen:
        parts = p.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in seen:
                raise error("{}: artifact {} sits under another artifact's path".format(source, p))


def target_matches(target: "Optional[Dict[str, Any]]", want: "Dict[str, Any]") -> bool:
    """True when every key of ``want`` (after normalising) equals the target's."""
    if not want:
        return True
    if not target:
        return False
    t = normalize_target(target) or {}
    w = normalize_target(want) or {}
    return all(t.get(k) == v for k, v in w.items())
