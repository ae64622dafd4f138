"""INT8 for convert: ranges, TensorRT calibration caches and the Q/DQ model into the bundle.

The numbers come from :func:`jetson_deploy.calibration.quantize.compute_int8` (ONNX
Runtime over the calibration set, no TensorRT needed), computed on the *unfolded*
model: calibration sets hold tensors preprocessed with the spec, which is what
the unfolded model takes.  When preprocessing is folded into the graph, the Q/DQ
model gets the same fold and the network input's range moves to the tensor that
now carries the normalised image (``<input>__normalized``), so TensorRT's cache
and ranges name tensors of the graph in the bundle.
"""
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import BadInput
from ..spec import ModelSpec
from .options import Int8Options

log = logging.getLogger(__name__)

_SPEC_KEYS = ("shape", "dtype", "color", "layout", "resize_wh", "keep_aspect", "scale", "mean", "std")


@dataclass
class Int8Data:
    """What goes into the bundle for INT8 (files live in a work dir until then)."""

    ranges_path: Path
    cache_paths: "Dict[str, Path]"
    qdq_path: "Optional[Path]"
    calibration: "Dict[str, Any]"
    quantization: "Dict[str, Any]"
    accuracy: "Dict[str, Any]"
    calib_set: Any = None
    notes: "List[str]" = field(default_factory=list)

    @property
    def ranges(self) -> "Optional[Path]":
        return self.ranges_path

    def cache_for(self, version: Any) -> "Optional[Path]":
        """The cache written for this TensorRT MAJOR.MINOR.PATCH, if any."""
        if version is None:
            return None
        from ..bundle import normalize_trt_version

        want = normalize_trt_version(version)
        for v, p in self.cache_paths.items():
            if normalize_trt_version(v) == want:
                return p
        return None

    def add_to_bundle(self, w: Any) -> None:
        from ..bundle import calib_cache_filename

        w.add_file(self.ranges_path, "calibration/ranges.json", kind="ranges")
        for v, p in sorted(self.cache_paths.items()):
            w.add_file(p, calib_cache_filename(v), kind="calib-cache", target={"tensorrt": v})
        if self.qdq_path is not None:
            w.add_file(self.qdq_path, "model.qdq.onnx", kind="onnx-qdq")


def _check_set_matches(calib_set: Any, spec: "ModelSpec", calib: Any) -> None:
    cs = calib_set.spec
    diffs = [k for k in _SPEC_KEYS if getattr(cs, k) != getattr(spec, k)]
    if cs.input_name != spec.input_name:
        diffs.append("input name")
    if diffs:
        raise BadInput(
            "calibration set {} was made with another spec ({} differ): rebuild it with "
            "jetson-deploy calibrate ... --spec <this spec>".format(calib, ", ".join(diffs))
        )


def _writable(path: Path) -> bool:
    return os.access(str(path), os.W_OK)


def prepare_int8(
    onnx_path: Path,
    spec: "ModelSpec",
    opts: "Int8Options",
    work: Path,
    force: bool = False,
    unfolded_onnx: "Optional[Path]" = None,
    fold: "Optional[Callable[[Path], None]]" = None,
    trt_version: "Optional[str]" = None,
) -> "Int8Data":
    """Compute (or reuse) INT8 data for the model; refuse below ``opts.min_agreement`` unless ``force``.

    ``unfolded_onnx``: the model before folding (what the calibration set fits);
    ``fold``: applies the same fold to a copy of the Q/DQ model.
    """
    from ..calibration.dataset import load_calibration_set

    calib = Path(opts.calib)
    calib_set = load_calibration_set(calib)
    _check_set_matches(calib_set, spec, calib)
    res = _compute(Path(unfolded_onnx) if unfolded_onnx is not None else Path(onnx_path), calib, opts, work, trt_version, force)
    d = work / "int8-bundle"
    ranges_path, qdq_path, caches = _copy_out(res, d)
    renamed = None
    if fold is not None:
        from ..calibration.cache import write_cache

        fold(qdq_path)
        renamed = _rename_input(ranges_path, caches, spec.input_name, spec.input_name + "__normalized", res, write_cache)
    calibration = {
        "method": res.method,
        "set": str(calib),
        "set_sha256": res.set_sha256,
        "samples": int(len(calib_set)),
        "holdout": int(getattr(calib_set, "num_holdout", 0) or 0),
        "spec_sha256": calib_set.spec_sha256,
        "onnx_sha256": res.onnx_sha256,
        "reused": res.reused,
    }
    quantization = {
        "mode": "both",
        "calibrator": res.method,
        "qdq": "model.qdq.onnx (explicit INT8, TensorRT >= 8.5; runs in ONNX Runtime)",
        "calib_cache": "calibration/<tensorrt>.cache (implicit INT8, TensorRT 8.x)",
        "trt_versions": sorted(caches),
        "excluded": list(res.excluded),
        "excluded_groups": list(res.excluded_groups),
        "auto_exclude": bool(opts.auto_exclude),
        "min_agreement": float(opts.min_agreement),
        "passed": bool(res.passed),
        "forced": bool(force and not res.passed),
    }
    if renamed:
        quantization["input_tensor_renamed"] = renamed
    accuracy = {"reference": "onnxruntime-fp32", "agreement": dict(res.agreement), "agreement_before": res.agreement_before}
    return Int8Data(ranges_path, caches, qdq_path, calibration, quantization, accuracy, calib_set=calib_set)


def _compute(source: Path, calib: Path, opts: "Int8Options", work: Path, trt_version: "Optional[str]", force: bool) -> Any:
    """``compute_int8`` for the default TensorRT versions (+ the one here), then the agreement gate."""
    from ..bundle import normalize_trt_version
    from ..calibration.cache import DEFAULT_TRT_VERSIONS
    from ..calibration.gate import gate_failure
    from ..calibration.quantize import compute_int8

    versions = list(DEFAULT_TRT_VERSIONS)
    if trt_version is not None:
        v = normalize_trt_version(trt_version)
        if v not in [normalize_trt_version(x) for x in versions]:
            versions.append(v)
    out_dir = calib if _writable(calib) else work / "int8"
    res = compute_int8(
        source, calib, out_dir=out_dir, trt_versions=versions, min_agreement=opts.min_agreement, auto_exclude=opts.auto_exclude,
        exclude_budget=opts.exclude_budget, progress=opts.progress,
    )
    agreement = res.agreement
    log.info("INT8 (ONNX Runtime, Q/DQ) vs FP32: {} {:.4f} on {} held-out samples{}{}".format(
        agreement.get("metric", "agreement"), float(agreement.get("value", 0.0)), agreement.get("samples", "?"),
        ", {} layer group(s) kept in float".format(len(res.excluded_groups)) if res.excluded_groups else "",
        " (reused)" if res.reused != "none" else "",
    ))
    if agreement.get("note"):
        log.info("note: " + agreement["note"])
    err = gate_failure(res, opts.min_agreement, for_convert=True, auto_exclude=opts.auto_exclude,
                       exclude_budget=opts.exclude_budget)
    if err is not None:
        if not force:
            raise err
        log.info("INT8 agreement gate failed; continuing because of --force")
    return res


def _copy_out(res: Any, d: Path) -> "Tuple[Path, Path, Dict[str, Path]]":
    """Copy the INT8 files into ``d``: the bundle takes them from there, and folding rewrites them."""
    from ..bundle import normalize_trt_version

    d.mkdir(parents=True, exist_ok=True)
    ranges_path = d / "ranges.json"
    shutil.copyfile(str(res.ranges_path), str(ranges_path))
    qdq_path = d / "model.qdq.onnx"
    shutil.copyfile(str(res.qdq_path), str(qdq_path))
    caches: "Dict[str, Path]" = {}
    for v, p in res.cache_paths.items():
        caches[normalize_trt_version(v)] = Path(shutil.copyfile(str(p), str(d / "{}.cache".format(normalize_trt_version(v)))))
    return ranges_path, qdq_path, caches


def _rename_input(ranges_path: Path, caches: "Dict[str, Path]", old: str, new: str, res: Any, write_cache: Any) -> "Optional[Dict[str, str]]":
    """Move the network input's range to the tensor that carries it after folding."""
    data = json.loads(ranges_path.read_text(encoding="utf-8"))
    tensors = data.get("tensors", {})
    if old not in tensors:
        return None
    tensors[new] = tensors.pop(old)
    from .._files import atomic_write_json

    atomic_write_json(ranges_path, data)
    amax = {k: float(v["amax"]) if isinstance(v, dict) and "amax" in v else float(max(abs(v["min"]), abs(v["max"]))) for k, v in tensors.items()}
    excluded = set(getattr(res, "excluded_tensors", []) or [])
    amax = {k: v for k, v in amax.items() if k not in excluded}
    method = "minmax" if res.method == "minmax" else "entropy"
    for v, p in caches.items():
        write_cache(p, amax, v, method)
    return {"from": old, "to": new}
