"""Engine selection on load: bundled plan, else the local engine cache, else build.

1. A bundled engine whose target has exactly this TensorRT version
   (MAJOR.MINOR.PATCH), SM and precision (and shapes, when the target records
   them or the caller asks for other shapes than the spec's) -> ``"bundled"``.
2. Else the engine cache (:mod:`.engine_cache`) keyed by bundle sha256, TensorRT
   version, SM, precision and shapes -> ``"cache-hit"``.
3. Else build from ``model.onnx`` (INT8: the Q/DQ model on TensorRT >= 8.5,
   otherwise the calibration cache for this TensorRT version), store in the cache
   -> ``"built"``.  A corrupt cached plan is removed and rebuilt, never loaded.

Every bundle artifact used is checked against the manifest first; a mismatch is
CheckFailed, never a silent rebuild.
"""
import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from ..errors import BadInput
from .engine_cache import EngineCache, cache_key, canonical_shapes
from .manifest import normalize_precision, normalize_sm, normalize_target, normalize_trt_version, trt_tuple
from .reader import Bundle, open_bundle

log = logging.getLogger(__name__)

BuildFn = Callable[[str, str, Optional[str], Optional[str]], bytes]
BUNDLED, CACHE_HIT, BUILT = "bundled", "cache-hit", "built"


def int8_supported(sm: int) -> bool:
    """Fast INT8 needs SM 6.1 or >= 7.0 (Nano SM 5.3 and TX2 SM 6.2 have none)."""
    return sm == 61 or sm >= 70


def _spec_shapes(b: "Bundle") -> "Optional[Dict[str, List[int]]]":
    spec = b.manifest.get("spec")
    if not isinstance(spec, dict):
        return None
    inp = spec.get("input") or {}
    if "shape" not in inp:
        return None
    return canonical_shapes({inp.get("name", "input"): inp["shape"]})


def dynamic_batch(b: "Bundle") -> bool:
    """The bundle's ONNX model has a dynamic batch axis (``convert --dynamic-batch``)."""
    conv = b.manifest.get("conversion")
    return bool(conv.get("dynamic_batch")) if isinstance(conv, dict) else False


def find_bundled_engine(b: "Bundle", tensorrt: str, sm: int, precision: str, shapes: "Optional[Dict[str, List[int]]]" = None) -> "Optional[Dict[str, Any]]":
    """The bundled engine artifact for exactly this target, or None."""
    default = _spec_shapes(b)
    want = shapes if shapes is not None else default
    for art in sorted(b.engines, key=lambda a: a["path"]):
        t = normalize_target(art.get("target")) or {}
        if (t.get("tensorrt"), t.get("sm"), t.get("precision")) != (tensorrt, sm, precision):
            continue
        have = canonical_shapes(t["shapes"]) if t.get("shapes") else default
        if want is not None and have is not None and have != want:
            continue
        return art
    return None


def build_inputs(b: "Bundle", tensorrt: str, precision: str) -> "Tuple[Path, Optional[Path], Optional[Path]]":
    """(onnx, calibration cache or None, Q/DQ onnx or None) to build this target, all checked."""
    onnx = b.path("onnx")
    if onnx is None:
        raise BadInput("{}: bundle has no model.onnx to build a TensorRT {} engine from; add an engine built for this device with 'bundle add-engine'".format(b.source, tensorrt))
    if precision != "int8":
        return onnx, None, None
    ver = trt_tuple(tensorrt)
    qdq_art = b.artifact("onnx-qdq")
    if qdq_art is not None and ver >= (8, 5, 0):
        return onnx, None, b.verify_artifact(qdq_art)
    # only a cache for exactly this version: TensorRT skips a cache whose header version differs
    # (sampleINT8/README.md, NVIDIA/TensorRT release/8.2 L115-145) and the builder refuses it up front
    calib_art = b.artifact("calib-cache", {"tensorrt": tensorrt})
    if calib_art is not None:
        return onnx, b.verify_artifact(calib_art), None
    if qdq_art is not None and ver >= (8, 0, 0):
        log.warning("%s: using the Q/DQ model on TensorRT %s (explicit INT8 is reliable from 8.5)", b.source, tensorrt)
        return onnx, None, b.verify_artifact(qdq_art)
    raise BadInput(
        "{}: no INT8 data for TensorRT {}: the bundle has neither a Q/DQ model (onnx-qdq, TensorRT >= 8.5) nor "
        "calibration/{}.cache; use precision fp16, or re-convert with --calib".format(b.source, tensorrt, tensorrt)
    )


def default_build_fn(onnx_path: str, precision: str, calib_cache: "Optional[str]", qdq_onnx: "Optional[str]",
                     shapes: "Optional[Dict[str, List[int]]]" = None) -> bytes:
    """Build with :func:`jetson_deploy.trt.build.build_engine` (imported lazily).

    ``shapes`` (only when the caller asked for other shapes than the spec's) become a
    one-point optimization profile, for ONNX models with dynamic axes.
    """
    from ..trt.build import build_engine  # lazy: selecting a bundled or cached plan needs no builder

    kwargs: "Dict[str, Any]" = {}
    if calib_cache:
        kwargs["calib_cache"] = calib_cache
    if shapes:
        kwargs["profiles"] = {name: (shape, shape, shape) for name, shape in shapes.items()}
    return build_engine(qdq_onnx or onnx_path, precision, **kwargs)


NOT_FOUND = "not-found"


def _prepare(bundle: Any, tensorrt_version: Any, sm: Any, precision: Any, shapes: "Optional[Dict[str, Any]]") -> tuple:
    b = bundle if isinstance(bundle, Bundle) else open_bundle(bundle, verify=True)
    trt = normalize_trt_version(tensorrt_version)
    sm_i = normalize_sm(sm)
    prec = normalize_precision(precision)
    if prec == "int8" and not int8_supported(sm_i):
        raise BadInput("SM {} has no fast INT8 (Jetson Nano/TX2): use precision fp16".format(sm_i))
    want_shapes = canonical_shapes(shapes) if shapes is not None else _spec_shapes(b)
    return b, trt, sm_i, prec, want_shapes


def find_engine(
    bundle: "Union[Bundle, str, 'os.PathLike[str]']",
    tensorrt_version: Any,
    sm: Any,
    precision: Any,
    shapes: "Optional[Dict[str, Any]]" = None,
    cache_dir: "Optional[Union[str, 'os.PathLike[str]']]" = None,
    cache: "Optional[EngineCache]" = None,
) -> "Tuple[Optional[Path], str]":
    """Like :func:`resolve_engine` but never builds: ``(path, "bundled" | "cache-hit")`` or ``(None, "not-found")``."""
    b, trt, sm_i, prec, want_shapes = _prepare(bundle, tensorrt_version, sm, precision, shapes)
    art = find_bundled_engine(b, trt, sm_i, prec, canonical_shapes(shapes) if shapes is not None else None)
    if art is not None:
        return b.verify_artifact(art), BUNDLED
    c = cache if cache is not None else EngineCache(cache_dir)
    key = cache_key(b.sha256, trt, sm_i, prec, want_shapes)
    with c.lock(key):
        hit = c.get(key)
    return (hit, CACHE_HIT) if hit is not None else (None, NOT_FOUND)


def resolve_engine(
    bundle: "Union[Bundle, str, 'os.PathLike[str]']",
    tensorrt_version: Any,
    sm: Any,
    precision: Any,
    shapes: "Optional[Dict[str, Any]]" = None,
    cache_dir: "Optional[Union[str, 'os.PathLike[str]']]" = None,
    build_fn: "Optional[BuildFn]" = None,
    cache: "Optional[EngineCache]" = None,
    skip_bundled: bool = False,
) -> "Tuple[Path, str]":
    """Return ``(engine_path, how)`` with how in ``"bundled" | "cache-hit" | "built"``.

    ``bundle``: a :class:`Bundle` or a path (opened with full verification).
    ``shapes``: {input name: shape}; default the spec's input shape.
    ``build_fn(onnx_path, precision, calib_cache_path_or_None, qdq_onnx_path_or_None) -> bytes``
    builds a plan; default :func:`default_build_fn`.  ``cache`` overrides ``cache_dir``.
    ``skip_bundled``: the bundled plan did not deserialize here (right name, wrong build): go to
    the cache / a build from model.onnx.  A dynamic-batch bundle's bundled plan (its profile runs
    batch 1 to the maximum) serves any ``shapes``; built here, a plan gets a one-point profile at
    ``shapes`` (TensorRT needs a profile for a dynamic input), cached per shape.
    """
    b, trt, sm_i, prec, want_shapes = _prepare(bundle, tensorrt_version, sm, precision, shapes)
    dynamic = dynamic_batch(b)
    asked = canonical_shapes(shapes) if shapes is not None and not dynamic else None
    art = None if skip_bundled else find_bundled_engine(b, trt, sm_i, prec, asked)
    if art is not None:
        return b.verify_artifact(art), BUNDLED

    c = cache if cache is not None else EngineCache(cache_dir)
    key = cache_key(b.sha256, trt, sm_i, prec, want_shapes)
    with c.lock(key):
        hit = c.get(key)
        if hit is not None:
            return hit, CACHE_HIT
        onnx, calib, qdq = build_inputs(b, trt, prec)
        fn = build_fn or default_build_fn
        log.info("building a TensorRT %s sm%d %s engine for %s-%s (no bundled or cached plan)", trt, sm_i, prec, b.name, b.version)
        args = (str(onnx), prec, str(calib) if calib else None, str(qdq) if qdq else None)
        custom_shapes = shapes is not None and want_shapes != _spec_shapes(b)
        if build_fn is None and (custom_shapes or dynamic):
            data = default_build_fn(*args, shapes=want_shapes)
        else:
            data = fn(*args)
        info = {
            "bundle_name": b.name,
            "bundle_version": b.version,
            "bundle_sha256": b.sha256,
            "tensorrt": trt,
            "sm": sm_i,
            "precision": prec,
            "shapes": want_shapes,
            "int8_source": "qdq" if qdq else ("calib-cache" if calib else None),
        }
        path = c.put(key, data, info)
    return path, BUILT


def device_target(tensorrt_version: Any = None, sm: Any = None) -> "Tuple[str, int]":
    """(TensorRT version, SM) of this machine, each overridable; BadInput when undetectable."""
    if tensorrt_version is None:
        from .._lazy import require

        tensorrt_version = getattr(require("tensorrt", "selecting an engine for this device"), "__version__", None)
        if not tensorrt_version:
            raise BadInput("cannot read the TensorRT version here; pass --tensorrt X.Y.Z")
    if sm is None:
        gpu = None
        try:
            from ..machine import probe

            gpu = probe(with_gpu=True).get("gpu")
        except Exception:  # noqa: BLE001 -- probing is best effort
            gpu = None
        sm = gpu.get("sm") if isinstance(gpu, dict) else None
        if sm is None:
            raise BadInput("cannot detect this GPU's compute capability (no pycuda/torch CUDA); pass --sm NN")
    return normalize_trt_version(tensorrt_version), normalize_sm(sm)
