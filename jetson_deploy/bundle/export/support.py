"""Which export formats a bundle can take, and why not: from the manifest alone.

``bundle inspect`` calls :func:`export_support` on packed bundles too (manifest only, no
extraction, no ONNX), and the exporters call the same checks first, so what inspect promises
is what export does.
"""
from typing import Any, Dict, List, Optional, Tuple

from ...errors import BadInput
from ..manifest import normalize_trt_version, trt_tuple
from .nvinfer_norm import input_reason

FORMATS = ("deepstream", "triton")
LABEL_SEPARATOR = ";"  # nvinfer's labels file splits lines at ';' (nvdsinfer_context_impl.cpp parseLabelsFile)


def manifest_spec(manifest: "Dict[str, Any]") -> Any:
    """The manifest's ModelSpec, or None when it has none (or one this version cannot read)."""
    data = manifest.get("spec")
    if not isinstance(data, dict):
        return None
    from ...spec import ModelSpec

    try:
        return ModelSpec.from_dict(data, source="manifest spec")
    except BadInput:
        return None


def _arts(manifest: "Dict[str, Any]", kind: str) -> "List[Dict[str, Any]]":
    return sorted((a for a in manifest.get("artifacts", []) if a.get("kind") == kind), key=lambda a: a["path"])


def folded_postprocess(spec: Any) -> "Optional[str]":
    post = spec.extra.get("postprocess")
    return post.get("folded") if isinstance(post, dict) else None


def _deepstream_reason(manifest: "Dict[str, Any]", spec: Any) -> "Optional[str]":
    if spec is None:
        return "the manifest has no spec (input, preprocessing, task): re-convert with --spec"
    if not _arts(manifest, "onnx") and not _arts(manifest, "engine"):
        return "the bundle has neither model.onnx nor an engine"
    why = input_reason(spec)
    if why:
        return why
    folded = folded_postprocess(spec)
    if folded == "softmax-topk":
        return ("its outputs are top-k scores and class ids (convert --fold-postprocess) but nvinfer's classifier reads one "
                "probability per class: re-convert without --fold-postprocess")
    if folded == "argmax":
        return ("its output is an argmax mask (convert --fold-postprocess) but nvinfer's segmentation reads per-class scores "
                "[C,H,W]: re-convert without --fold-postprocess")
    bad = [lab for lab in spec.labels if LABEL_SEPARATOR in lab]
    if bad:
        return "label {!r} holds ';', which nvinfer's labels file uses as its separator: rename it".format(bad[0])
    if spec.task == "detect" and not spec.labels:
        return "a detector needs labels: nvinfer's num-detected-classes is their count"
    return None


def _deepstream_detail(manifest: "Dict[str, Any]", spec: Any) -> str:
    parts = []
    if _arts(manifest, "onnx"):
        parts.append("onnx config (builds on the board)")
    n = len(_arts(manifest, "engine"))
    if n:
        parts.append("{} engine config{}".format(n, "s" if n != 1 else ""))
    text = "nvinfer: " + " + ".join(parts)
    if spec.task == "detect":
        text += "; set a bbox parser library for this head (parse-bbox-func-name)"
    return text


def triton_engines(manifest: "Dict[str, Any]", tensorrt: "Optional[str]" = None) -> "Tuple[Dict[int, Dict[str, Any]], Dict[int, List[str]]]":
    """(engine per SM, {SM: [TensorRT versions]} where one must be picked with --tensorrt).

    Engines of the bundle's precision are preferred (all engines when none has it); ``tensorrt``
    keeps only those of that TensorRT release: a Triton server links one TensorRT.
    """
    engines = _arts(manifest, "engine")
    precision = manifest.get("precision", "fp32")
    same = [a for a in engines if (a.get("target") or {}).get("precision") == precision]
    engines = same or engines
    if tensorrt is not None:
        want = normalize_trt_version(tensorrt)
        engines = [a for a in engines if normalize_trt_version(a["target"]["tensorrt"]) == want]
    by_sm: "Dict[int, List[Dict[str, Any]]]" = {}
    for a in engines:
        by_sm.setdefault(int(a["target"]["sm"]), []).append(a)
    chosen = {sm: arts[0] for sm, arts in by_sm.items() if len(arts) == 1}
    conflicts = {sm: sorted({a["target"]["tensorrt"] for a in arts}, key=trt_tuple) for sm, arts in by_sm.items() if len(arts) > 1}
    return chosen, conflicts


def _has_io(manifest: "Dict[str, Any]") -> bool:
    check = (manifest.get("conversion") or {}).get("onnx_check") or {}
    return bool(_arts(manifest, "onnx")) or bool(check.get("inputs") and check.get("outputs"))


def _triton_reason(manifest: "Dict[str, Any]") -> "Optional[str]":
    if not _arts(manifest, "onnx") and not _arts(manifest, "engine"):
        return "the bundle has neither model.onnx nor an engine"
    if not _has_io(manifest):
        return "no model.onnx (nor conversion.onnx_check) to read input and output names, shapes and dtypes from"
    return None


def _triton_detail(manifest: "Dict[str, Any]") -> str:
    chosen, conflicts = triton_engines(manifest)
    parts = []
    if chosen:
        parts.append("tensorrt_plan for " + ", ".join("sm{}".format(sm) for sm in sorted(chosen)))
    for sm in sorted(conflicts):
        parts.append("sm{} needs --tensorrt {}".format(sm, "|".join(conflicts[sm])))
    if _arts(manifest, "onnx"):
        parts.append("onnxruntime_onnx" + (" with --onnx" if chosen or conflicts else ""))
    return "; ".join(parts)


def export_support(manifest: "Dict[str, Any]") -> "Dict[str, Dict[str, Any]]":
    """{format: {"ok": bool, "detail": what it writes or why not}} for every export format."""
    spec = manifest_spec(manifest)
    out = {}
    why = _deepstream_reason(manifest, spec)
    out["deepstream"] = {"ok": why is None, "detail": why or _deepstream_detail(manifest, spec)}
    why = _triton_reason(manifest)
    out["triton"] = {"ok": why is None, "detail": why or _triton_detail(manifest)}
    return out


def check_exportable(manifest: "Dict[str, Any]", fmt: str) -> None:
    """BadInput (exit 2) with the one-line reason when ``fmt`` cannot be written for this bundle."""
    spec = manifest_spec(manifest)
    why = _deepstream_reason(manifest, spec) if fmt == "deepstream" else _triton_reason(manifest)
    if why:
        raise BadInput("{}: {}".format(fmt, why))
