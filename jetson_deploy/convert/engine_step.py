"""Where engines are built: now (TensorRT importable) or on the device at first load.

``build_here``: ``"auto"`` builds when TensorRT is importable and otherwise leaves
the bundle with ONNX (+ calibration data) for the device; ``True`` insists (exit 2
without TensorRT); ``False`` never builds (``convert(build_engine=...)``, CLI
``--build-engine/--no-build-engine``; :class:`~.options.EngineOptions` ``build``).  The result is
one :class:`Engines`.  The TensorRT work itself lives in
:mod:`jetson_deploy.trt.build` and :mod:`jetson_deploy.convert.torch2trt_convert`.
"""
import importlib.util
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .._lazy import INSTALL_HINTS
from ..errors import BadInput, MissingDependency
from ..spec import ModelSpec
from .options import EngineOptions

log = logging.getLogger(__name__)

ON_DEVICE = "engines will be built on the device at first load"

EngineEntry = Tuple[str, Path, "Dict[str, Any]"]  # bundle path, file, target


@dataclass
class Engines:
    """What the engine step gave: entries for the bundle, whether one was built here, a one-line
    note for the user, and the build record for the manifest."""

    entries: "List[EngineEntry]" = field(default_factory=list)
    built: bool = False
    note: str = ""
    record: "Dict[str, Any]" = field(default_factory=dict)


def _importable(name: str) -> bool:
    """Like ``has_module`` but honours ``sys.modules[name] = None`` (blocked) first."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def tensorrt_here() -> Any:
    """The ``tensorrt`` module when it imports here, else None (``sys.modules`` first, so doubles work)."""
    from ..trt.compat import load_tensorrt

    try:
        return load_tensorrt("building TensorRT engines")
    except MissingDependency:
        return None


def _target_now(precision: str) -> "Dict[str, Any]":
    """TensorRT version, SM and precision of an engine built on this machine."""
    from ..trt import build as tb

    return dict(tb.current_target(precision=precision))


def build_engines(
    onnx_path: Path,
    spec: "ModelSpec",
    precision: str,
    opts: "EngineOptions",
    int8: Any,
    work: Path,
    dynamic_batch: bool = False,
    torch_module: Any = None,
    example: Any = None,
    min_tensorrt: "Optional[str]" = None,
) -> "Engines":
    """Build zero or one engine as ``opts`` asks (``opts.build``: see the module docstring).

    ``int8``: the INT8 stage's data (``convert.int8.Int8Data``) or None; ``torch_module`` and
    ``example``: the PyTorch model, for ``--converter torch2trt``.  Progress goes to this
    module's logger.
    """
    have_trt = tensorrt_here() is not None
    converter, build_here = opts.converter, opts.build
    if converter == "torch2trt":
        if not _importable("torch2trt"):
            raise MissingDependency("torch2trt is needed for --converter torch2trt but is not installed: " + INSTALL_HINTS["torch2trt"])
        if not have_trt:
            raise MissingDependency("tensorrt is needed for --converter torch2trt but is not installed: " + INSTALL_HINTS["tensorrt"])
        if torch_module is None:
            raise BadInput("--converter torch2trt needs a PyTorch model (file.py:factory, module:factory, TorchScript or .pt2), not an .onnx file")
        return _build_torch2trt(torch_module, example, spec, precision, int8, work, opts.workspace_mb)
    if (opts.dla_core is not None or opts.timing_cache is not None) and (build_here is False or converter != "onnx"):
        raise BadInput("--dla-core/--timing-cache apply to engines built here with --converter onnx")
    if build_here is False:
        return Engines(note="no engine built (--no-build-engine): " + ON_DEVICE)
    if not have_trt:
        if build_here is True:
            raise BadInput(
                "--build-engine needs TensorRT, which is not installed here; leave it out (or pass --no-build-engine) "
                "to write ONNX + calibration data and build on the device at first load"
            )
        return Engines(note="TensorRT is not installed here: " + ON_DEVICE)
    if min_tensorrt:
        _check_min_tensorrt(min_tensorrt)
    return _build_onnx(onnx_path, spec, precision, int8, work, opts, dynamic_batch)


def _check_min_tensorrt(min_tensorrt: str) -> None:
    from ..trt.compat import load_tensorrt, version_tuple

    here = str(getattr(load_tensorrt("building TensorRT engines"), "__version__", ""))
    if version_tuple(here) < version_tuple(min_tensorrt):
        raise BadInput(
            "this model needs TensorRT >= {} (uint8 network input from --fold-preprocess) but TensorRT {} is installed here: "
            "convert without --fold-preprocess for JetPack 4.6, or pass --no-build-engine".format(min_tensorrt, here)
        )


def _profiles(spec: "ModelSpec", dynamic_batch: bool) -> "Optional[List[Dict[str, Any]]]":
    if not dynamic_batch:
        return None
    shape = list(spec.shape)
    mx = max(8, shape[0])
    return [{spec.input_name: ([1] + shape[1:], shape, [mx] + shape[1:])}]


def _build_onnx(
    onnx_path: Path, spec: "ModelSpec", precision: str, int8: Any, work: Path, opts: "EngineOptions", dynamic_batch: bool,
) -> "Engines":
    from ..bundle import engine_filename
    from ..trt import build as tb

    target = _target_now(precision)
    dla_core, workspace_mb = opts.dla_core, opts.workspace_mb
    kwargs: "Dict[str, Any]" = {"workspace_mb": workspace_mb, "profiles": _profiles(spec, dynamic_batch)}
    if dla_core is not None:
        kwargs["dla_core"] = int(dla_core)
    if opts.timing_cache is not None:
        kwargs["timing_cache_path"] = str(opts.timing_cache)
    source, int8_mode, int8_kwargs = _int8_input(onnx_path, precision, int8, target.get("tensorrt"))
    kwargs.update(int8_kwargs)
    log.info("building a TensorRT %s %s engine from %s%s", target.get("tensorrt"), precision, source.name,
             " ({})".format(int8_mode) if int8_mode else "")
    result = tb.build_engine_with_report(str(source), precision, **kwargs)
    if dla_core is not None:
        target["dla_core"] = int(dla_core)
    rel = engine_filename(target["tensorrt"], target["sm"], precision)
    path = work / Path(rel).name
    path.write_bytes(result.plan)
    record = {"converter": "onnx", "tensorrt": target["tensorrt"], "sm": target["sm"], "workspace_mb": workspace_mb, "int8_source": int8_mode}
    record.update({k: v for k, v in result.report.items() if k not in record and k != "onnx" and _jsonable(v)})
    return Engines([(rel, path, target)], True, "engine built here: {}".format(rel), record)


def _int8_input(onnx_path: Path, precision: str, int8: Any, tensorrt: Any) -> "Tuple[Path, Optional[str], Dict[str, Any]]":
    """(model to build, INT8 mode for the record, build_engine keywords) from the convert step's INT8 data.

    TensorRT 10 deprecates implicit INT8 (calibrators/caches): use the Q/DQ model there.
    8.x: the calibration cache written for this version (TensorRT picks INT8 layers
    freely), else per-tensor ranges, else the Q/DQ model (parsed from 8.5 on).
    """
    if precision != "int8" or int8 is None:
        return onnx_path, None, {}
    cache = int8.cache_for(tensorrt)
    if int8.qdq_path is not None and _major(tensorrt) >= 10:
        return Path(int8.qdq_path), "qdq", {}
    if cache is not None:
        return onnx_path, "calib-cache", {"calib_cache": str(cache)}
    if int8.ranges is not None:
        return onnx_path, "dynamic-ranges", {"dynamic_ranges": str(int8.ranges)}
    if int8.qdq_path is not None and _qdq_ok(tensorrt):
        return Path(int8.qdq_path), "qdq", {}
    return onnx_path, None, {}


def _major(version: Any) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def _jsonable(v: Any) -> bool:
    import json

    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


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


def _build_torch2trt(module: Any, example: Any, spec: "ModelSpec", precision: str, int8: Any, work: Path, workspace_mb: int) -> "Engines":
    from ..bundle import engine_filename
    from . import torch2trt_convert as t2

    target = _target_now(precision)
    dataset = int8.calib_set if (precision == "int8" and int8 is not None) else None
    log.info("building a TensorRT %s %s engine with torch2trt", target.get("tensorrt"), precision)
    data = t2.convert_with_torch2trt(
        module, example, precision, int8_calib_dataset=dataset, max_batch_size=max(1, spec.batch), workspace_mb=workspace_mb,
        input_names=[spec.input_name], output_names=list(spec.outputs),
    )
    rel = engine_filename(target["tensorrt"], target["sm"], precision)
    path = work / Path(rel).name
    path.write_bytes(bytes(data))
    record = {"converter": "torch2trt", "tensorrt": target["tensorrt"], "sm": target["sm"], "max_batch_size": max(1, spec.batch), "workspace_mb": workspace_mb}
    return Engines([(rel, path, target)], True, "engine built here with torch2trt: {}".format(rel), record)
