"""Build a TensorRT engine (serialized plan bytes) from an ONNX file.

:func:`build_engine` (plan bytes) and :func:`build_engine_with_report` (plan + what was
done, for the bundle manifest) compose one step per module, each driving TensorRT 8.2
(JetPack 4.6), 8.5 (JetPack 5), 8.6 and 10.x (JetPack 6) through the feature flags of
:func:`jetson_deploy.trt.features`:

1. network from ONNX, parser errors as one line naming node and op (:mod:`.network`);
2. builder config: workspace, FP16/INT8 flags, strict types (:mod:`.config`); INT8 is
   refused on GPUs without fast INT8 (Jetson Nano/TX1, SM 5.3; TX2, SM 6.2);
3. optimization profiles for dynamic shapes (:mod:`.profiles`);
4. the INT8 source: calibrator, per-tensor dynamic ranges, calibration cache or a Q/DQ
   model (:mod:`.int8`);
5. DLA core with GPU fallback (:mod:`.config`);
6. timing cache load + atomic save (:mod:`.timing_cache`);
7. serialize: ``build_serialized_network`` (8.0+) else ``build_engine(...).serialize()``.

Engine names in a bundle: ``engines/<tensorrt-version>_sm<NN>_<precision>.engine``
(:func:`engine_relpath` of :func:`target_for`).
"""
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from .._files import atomic_write_bytes
from ..errors import BadInput, CheckFailed, JetsonDeployError
from ..vocab import PRECISIONS
from .compat import features, load_tensorrt
from .config import create_config, use_dla
from .int8 import Int8Setup, Int8Sources, set_int8_source
from .logger import make_logger
from .network import is_qdq, network_from_onnx
from .profiles import add_profiles, normalize_profiles, profiles_report
from .timing_cache import load_timing_cache, save_timing_cache

DEFAULT_WORKSPACE_MB = 1024


# ------------------------------------------------------------------------------------------------
# targets and engine names
# ------------------------------------------------------------------------------------------------
def _sm_from(device: Any) -> "Optional[int]":
    """87 from 87, (8, 7), '8.7', 'sm87', 'sm_87', {'sm': 87}, an object with .sm or compute_capability()."""
    if device is None:
        return None
    if isinstance(device, bool):
        return None
    if isinstance(device, int):
        return device
    if isinstance(device, float):
        return int(round(device * 10))
    if isinstance(device, (tuple, list)) and len(device) == 2:
        return int(device[0]) * 10 + int(device[1])
    if isinstance(device, str):
        m = re.fullmatch(r"\s*(?:sm_?)?(\d+)(?:\.(\d))?\s*", device.lower())
        if not m:
            return None
        return int(m.group(1)) * 10 + int(m.group(2)) if m.group(2) is not None else int(m.group(1))
    if isinstance(device, Mapping):
        for key in ("sm", "compute_capability"):
            if device.get(key) is not None:
                return _sm_from(device[key])
        gpu = device.get("gpu")
        return _sm_from(gpu) if gpu is not None else None
    sm = getattr(device, "sm", None)
    if sm is not None:
        return _sm_from(sm)
    cc = getattr(device, "compute_capability", None)
    if callable(cc):
        return _sm_from(tuple(cc()))
    return None


def _detect_sm() -> "Optional[int]":
    try:
        from ..machine import probe

        return _sm_from(probe(with_gpu=True).get("gpu"))
    except Exception:  # noqa: BLE001 -- probing is best effort
        return None


def target_for(trt: Any = None, device: Any = None, precision: str = "fp16") -> "Dict[str, Any]":
    """``{"tensorrt": "8.5.2.2", "sm": 87, "precision": "fp16"}`` for this TensorRT and GPU.

    The version is TensorRT's own string; engine names use its release part
    (:func:`release_version`, as the bundle does).

    ``device``: the GPU's SM in any common spelling (87, (8, 7), "8.7", "sm87", a
    platform-probe dict); None probes this machine.
    """
    if precision not in PRECISIONS:
        raise BadInput("precision must be one of {}, got {!r}".format("/".join(PRECISIONS), precision))
    trt = trt if trt is not None else load_tensorrt("naming TensorRT engines")
    sm = _sm_from(device) if device is not None else _detect_sm()
    if sm is None:
        raise BadInput("cannot tell the GPU's SM (compute capability) to name the engine: pass it, e.g. device=87 for Orin")
    return {"tensorrt": str(trt.__version__), "sm": int(sm), "precision": precision}


def release_version(version: Any) -> str:
    """'8.6.2.3' -> '8.6.2': plans are tied to the TensorRT release (major.minor.patch); the 4th
    component is a build number.  Same rule as the bundle's engine names (bundle.manifest)."""
    v = (tuple(int(x) for x in re.findall(r"\d+", str(version).split("+")[0])[:3]) + (0, 0, 0))[:3]
    return "{}.{}.{}".format(*v)


def current_target(precision: str = "fp16", device: Any = None) -> "Dict[str, Any]":
    """:func:`target_for` with the installed TensorRT."""
    return target_for(None, device, precision)


def engine_filename(target: "Mapping[str, Any]") -> str:
    """'8.5.2_sm87_fp16.engine' (DESIGN.md bundle naming; version as in :func:`release_version`)."""
    return "{}_sm{}_{}.engine".format(release_version(target["tensorrt"]), int(target["sm"]), target["precision"])


def engine_relpath(target: "Mapping[str, Any]") -> str:
    return "engines/" + engine_filename(target)


# ------------------------------------------------------------------------------------------------
# the build
# ------------------------------------------------------------------------------------------------
@dataclass
class BuildResult:
    """A built engine: the plan bytes and what the build did (flags, INT8 source, profiles, ...)."""

    plan: bytes
    report: "Dict[str, Any]"


def build_engine(onnx_path: "Union[str, Path]", precision: str = "fp16", **options: Any) -> bytes:
    """Build and return a serialized TensorRT engine (plan bytes); options as :func:`build_engine_with_report`."""
    return build_engine_with_report(onnx_path, precision, **options).plan


def build_engine_with_report(
    onnx_path: "Union[str, Path]",
    precision: str = "fp16",
    calibrator: Any = None,
    dynamic_ranges: Any = None,
    calib_cache: "Optional[Union[str, Path]]" = None,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    profiles: Any = None,
    timing_cache_path: "Optional[Union[str, Path]]" = None,
    dla_core: "Optional[int]" = None,
    gpu_fallback: bool = True,
    strict_types: bool = False,
    verbose: bool = False,
) -> BuildResult:
    """Build a TensorRT engine for ``onnx_path``; the plan and a JSON-able report of the build.

    ``precision``: fp32 | fp16 | int8.  INT8 needs exactly one source: ``calibrator``
    (an ``IInt8*Calibrator``, e.g. from :func:`jetson_deploy.trt.calibrator.make_calibrator`),
    ``dynamic_ranges`` (ranges.json path / Ranges / ``{tensor: amax}``),
    ``calib_cache`` (a TensorRT calibration cache written for this TensorRT version),
    or a Q/DQ ``onnx_path`` (explicit INT8, no other source allowed).  INT8 also
    enables FP16 so layers left unquantized run in FP16.
    ``profiles``: ``{input: (min, opt, max)}`` or a list of them; required for
    dynamic inputs.  ``timing_cache_path`` is read when present and written back
    (atomically) after the build.  ``dla_core`` runs on that DLA core, with GPU
    fallback unless ``gpu_fallback=False``.  ``strict_types`` obeys per-layer
    precisions (``OBEY_PRECISION_CONSTRAINTS``, else ``STRICT_TYPES`` on old 8.x).

    Raises BadInput (exit 2) for unusable input/options (missing file, parser
    failure, no INT8 on this GPU, bad profile) and CheckFailed (exit 1) when
    TensorRT's build itself fails.
    """
    path = Path(onnx_path)
    sources = Int8Sources(calibrator, dynamic_ranges, calib_cache)
    profs = _check_options(path, precision, sources, dla_core, workspace_mb, profiles)
    trt = load_tensorrt("building TensorRT engines")
    feats = features(trt)
    logger = make_logger(trt, verbose)
    builder = trt.Builder(logger.native)
    _check_gpu(trt, builder, logger, precision)
    network, parser = network_from_onnx(trt, feats, builder, logger, path)
    qdq = is_qdq(trt, network)
    if qdq and precision != "int8":
        raise BadInput("{} is quantized (Q/DQ nodes): build it with --precision int8, or use the unquantized model for {}".format(
            path.name, precision))
    config, flags, workspace_bytes = create_config(trt, feats, builder, precision, workspace_mb, strict_types)
    dynamic = add_profiles(builder, config, logger, network, profs, path.name)
    int8 = Int8Setup()
    if precision == "int8":
        int8 = set_int8_source(trt, feats, builder, config, network, sources, qdq, profs, dynamic, path.name)
    if dla_core is not None:
        use_dla(trt, feats, builder, config, flags, dla_core, gpu_fallback)
    tc_path, tc_loaded = load_timing_cache(feats, config, timing_cache_path)
    plan = serialize(feats, builder, network, config, logger, path.name, int8.calibrator)
    del parser  # kept alive until here: it owns the parsed weights
    tc_saved = save_timing_cache(config, tc_path) if tc_path is not None else None
    report = _report(
        feats.version_string, precision, path, workspace_bytes=workspace_bytes, profiles=profs, int8=int8, dla_core=dla_core,
        timing_cache_loaded=tc_loaded, flags=flags.names, timing_cache_saved=tc_saved, warnings=len(logger.warnings), plan=plan)
    return BuildResult(plan, report)


def _report(version: str, precision: str, path: Path, workspace_bytes: "Optional[int]", profiles: "List[Any]", int8: Int8Setup,
            dla_core: "Optional[int]", timing_cache_loaded: "Optional[bool]", flags: "List[str]", timing_cache_saved: "Optional[str]",
            warnings: int, plan: bytes) -> "Dict[str, Any]":
    """What the build did, JSON-able, for the bundle manifest; optional keys only when the step ran."""
    report: "Dict[str, Any]" = {"tensorrt": version, "precision": precision, "onnx": str(path)}
    if workspace_bytes is not None:
        report["workspace_bytes"] = workspace_bytes
    report["profiles"] = profiles_report(profiles)
    if int8.dynamic_ranges is not None:
        report["dynamic_ranges"] = int8.dynamic_ranges
    report["int8_source"] = int8.source
    if dla_core is not None:
        report["dla_core"] = int(dla_core)
    if timing_cache_loaded is not None:
        report["timing_cache_loaded"] = timing_cache_loaded
    report["flags"] = flags
    if timing_cache_saved is not None:
        report["timing_cache_saved"] = timing_cache_saved
    report.update(warnings=warnings, plan_bytes=len(plan))
    return report


def _check_options(path: Path, precision: str, sources: Int8Sources, dla_core: "Optional[int]", workspace_mb: "Optional[int]",
                   profiles: Any) -> "List[Any]":
    """Refuse unusable options before TensorRT is loaded; the normalized profiles."""
    if precision not in PRECISIONS:
        raise BadInput("precision must be one of {}, got {!r}".format("/".join(PRECISIONS), precision))
    if not path.is_file():
        raise BadInput("ONNX model {} does not exist".format(path))
    given = sources.given()
    if given and precision != "int8":
        raise BadInput("{} only applies to --precision int8 (got {})".format(" and ".join(given), precision))
    if len(given) > 1:
        raise BadInput("give one INT8 source, not {} (a calibrator reads its own cache: make_calibrator(..., cache_path=...))".format(" and ".join(given)))
    if dla_core is not None and precision == "fp32":
        raise BadInput("DLA runs FP16 or INT8 only: build with --precision fp16 or int8 to use DLA core {}".format(dla_core))
    if workspace_mb is not None and int(workspace_mb) <= 0:
        raise BadInput("workspace_mb must be positive, got {}".format(workspace_mb))
    return normalize_profiles(profiles)


def _check_gpu(trt: Any, builder: Any, logger: Any, precision: str) -> None:
    """Refuse INT8 on GPUs without fast INT8; warn (through TensorRT's logger) on slow FP16."""
    if precision == "int8" and hasattr(builder, "platform_has_fast_int8") and not builder.platform_has_fast_int8:
        sm = _detect_sm()
        raise BadInput(
            "this GPU{} has no fast INT8 in TensorRT (Jetson Nano/TX1 are SM 5.3, TX2 SM 6.2): build with --precision fp16 instead".format(
                " (SM {}.{})".format(sm // 10, sm % 10) if sm else ""))
    if precision in ("fp16", "int8") and hasattr(builder, "platform_has_fast_fp16") and not builder.platform_has_fast_fp16:
        logger.log(trt.Logger.WARNING, "this GPU has no fast FP16; TensorRT may run FP32 kernels")


def serialize(feats: Any, builder: Any, network: Any, config: Any, logger: Any, name: str, calibrator: Any = None) -> bytes:
    """Run TensorRT's build and return the plan; a calibrator's own error wins over TensorRT's None."""
    version = feats.version_string
    if feats.build_serialized_network:
        plan = builder.build_serialized_network(network, config)
    elif feats.build_engine:
        engine = builder.build_engine(network, config)
        plan = engine.serialize() if engine is not None else None
    else:
        raise BadInput("TensorRT {} has neither build_serialized_network nor build_engine".format(version))
    cal_error = getattr(calibrator, "error", None) if calibrator is not None else None
    if isinstance(cal_error, JetsonDeployError):
        raise cal_error
    if cal_error is not None:
        raise CheckFailed("INT8 calibration of {} failed: {}: {}".format(name, type(cal_error).__name__, cal_error))
    if plan is None:
        raise CheckFailed("TensorRT {} failed to build {}: {}".format(
            version, name, logger.summary() or "no error logged (run with verbose=True)"))
    return bytes(plan)


def save_engine(plan: bytes, path: "Union[str, Path]") -> Path:
    """Write plan bytes atomically (never a half-written .engine)."""
    return atomic_write_bytes(path, bytes(plan))
