"""INT8 source for a build: a calibrator, per-tensor dynamic ranges, a calibration cache,
or a Q/DQ model (explicit INT8, nothing else allowed).  Exactly one applies."""
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from ..errors import BadInput
from .compat import calibration_version_int, nptype
from .network import network_inputs, network_tensors
from .profiles import Profile, config_profile_for_calibration


@dataclass
class Int8Sources:
    """What the caller gave for implicit INT8 (at most one may be set)."""

    calibrator: Any = None
    dynamic_ranges: Any = None
    calib_cache: "Optional[Union[str, Path]]" = None

    def given(self) -> "List[str]":
        pairs = (("calibrator", self.calibrator), ("dynamic ranges", self.dynamic_ranges), ("calibration cache", self.calib_cache))
        return [k for k, v in pairs if v is not None]


@dataclass
class Int8Setup:
    """What the INT8 step did: ``source`` for the report, ``calibrator`` whose ``error`` the build checks."""

    source: "Optional[str]" = None
    calibrator: Any = None
    dynamic_ranges: "Optional[Dict[str, int]]" = None


def set_int8_source(
    trt: Any, feats: Any, builder: Any, config: Any, network: Any, sources: Int8Sources, qdq: bool,
    profiles: "List[Profile]", dynamic: "List[str]", name: str,
) -> Int8Setup:
    """Configure INT8 from the one source there is; BadInput when there is none or too many."""
    given = sources.given()
    if qdq:
        if given:
            raise BadInput("{} is already quantized (Q/DQ nodes, explicit INT8): drop the {}".format(name, given[0]))
        return Int8Setup("qdq")
    if sources.calibrator is not None:
        if not feats.int8_calibrator:
            raise BadInput("TensorRT {} has no INT8 calibrators: use a Q/DQ model".format(feats.version_string))
        setup = Int8Setup("calibrator", sources.calibrator)
    elif sources.calib_cache is not None:
        setup = Int8Setup("calibration-cache", cache_calibrator(trt, feats, sources.calib_cache, network_inputs(network), profiles))
    elif sources.dynamic_ranges is not None:
        return Int8Setup("dynamic-ranges", dynamic_ranges=apply_dynamic_ranges(network, sources.dynamic_ranges, name))
    else:
        raise BadInput(
            "INT8 needs calibration: give a calibrator, dynamic ranges (ranges.json), a calibration cache for "
            "TensorRT {}, or a Q/DQ model (jetson-deploy calibrate ... --model)".format(feats.version_string))
    config.int8_calibrator = setup.calibrator
    if dynamic and hasattr(config, "set_calibration_profile"):
        config.set_calibration_profile(config_profile_for_calibration(builder, profiles[0]))
    return setup


def apply_dynamic_ranges(network: Any, ranges: Any, name: str) -> "Dict[str, int]":
    """``ITensor.set_dynamic_range`` for each tensor named in ``ranges``; counts for the report."""
    table = load_dynamic_ranges(ranges)
    tensors = network_tensors(network)
    matched = 0
    for t in tensors:
        r = table.get(t.name)
        if r is not None and t.set_dynamic_range(float(r[0]), float(r[1])):
            matched += 1
    if not matched:
        raise BadInput("none of the {} tensors in the dynamic ranges match a tensor of {} (were they computed for another model?)".format(
            len(table), name))
    return {"given": len(table), "applied": matched, "network_tensors": len(tensors)}


def load_dynamic_ranges(ranges: Any) -> "Dict[str, Tuple[float, float]]":
    """``{tensor: (min, max)}`` from a ranges.json path, a Ranges object or a dict.

    Values may be an amax (symmetric), ``[min, max]``, ``{"amax": a}`` or
    ``{"min": a, "max": b}``; a ``{"tensors": {...}}`` (ranges.json) or
    ``{"ranges": {...}}`` wrapper is unwrapped.
    """
    source, ranges = _ranges_mapping(ranges)
    out: "Dict[str, Tuple[float, float]]" = {}
    for name, v in ranges.items():
        try:
            lo, hi = _range_of(v)
        except (KeyError, TypeError, ValueError, IndexError):
            raise BadInput("{}: tensor '{}' has no usable range ({!r})".format(source, name, v))
        if not lo <= hi:
            raise BadInput("{}: tensor '{}' has min {} > max {}".format(source, name, lo, hi))
        out[str(name)] = (lo, hi)
    if not out:
        raise BadInput("{}: no tensors".format(source))
    return out


def _ranges_mapping(ranges: Any) -> "Tuple[str, Mapping[str, Any]]":
    """(where the ranges came from, ``{tensor: value}``) from a path, an object or a dict."""
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
    return source, ranges


def _range_of(v: Any) -> "Tuple[float, float]":
    if isinstance(v, Mapping):
        if "min" in v and "max" in v:
            return float(v["min"]), float(v["max"])
        a = abs(float(v["amax"]))
        return -a, a
    if isinstance(v, (list, tuple)):
        return float(v[0]), float(v[1])
    a = abs(float(v))
    return -a, a


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


def cache_calibrator(trt: Any, feats: Any, cache_path: "Union[str, Path]", inputs: "List[Any]", profiles: "List[Any]") -> Any:
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
    if kind == "legacy":  # IInt8LegacyCalibrator also needs the quantile/cutoff the cache was made with
        raise BadInput("calibration cache {} was written by a LegacyCalibrator, which this tool cannot reproduce: "
                       "recalibrate (jetson-deploy calibrate --method entropy)".format(cache_path))
    from .calibrator import make_calibrator

    shapes = []
    for t in inputs:
        shape = [int(d) for d in t.shape]
        if any(d < 0 for d in shape) and profiles and t.name in profiles[0]:
            shape = list(profiles[0][t.name][1])
        shapes.append(shape)
    return make_calibrator(
        [], input_names=[t.name for t in inputs], input_shapes=shapes,
        input_dtypes=[nptype(trt, t.dtype) for t in inputs], cache_path=cache_path,
        # the calibrator must be the one the cache names: TensorRT skips a cache whose algorithm differs and
        # asks for batches, which a cache-only calibrator has none of (sampleINT8/README.md, release/8.2 L115-145)
        kind=kind, trt=trt, read_only_cache=True,
    )
