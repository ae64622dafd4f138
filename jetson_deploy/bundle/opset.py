"""Which TensorRT parses which ONNX opset, and the device-side check of a bundle against it.

Device-side: standard library only (no torch, onnx or tensorrt import), Python 3.6.

The highest opset each TensorRT release's ONNX parser reads, from the README of the
release branch of github.com/onnx/onnx-tensorrt (line 5, "TensorRT X supports
operators up to Opset N"):

  release 7.2.1, 8.0-GA, 8.2-GA  up to opset 13   (8.2: JetPack 4.6, Jetson Nano)
  release 8.4-GA, 8.5-GA, 8.6-GA up to opset 17   (8.5: JetPack 5.1; 8.6: JetPack 6.0 DP)
  release 9.0-GA                 up to opset 19   (no JetPack ships 9.x)
  release 10.0-GA, 10.1-GA       "opset 9 to opset 20" (10.x: JetPack 6.1/6.2)

So the minimum TensorRT for an opset is the first release whose maximum reaches it.
Opsets above 20 are not documented by any release read here: no minimum is claimed.
"""
from typing import Any, Dict, Optional, Tuple

from ..errors import BadInput

#: (TensorRT major.minor, highest ONNX opset its parser reads), oldest first.
TRT_MAX_OPSET = (
    ("8.0", 13),
    ("8.4", 17),
    ("9.0", 19),
    ("10.0", 20),
)
#: JetPack that first ships a TensorRT at least this version (for the one-line messages).
_JETPACK = {"8.0": "4.6", "8.4": "5.1", "9.0": "6.1", "10.0": "6.1"}


def min_tensorrt_for_opset(opset: Any) -> "Optional[str]":
    """The oldest TensorRT (``"8.4"``) whose ONNX parser reads ``opset``; None when unknown (> 20)."""
    try:
        n = int(opset)
    except (TypeError, ValueError):
        return None
    for version, highest in TRT_MAX_OPSET:
        if n <= highest:
            return version
    return None


def check_known_opset(opset: Any) -> None:
    """Refuse an opset no TensorRT in the table reads (``convert --opset 21``): its bundle could
    record no ``requires.tensorrt_min``, and every device would find out only when its parser fails."""
    newest, highest = TRT_MAX_OPSET[-1]
    try:
        n = int(opset)
    except (TypeError, ValueError):
        return
    if n > highest:
        raise BadInput("ONNX opset {} is newer than any TensorRT jetson-deploy knows (TensorRT {} reads up to opset {}): "
                       "convert with --opset {} or lower".format(n, newest, highest, highest))


def max_opset_for_tensorrt(version: Any) -> int:
    """The highest opset TensorRT ``version`` parses (13 for anything older than 8.4)."""
    have = _tuple(version)
    best = TRT_MAX_OPSET[0][1]
    for v, highest in TRT_MAX_OPSET:
        if have >= _tuple(v):
            best = highest
    return best


def jetpack_for(version: str) -> str:
    return _JETPACK.get(version, "6.1")


def _tuple(version: Any) -> "Tuple[int, ...]":
    parts = []
    for p in str(version).strip().split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    if not parts:
        raise BadInput("TensorRT version {!r} must look like 8.2.1".format(version))
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)


def bundle_requirement(manifest: "Dict[str, Any]") -> "Optional[Tuple[str, str]]":
    """(minimum TensorRT, why) a manifest asks for, or None (older bundles say nothing).

    Reads ``requires.tensorrt_min`` (written by convert since opset selection), else
    derives it from ``source.onnx_opset``/``source.opset`` and ``conversion.min_tensorrt``
    (folded preprocessing), so bundles written before the field are checked too.
    """
    src = manifest.get("source") or {}
    conv = manifest.get("conversion") or {}
    req = manifest.get("requires") or {}
    opset = src.get("onnx_opset", src.get("opset", conv.get("opset")))
    candidates = []
    if req.get("tensorrt_min"):
        candidates.append((str(req["tensorrt_min"]), req.get("why") or _opset_why(opset)))
    by_opset = min_tensorrt_for_opset(opset) if opset else None
    if by_opset:
        candidates.append((by_opset, _opset_why(opset)))
    if conv.get("min_tensorrt"):
        candidates.append((str(conv["min_tensorrt"]), "the preprocessing folded into the graph"))
    if not candidates:
        return None
    return max(candidates, key=lambda c: _tuple(c[0]))


def _opset_why(opset: Any) -> str:
    return "ONNX opset {}".format(opset) if opset else "this bundle"


def check_tensorrt_compat(bundle: Any, trt_version: Any) -> None:
    """Refuse, in one line and before any engine build, a bundle this TensorRT cannot parse.

    ``bundle``: a :class:`~jetson_deploy.bundle.Bundle` or a manifest dict.  Raises
    :class:`BadInput`; returns None when the bundle is fine or says nothing.
    """
    if trt_version is None:
        return
    msg = compat_problem(getattr(bundle, "manifest", bundle), trt_version)
    if msg:
        raise BadInput(msg)


def compat_problem(manifest: "Dict[str, Any]", trt_version: Any) -> "Optional[str]":
    """The one-line problem (or None) of running ``manifest``'s bundle on TensorRT ``trt_version``."""
    need = bundle_requirement(manifest or {})
    if need is None or _tuple(trt_version) >= _tuple(need[0]):
        return None
    version, why = need
    here = ".".join(str(p) for p in _tuple(trt_version)[:2])
    lower = (manifest.get("requires") or {}).get("lower_opsets")
    if why.startswith("ONNX opset") and lower:  # convert tried them: --opset N would fail the same way
        fix = "the model does not export at a lower opset ({}): replace that operator in the model".format(lower)
    elif why.startswith("ONNX opset"):
        fix = "re-convert with --opset {} (the highest TensorRT {} parses)".format(max_opset_for_tensorrt(trt_version), here)
    else:
        fix = "re-convert without --fold-preprocess"
    name = manifest.get("name", "the bundle")
    return "bundle {} needs TensorRT >= {} for {}; this device has TensorRT {}: {}, or flash JetPack {}".format(
        name, version, why, trt_version, fix, jetpack_for(version))
