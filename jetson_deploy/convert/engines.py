"""Where engines are built: now (TensorRT importable) or on the device at first load.

``build_engine``: ``"auto"`` builds when TensorRT is importable and otherwise leaves
the bundle with ONNX (+ calibration data) for the device; ``True`` insists (exit 2
without TensorRT); ``False`` never builds.  The TensorRT work itself lives in
:mod:`jetson_deploy.convert.tensorrt_build` and
:mod:`jetson_deploy.convert.torch2trt_convert`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .._lazy import has_module, require
from ..errors import BadInput
from ..spec import ModelSpec

ON_DEVICE = "engines will be built on the device at first load"

EngineEntry = Tuple[str, Path, Dict[str, Any]]  # (bundle path, file, target)


def _target_now(precision: str) -> Dict[str, Any]:
    """TensorRT version and SM of this machine (the TensorRT helper's target function when present)."""
    from . import tensorrt_build as tb

    for fn_name in ("current_target", "engine_target", "target_for_build", "build_target"):
        fn = getattr(tb, fn_name, None)
        if callable(fn):
            try:
                t = dict(fn(precision=precision))
            except TypeError:
                t = dict(fn(precision))
            t.setdefault("precision", precision)
            return t
    trt = require("tensorrt", "building TensorRT engines")
    from ..platform import probe  # type: ignore[attr-defined]

    info = probe()
    sm = getattr(info, "sm", None) or (info.get("sm") if isinstance(info, dict) else None)
    if sm is None:
        raise BadInput("cannot tell this machine's GPU SM to name the engine; build on the device instead (--no-build-engine)")
    return {"tensorrt": trt.__version__, "sm": int(str(sm).replace(".", "")), "precision": precision}


def build_engines(
    onnx_path: Path,
    spec: ModelSpec,
    precision: str,
    converter: str,
    build_engine: Any,
    int8: Any,
    work: Path,
    workspace_mb: int = 1024,
    dynamic_batch: bool = False,
    torch_module: Any = None,
    example: Any = None,
    note: Optional[Callable[[str], None]] = None,
) -> Tuple[List[EngineEntry], bool, str, Dict[str, Any]]:
    """Build zero or one engine; return (entries, built, one-line note, build record)."""
    say = note or (lambda m: None)
    have_trt = has_module("tensorrt")
    if converter == "torch2trt":
        if not has_module("torch2trt"):
            require("torch2trt", "--converter torch2trt")  # raises MissingDependency (exit 2) with the install line
        if not have_trt:
            require("tensorrt", "--converter torch2trt")
        if torch_module is None:
            raise BadInput("--converter torch2trt needs a PyTorch model (file.py:factory, module:factory, TorchScript or .pt2), not an .onnx file")
        return _build_torch2trt(torch_module, example, spec, precision, int8, work, say)
    if build_engine is False:
        return [], False, "no engine built (--no-build-engine): " + ON_DEVICE, {}
    if not have_trt:
        if build_engine is True:
            raise BadInput(
                "--build-engine needs TensorRT, which is not installed here; leave it out (or pass --no-build-engine) "
                "to write ONNX + calibration data and build on the device at first load"
            )
        return [], False, "TensorRT is not installed here: " + ON_DEVICE, {}
    return _build_onnx(onnx_path, spec, precision, int8, work, workspace_mb, dynamic_batch, say)


def _profiles(spec: ModelSpec, dynamic_batch: bool) -> Optional[List[Dict[str, Any]]]:
    if not dynamic_batch:
        return None
    shape = list(spec.shape)
    mx = max(8, shape[0])
    return [{spec.input_name: ([1] + shape[1:], shape, [mx] + shape[1:])}]


def _build_onnx(onnx_path: Path, spec: ModelSpec, precision: str, int8: Any, work: Path, workspace_mb: int, dynamic_batch: bool, say: Callable[[str], None]) -> Tuple[List[EngineEntry], bool, str, Dict[str, Any]]:
    from ..bundle import engine_filename
    from . import tensorrt_build as tb

    target = _target_now(precision)
    kwargs: Dict[str, Any] = {"workspace_mb": workspace_mb, "profiles": _profiles(spec, dynamic_batch)}
    source = onnx_path
    int8_mode = None
    if precision == "int8" and int8 is not None:
        cache = int8.cache_for(target.get("tensorrt"))
        if int8.qdq_path is not None and _qdq_ok(target.get("tensorrt")):
            source = Path(int8.qdq_path)
            int8_mode = "qdq"
        elif cache is not None:
            kwargs["calib_cache"] = str(cache)
            int8_mode = "calib-cache"
        elif int8.ranges is not None:
            kwargs["dynamic_ranges"] = int8.ranges
            int8_mode = "dynamic-ranges"
    say("building a TensorRT {} {} engine from {}{}".format(target.get("tensorrt"), precision, source.name, " ({})".format(int8_mode) if int8_mode else ""))
    data = tb.build_engine(str(source), precision, **kwargs)
    rel = engine_filename(target["tensorrt"], target["sm"], precision)
    path = work / Path(rel).name
    path.write_bytes(bytes(data))
    record = {"converter": "onnx", "tensorrt": target["tensorrt"], "sm": target["sm"], "workspace_mb": workspace_mb, "int8_source": int8_mode}
    return [(rel, path, target)], True, "engine built here: {}".format(rel), record


def _qdq_ok(version: Any) -> bool:
    """Explicit (Q/DQ) INT8 needs TensorRT >= 8.5 to parse reliably; older ones take the cache."""
    try:
        from packaging.version import Version

        return Version(str(version)) >= Version("8.5")
    except Exception:
        try:
            major, minor = [int(p) for p in str(version).split(".")[:2]]
            return (major, minor) >= (8, 5)
        except ValueError:
            return False


def _build_torch2trt(module: Any, example: Any, spec: ModelSpec, precision: str, int8: Any, work: Path, say: Callable[[str], None]) -> Tuple[List[EngineEntry], bool, str, Dict[str, Any]]:
    from ..bundle import engine_filename
    from . import torch2trt_convert as t2

    target = _target_now(precision)
    dataset = int8.torch_dataset() if (precision == "int8" and int8 is not None) else None
    say("building a {} engine with torch2trt".format(precision))
    data = t2.convert_with_torch2trt(module, example, precision, int8_calib_dataset=dataset, max_batch_size=max(1, spec.batch))
    rel = engine_filename(target["tensorrt"], target["sm"], precision)
    path = work / Path(rel).name
    path.write_bytes(bytes(data))
    record = {"converter": "torch2trt", "tensorrt": target["tensorrt"], "sm": target["sm"], "max_batch_size": max(1, spec.batch)}
    return [(rel, path, target)], True, "engine built here with torch2trt: {}".format(rel), record
