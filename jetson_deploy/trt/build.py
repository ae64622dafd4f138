"""Build a TensorRT engine (serialized plan bytes) from an ONNX file.

One function, :func:`build_engine`, drives TensorRT 8.2 (JetPack 4.6), 8.5
(JetPack 5), 8.6 and 10.x (JetPack 6) through the feature flags of
:func:`jetson_deploy.trt.features`:

* network: explicit batch (``EXPLICIT_BATCH`` where the flag is still required,
  8.x; TensorRT 10 is always explicit and deprecates the flag);
* ONNX parser errors become one line naming the node and op;
* precision: FP16 / INT8 flags; INT8 from a calibrator, from per-tensor dynamic
  ranges (``ranges.json`` / ``{tensor: amax}``), from a calibration cache, or from a
  Q/DQ model (explicit INT8: nothing else allowed); INT8 is refused on GPUs without
  fast INT8 (Jetson Nano/TX1, SM 5.3; TX2, SM 6.2);
* workspace: ``set_memory_pool_limit(MemoryPoolType.WORKSPACE)`` (8.4+) else
  ``max_workspace_size``;
* optimization profiles for dynamic shapes; timing cache load + atomic save;
  DLA core with GPU fallback;
* ``build_serialized_network`` (8.0+) else ``build_engine(...).serialize()``.

Engine names in a bundle: ``engines/<tensorrt-version>_sm<NN>_<precision>.engine``
(:func:`engine_relpath` of :func:`target_for`).
"""
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .._files import atomic_write_bytes
from ..errors import BadInput, CheckFailed, JetsonDeployError
from ..trt.compat import calibration_version_int, features, load_tensorrt, nptype, trt_version
from ..trt.logger import format_parser_failure, make_logger, parser_issues

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_WORKSPACE_MB = 1024

ShapeTriple = Tuple[Sequence[int], Sequence[int], Sequence[int]]
ProfileSpec = Mapping[str, Any]


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
# option parsing
# ------------------------------------------------------------------------------------------------
def normalize_profiles(profiles: Any) -> "List[Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]]]":
    """One dict or a list of dicts ``{input: (min, opt, max)}`` (or ``{"min":..,"opt":..,"max":..}``)."""
    if profiles is None:
        return []
    if isinstance(profiles, Mapping):
        profiles = [profiles]
    out = []
    for k, prof in enumerate(profiles):
        if not isinstance(prof, Mapping) or not prof:
            raise BadInput("optimization profile {} must map input names to (min, opt, max) shapes".format(k))
        norm = {}
        for name, shapes in prof.items():
            if isinstance(shapes, Mapping):
                try:
                    shapes = (shapes["min"], shapes["opt"], shapes["max"])
                except KeyError:
                    raise BadInput("profile {} input '{}': give min, opt and max shapes".format(k, name))
            try:
                lo, mid, hi = (tuple(int(d) for d in s) for s in shapes)
            except (TypeError, ValueError):
                raise BadInput("profile {} input '{}': shapes must be three lists of ints (min, opt, max)".format(k, name))
            if not (len(lo) == len(mid) == len(hi)) or any(not (a <= b <= c) or a < 1 for a, b, c in zip(lo, mid, hi)):
                raise BadInput("profile {} input '{}': need 1 <= min <= opt <= max in every dimension, got {} {} {}".format(
                    k, name, list(lo), list(mid), list(hi)))
            norm[str(name)] = (lo, mid, hi)
        out.append(norm)
    return out


def load_dynamic_ranges(ranges: Any) -> "Dict[str, Tuple[float, float]]":
    """``{tensor: (min, max)}`` from a ranges.json path, a Ranges object or a dict.

    Values may be an amax (symmetric), ``[min, max]``, ``{"amax": a}`` or
    ``{"min": a, "max": b}``; a ``{"tensors": {...}}`` (ranges.json) or
    ``{"ranges": {...}}`` wrapper is unwrapped.
    """
    source = "dynamic ranges"
    if isinstance(ranges, (str, Path)):
        source = str(ranges)
        try:
            ranges = json.loads(Path(ranges).read_text(encoding="utf-8"))
        except OSError as exc:
            raise BadInput("cannot read INT8 ranges {} ({})".format(ranges, exc.strerror or exc))
        except ValueError as exc:
            raise BadInput("{} is not JSON ({})".format(ranges, exc))
    elif not isinstance(ranges, Mapping):
        tensors = getattr(ranges, "tensors", None)
        if isinstance(tensors, Mapping):
            ranges = tensors
        elif callable(getattr(ranges, "amax", None)):
            ranges = ranges.amax()
        else:
            raise BadInput("dynamic ranges must be a ranges.json path, a dict or a Ranges object, not {}".format(type(ranges).__name__))
    if isinstance(ranges, Mapping):
        for key in ("tensors", "ranges"):
            if isinstance(ranges.get(key), Mapping):
                ranges = ranges[key]
                break
    out: "Dict[str, Tuple[float, float]]" = {}
    for name, v in ranges.items():
        try:
            if isinstance(v, Mapping):
                if "min" in v and "max" in v:
                    lo, hi = float(v["min"]), float(v["max"])
                else:
                    a = abs(float(v["amax"]))
                    lo, hi = -a, a
            elif isinstance(v, (list, tuple)):
                lo, hi = float(v[0]), float(v[1])
            else:
                a = abs(float(v))
                lo, hi = -a, a
        except (KeyError, TypeError, ValueError, IndexError):
            raise BadInput("{}: tensor '{}' has no usable range ({!r})".format(source, name, v))
        if not lo <= hi:
            raise BadInput("{}: tensor '{}' has min {} > max {}".format(source, name, lo, hi))
        out[str(name)] = (lo, hi)
    if not out:
        raise BadInput("{}: no tensors".format(source))
    return out


_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")
_ALGO_KIND = {"EntropyCalibration2": "entropy2", "MinMaxCalibration": "minmax",
              "EntropyCalibration": "entropy", "LegacyCalibration": "legacy"}


def read_cache_header(path: "Union[str, Path]") -> "Tuple[int, str]":
    """(version int, calibrator kind) from a calibration cache's first line."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            first = f.readline(256).decode("utf-8", "replace").strip()
    except OSError as exc:
        raise BadInput("cannot read calibration cache {} ({})".format(p, exc.strerror or exc))
    m = _HEADER.match(first)
    if not m or m.group(2) not in _ALGO_KIND:
        raise BadInput("{} is not a TensorRT calibration cache (first line {!r}, expected TRT-<version>-EntropyCalibration2)".format(p, first[:60]))
    return int(m.group(1)), _ALGO_KIND[m.group(2)]


def _version_text(n: int) -> str:
    if n >= 100000:
        return "{}.{}.{}".format(n // 10000, (n // 100) % 100, n % 100)
    return "{}.{}.{}".format(n // 1000, (n // 100) % 10, n % 100)


# ------------------------------------------------------------------------------------------------
# the build
# ------------------------------------------------------------------------------------------------
def _network_tensors(network: Any) -> "List[Any]":
    seen = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        seen[t.name] = t
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            t = layer.get_output(j)
            if t is not None:
                seen.setdefault(t.name, t)
    return list(seen.values())


def _is_qdq(trt: Any, network: Any) -> bool:
    lt = getattr(trt, "LayerType", None)
    kinds = {getattr(lt, "QUANTIZE", None), getattr(lt, "DEQUANTIZE", None)} - {None}
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))


def _inputs(network: Any) -> "List[Any]":
    return [network.get_input(i) for i in range(network.num_inputs)]


def build_engine(
    onnx_path: "Union[str, Path]",
    precision: str = "fp16",
    *,
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
    report: "Optional[Dict[str, Any]]" = None,
) -> bytes:
    """Build and return a serialized TensorRT engine (plan bytes) for ``onnx_path``.

    ``precision``: fp32 | fp16 | int8.  INT8 needs exactly one source: ``calibrator``
    (an ``IInt8*Calibrator``, e.g. from :func:`jetson_deploy.calibration.trt_calibrator.make_calibrator`),
    ``dynamic_ranges`` (ranges.json path / Ranges / ``{tensor: amax}``),
    ``calib_cache`` (a TensorRT calibration cache written for this TensorRT version),
    or a Q/DQ ``onnx_path`` (explicit INT8, no other source allowed).  INT8 also
    enables FP16 so layers left unquantized run in FP16.
    ``profiles``: ``{input: (min, opt, max)}`` or a list of them; required for
    dynamic inputs.  ``timing_cache_path`` is read when present and written back
    (atomically) after the build.  ``dla_core`` runs on that DLA core, with GPU
    fallback unless ``gpu_fallback=False``.  ``strict_types`` obeys per-layer
    precisions (``OBEY_PRECISION_CONSTRAINTS``, else ``STRICT_TYPES`` on old 8.x).
    ``report``, if given, is filled with what was done (flags, INT8 source, ...).

    Raises BadInput (exit 2) for unusable input/options (missing file, parser
    failure, no INT8 on this GPU, bad profile) and CheckFailed (exit 1) when
    TensorRT's build itself fails.
    """
    path = Path(onnx_path)
    name = path.name
    if precision not in PRECISIONS:
        raise BadInput("precision must be one of {}, got {!r}".format("/".join(PRECISIONS), precision))
    if not path.is_file():
        raise BadInput("ONNX model {} does not exist".format(path))
    sources = [k for k, v in (("calibrator", calibrator), ("dynamic ranges", dynamic_ranges), ("calibration cache", calib_cache)) if v is not None]
    if sources and precision != "int8":
        raise BadInput("{} only applies to --precision int8 (got {})".format(" and ".join(sources), precision))
    if len(sources) > 1:
        raise BadInput("give one INT8 source, not {} (a calibrator reads its own cache: make_calibrator(..., cache_path=...))".format(" and ".join(sources)))
    if dla_core is not None and precision == "fp32":
        raise BadInput("DLA runs FP16 or INT8 only: build with --precision fp16 or int8 to use DLA core {}".format(dla_core))
    if workspace_mb is not None and int(workspace_mb) <= 0:
        raise BadInput("workspace_mb must be positive, got {}".format(workspace_mb))
    norm_profiles = normalize_profiles(profiles)

    trt = load_tensorrt("building TensorRT engines")
    feats = features(trt)
    version = feats.version_string
    logger = make_logger(trt, verbose)
    rep: "Dict[str, Any]" = report if report is not None else {}
    rep.update({"tensorrt": version, "precision": precision, "onnx": str(path)})

    builder = trt.Builder(logger)
    if precision == "int8" and hasattr(builder, "platform_has_fast_int8") and not builder.platform_has_fast_int8:
        sm = _detect_sm()
        raise BadInput(
            "this GPU{} has no fast INT8 in TensorRT (Jetson Nano/TX1 are SM 5.3, TX2 SM 6.2): build with --precision fp16 instead".format(
                " (SM {}.{})".format(sm // 10, sm % 10) if sm else ""))
    if precision in ("fp16", "int8") and hasattr(builder, "platform_has_fast_fp16") and not builder.platform_has_fast_fp16:
        logger.log(trt.Logger.WARNING, "this GPU has no fast FP16; TensorRT may run FP32 kernels")

    flags = 0
    if feats.explicit_batch_required:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if feats.parse_from_file:
        ok = parser.parse_from_file(str(path))  # resolves external weights beside the file
    else:
        ok = parser.parse(path.read_bytes(), str(path))
    if not ok:
        raise BadInput(format_parser_failure(name, parser_issues(parser, str(path)), version))
    qdq = _is_qdq(trt, network)
    if qdq and precision != "int8":
        raise BadInput("{} is quantized (Q/DQ nodes): build it with --precision int8, or use the unquantized model for {}".format(
            name, precision))

    config = builder.create_builder_config()
    if workspace_mb is not None:
        nbytes = int(workspace_mb) << 20
        if feats.memory_pool_limit:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, nbytes)
        elif feats.max_workspace_size:
            config.max_workspace_size = nbytes
        rep["workspace_bytes"] = nbytes
    set_flags: "List[str]" = []

    def flag(fname: str) -> None:
        config.set_flag(getattr(trt.BuilderFlag, fname))
        set_flags.append(fname)

    if precision == "fp16":
        flag("FP16")
    elif precision == "int8":
        flag("INT8")
        if getattr(builder, "platform_has_fast_fp16", True):
            flag("FP16")
    if strict_types:
        if feats.obey_precision_constraints:
            flag("OBEY_PRECISION_CONSTRAINTS")
        elif feats.strict_types:
            flag("STRICT_TYPES")

    # ---- shapes ---------------------------------------------------------------------------
    inputs = _inputs(network)
    input_names = [t.name for t in inputs]
    dynamic = [t.name for t in inputs if any(int(d) < 0 for d in t.shape)]
    for k, prof in enumerate(norm_profiles):
        unknown = sorted(set(prof) - set(input_names))
        if unknown:
            raise BadInput("profile {} names {} but {} has inputs {}".format(k, unknown, name, input_names))
        missing = [n for n in dynamic if n not in prof]
        if missing:
            raise BadInput("profile {} gives no shapes for dynamic input(s) {} of {}".format(k, missing, name))
        p = builder.create_optimization_profile()
        for t in inputs:
            if t.name not in prof:
                continue
            lo, mid, hi = prof[t.name]
            net_shape = [int(d) for d in t.shape]
            if len(lo) != len(net_shape) or any(d >= 0 and (d != a or d != c) for d, a, c in zip(net_shape, lo, hi)):
                raise BadInput("profile {} input '{}': shapes {}..{} do not fit the model's shape {} (-1 = dynamic)".format(
                    k, t.name, list(lo), list(hi), net_shape))
            p.set_shape(t.name, lo, mid, hi)
        if config.add_optimization_profile(p) < 0:
            raise BadInput("TensorRT rejected optimization profile {}: {}".format(k, logger.summary() or "invalid shapes"))
    if dynamic and not norm_profiles:
        raise BadInput("{} has dynamic input(s) {}: give an optimization profile, e.g. profiles={{'{}': (min, opt, max)}}".format(
            name, dynamic, dynamic[0]))
    rep["profiles"] = [{k: [list(s) for s in v] for k, v in p.items()} for p in norm_profiles]

    # ---- INT8 source -----------------------------------------------------------------------
    int8_source = None
    if precision == "int8":
        if qdq:
            if sources:
                raise BadInput("{} is already quantized (Q/DQ nodes, explicit INT8): drop the {}".format(name, sources[0]))
            int8_source = "qdq"
        elif calibrator is not None:
            if not feats.int8_calibrator:
                raise BadInput("TensorRT {} has no INT8 calibrators: use a Q/DQ model".format(version))
            config.int8_calibrator = calibrator
            int8_source = "calibrator"
        elif calib_cache is not None:
            calibrator = _cache_calibrator(trt, feats, calib_cache, inputs, norm_profiles)
            config.int8_calibrator = calibrator
            int8_source = "calibration-cache"
        elif dynamic_ranges is not None:
            ranges = load_dynamic_ranges(dynamic_ranges)
            tensors = _network_tensors(network)
            matched = 0
            for t in tensors:
                r = ranges.get(t.name)
                if r is not None and t.set_dynamic_range(float(r[0]), float(r[1])):
                    matched += 1
            if not matched:
                raise BadInput("none of the {} tensors in the dynamic ranges match a tensor of {} (were they computed for another model?)".format(
                    len(ranges), name))
            rep["dynamic_ranges"] = {"given": len(ranges), "applied": matched, "network_tensors": len(tensors)}
            int8_source = "dynamic-ranges"
        else:
            raise BadInput(
                "INT8 needs calibration: give a calibrator, dynamic ranges (ranges.json), a calibration cache for "
                "TensorRT {}, or a Q/DQ model (jetson-deploy calibrate ... --model)".format(version))
        if int8_source in ("calibrator", "calibration-cache") and dynamic and hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(config_profile_for_calibration(builder, norm_profiles[0]))
    rep["int8_source"] = int8_source

    # ---- DLA --------------------------------------------------------------------------------
    if dla_core is not None:
        cores = int(getattr(builder, "num_DLA_cores", 0) or 0)
        if not feats.dla or cores == 0:
            raise BadInput("this device has no DLA cores (DLA is on Jetson Xavier and Orin AGX/NX): leave out --dla-core")
        if not 0 <= int(dla_core) < cores:
            raise BadInput("DLA core {} does not exist: this device has {} (0..{})".format(dla_core, cores, cores - 1))
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        if gpu_fallback:
            flag("GPU_FALLBACK")
        rep["dla_core"] = int(dla_core)

    # ---- timing cache -------------------------------------------------------------------------
    tc_path = Path(timing_cache_path) if timing_cache_path is not None else None
    if tc_path is not None:
        if feats.timing_cache:
            data = tc_path.read_bytes() if tc_path.is_file() else b""
            cache = config.create_timing_cache(data)
            if cache is None:  # corrupted file: start empty rather than fail the build
                cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, False)
            rep["timing_cache_loaded"] = bool(data)
        else:
            tc_path = None
    rep["flags"] = set_flags

    # ---- build --------------------------------------------------------------------------------
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
    data = bytes(plan)
    if tc_path is not None:
        cache = config.get_timing_cache()
        if cache is not None:
            atomic_write_bytes(tc_path, bytes(cache.serialize()))
            rep["timing_cache_saved"] = str(tc_path)
    rep["warnings"] = len(logger.warnings)
    rep["plan_bytes"] = len(data)
    return data


def config_profile_for_calibration(builder: Any, prof: "Mapping[str, ShapeTriple]") -> Any:
    """A profile whose min/opt/max are all the opt shapes: TensorRT calibrates at one shape."""
    p = builder.create_optimization_profile()
    for n, (_, mid, _) in prof.items():
        p.set_shape(n, mid, mid, mid)
    return p


def _cache_calibrator(trt: Any, feats: Any, cache_path: "Union[str, Path]", inputs: "List[Any]", profiles: "List[Any]") -> Any:
    """A calibrator that only serves the cache (no batches), after checking its header fits this TensorRT."""
    number, kind = read_cache_header(cache_path)
    want = calibration_version_int(feats.version)
    if number != want:
        raise BadInput(
            "calibration cache {} was written for TensorRT {} (header TRT-{}) but this is TensorRT {}: write one for {} "
            "(jetson-deploy calibrate --model ...) or calibrate on the device".format(
                cache_path, _version_text(number), number, feats.version_string, feats.version_string))
    if kind == "minmax" and not feats.minmax_calibrator:
        raise BadInput("calibration cache {} is a MinMax cache but TensorRT {} has no IInt8MinMaxCalibrator".format(cache_path, feats.version_string))
    from ..calibration.trt_calibrator import make_calibrator

    shapes = []
    for t in inputs:
        shape = [int(d) for d in t.shape]
        if any(d < 0 for d in shape) and profiles and t.name in profiles[0]:
            shape = list(profiles[0][t.name][1])
        shapes.append(shape)
    return make_calibrator(
        [], input_names=[t.name for t in inputs], input_shapes=shapes,
        input_dtypes=[nptype(trt, t.dtype) for t in inputs], cache_path=cache_path,
        kind="minmax" if kind == "minmax" else "entropy2", trt=trt, read_only_cache=True,
    )


def save_engine(plan: bytes, path: "Union[str, Path]") -> Path:
    """Write plan bytes atomically (never a half-written .engine)."""
    return atomic_write_bytes(path, bytes(plan))


def describe_version(trt: Any = None) -> str:
    trt = trt if trt is not None else load_tensorrt()
    return ".".join(str(x) for x in trt_version(trt))


class EngineFromOnnx:
    """Loader (Polygraphy style): describes a build, runs it when called; ``EngineFromOnnx(path, "int8", ...)()``."""

    def __init__(self, onnx_path: "Union[str, Path]", precision: str = "fp16", **options: Any) -> None:
        self.onnx_path = onnx_path
        self.precision = precision
        self.options = options
        self.report: "Dict[str, Any]" = {}

    def __call__(self) -> bytes:
        return build_engine(self.onnx_path, self.precision, report=self.report, **self.options)


class SaveEngine:
    """Loader: run ``loader`` (plan bytes or a callable giving them) and write the plan atomically to ``path``."""

    def __init__(self, loader: Any, path: "Union[str, Path]") -> None:
        self.loader = loader
        self.path = path

    def __call__(self) -> bytes:
        plan = self.loader() if callable(self.loader) else self.loader
        save_engine(plan, self.path)
        return bytes(plan)
