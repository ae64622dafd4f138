"""Lazy TensorRT import, version parsing and feature detection.

Each :class:`Features` field is a ``hasattr`` check on TensorRT's own classes, so a
backport or an odd build is handled by what it has, not by what its version says.
Versions are int tuples: ``(10, 3, 0, 30) > (8, 6, 2, 3)`` where the strings
compare the other way round.
"""
import importlib
import re
import sys
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

from .._lazy import INSTALL_HINTS
from ..errors import MissingDependency


def load_tensorrt(purpose: "Optional[str]" = None) -> Any:
    """Import ``tensorrt`` or raise :class:`MissingDependency` with how to get it.

    Not cached here: ``sys.modules`` is the cache, so a test can swap in a double.
    A broken install (e.g. PyPI's placeholder wheel that raises on import) is also
    reported as missing, with the import error in the message.
    """
    mod = sys.modules.get("tensorrt", False)
    if mod is not None and mod is not False:
        return mod
    what = " for " + purpose if purpose else ""
    if mod is None:  # explicitly blocked (tests) or a failed earlier import
        raise MissingDependency("tensorrt is needed{} but is not installed: {}".format(what, INSTALL_HINTS["tensorrt"]))
    try:
        return importlib.import_module("tensorrt")
    except (Exception, SystemExit) as exc:  # noqa: BLE001 -- placeholder wheels raise anything, or sys.exit()
        raise MissingDependency(
            "tensorrt is needed{} but cannot be imported ({}: {}): {}".format(
                what, type(exc).__name__, str(exc).splitlines()[0][:120] if str(exc) else "", INSTALL_HINTS["tensorrt"]
            )
        ) from None


def version_tuple(text: Any) -> "Tuple[int, ...]":
    """'8.5.2.2' -> (8, 5, 2, 2); '10.3.0.post12.dev1' -> (10, 3, 0); '' -> ()."""
    nums = []
    for part in str(text or "").split("+")[0].split("."):
        m = re.match(r"(\d+)", part)
        if not m:
            break
        nums.append(int(m.group(1)))
        if m.group(1) != part:
            break
    return tuple(nums)


def trt_version(trt: Any) -> "Tuple[int, ...]":
    return version_tuple(getattr(trt, "__version__", ""))


def calibration_version_int(version: Any) -> int:
    """NV_TENSORRT_VERSION as written in calibration cache headers.

    TensorRT 8.x: major*1000 + minor*100 + patch (8.5.2 -> 8502);
    TensorRT 10+: major*10000 + minor*100 + patch (10.3.0 -> 100300).
    """
    v = version if isinstance(version, tuple) else version_tuple(version)
    major, minor, patch = (tuple(v) + (0, 0, 0))[:3]
    if major >= 10:
        return major * 10000 + minor * 100 + patch
    return major * 1000 + minor * 100 + patch


CALIBRATOR_HEADER_NAMES = {
    "entropy2": "EntropyCalibration2",
    "minmax": "MinMaxCalibration",
    "entropy": "EntropyCalibration",
    "legacy": "LegacyCalibration",
}


def calibration_header(version: Any, kind: str = "entropy2") -> str:
    """'TRT-8502-EntropyCalibration2': the first line TensorRT writes and checks."""
    return "TRT-{}-{}".format(calibration_version_int(version), CALIBRATOR_HEADER_NAMES[kind])


@dataclass(frozen=True)
class Features:
    """What this TensorRT offers; every field comes from a hasattr check."""

    version: "Tuple[int, ...]"
    version_string: str
    build_serialized_network: bool  # Builder.build_serialized_network (8.0+)
    build_engine: bool  # Builder.build_engine (8.x; removed in 10)
    memory_pool_limit: bool  # IBuilderConfig.set_memory_pool_limit + MemoryPoolType (8.4+)
    max_workspace_size: bool  # IBuilderConfig.max_workspace_size (removed in 10)
    explicit_batch_flag: bool  # NetworkDefinitionCreationFlag.EXPLICIT_BATCH exists
    explicit_batch_required: bool  # the flag must be passed (8.x); 10.x ignores it
    tensor_api: bool  # ICudaEngine.num_io_tensors / get_tensor_* (8.5+)
    binding_api: bool  # ICudaEngine.num_bindings / get_binding_* (removed in 10)
    execute_async_v3: bool  # IExecutionContext.set_tensor_address + execute_async_v3 (8.5+)
    execute_async_v2: bool  # IExecutionContext.execute_async_v2 (removed in 10)
    set_input_shape: bool  # IExecutionContext.set_input_shape (8.5+)
    set_binding_shape: bool  # IExecutionContext.set_binding_shape (removed in 10)
    timing_cache: bool  # IBuilderConfig.create_timing_cache (8.0+)
    obey_precision_constraints: bool  # BuilderFlag.OBEY_PRECISION_CONSTRAINTS (8.2+)
    strict_types: bool  # BuilderFlag.STRICT_TYPES (deprecated 8.2, removed 10)
    parser_node_name: bool  # ParserError.node_name()/node_operator() (10.x)
    parse_from_file: bool  # OnnxParser.parse_from_file
    int8_calibrator: bool  # IInt8EntropyCalibrator2 present (deprecated from 10.1, still there)
    minmax_calibrator: bool
    dla: bool  # DeviceType.DLA

    def as_dict(self) -> "Dict[str, Any]":
        d = asdict(self)
        d["version"] = list(self.version)
        return d


def _has(obj: Any, *names: str) -> bool:
    return obj is not None and all(hasattr(obj, n) for n in names)


def features(trt: "Optional[Any]" = None) -> "Features":
    """Feature-detect the TensorRT module (imported lazily when not given)."""
    trt = trt if trt is not None else load_tensorrt()
    ver = trt_version(trt)
    flag_cls = getattr(trt, "NetworkDefinitionCreationFlag", None)
    explicit_flag = _has(flag_cls, "EXPLICIT_BATCH")
    engine = getattr(trt, "ICudaEngine", None)
    ctx = getattr(trt, "IExecutionContext", None)
    cfg = getattr(trt, "IBuilderConfig", None)
    builder = getattr(trt, "Builder", None)
    bflag = getattr(trt, "BuilderFlag", None)
    return Features(
        version=ver,
        version_string=str(getattr(trt, "__version__", "")),
        build_serialized_network=_has(builder, "build_serialized_network"),
        build_engine=_has(builder, "build_engine"),
        memory_pool_limit=_has(cfg, "set_memory_pool_limit") and _has(trt, "MemoryPoolType"),
        max_workspace_size=_has(cfg, "max_workspace_size"),
        explicit_batch_flag=explicit_flag,
        # TensorRT 10 networks are always explicit-batch and the flag is deprecated;
        # the binding API's removal is the marker of that generation.
        explicit_batch_required=explicit_flag and _has(engine, "num_bindings"),
        tensor_api=_has(engine, "num_io_tensors", "get_tensor_name", "get_tensor_mode"),
        binding_api=_has(engine, "num_bindings", "get_binding_name", "binding_is_input"),
        execute_async_v3=_has(ctx, "execute_async_v3", "set_tensor_address"),
        execute_async_v2=_has(ctx, "execute_async_v2"),
        set_input_shape=_has(ctx, "set_input_shape"),
        set_binding_shape=_has(ctx, "set_binding_shape"),
        timing_cache=_has(cfg, "create_timing_cache", "set_timing_cache"),
        obey_precision_constraints=_has(bflag, "OBEY_PRECISION_CONSTRAINTS"),
        strict_types=_has(bflag, "STRICT_TYPES"),
        parser_node_name=_has(getattr(trt, "ParserError", None), "node_name"),
        parse_from_file=_has(getattr(trt, "OnnxParser", None), "parse_from_file"),
        int8_calibrator=_has(trt, "IInt8EntropyCalibrator2"),
        minmax_calibrator=_has(trt, "IInt8MinMaxCalibrator"),
        dla=_has(getattr(trt, "DeviceType", None), "DLA"),
    )


def nptype(trt: Any, trt_dtype: Any) -> Any:
    """numpy dtype of a TensorRT DataType (trt.nptype, with a fallback by name)."""
    import numpy as np

    try:
        return np.dtype(trt.nptype(trt_dtype))
    except Exception:  # noqa: BLE001
        name = getattr(trt_dtype, "name", str(trt_dtype)).upper()
        table = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_,
                 "UINT8": np.uint8, "INT64": np.int64}
        if name in table:
            return np.dtype(table[name])
        raise
