"""TensorRT calibration caches in TensorRT's own text format.

The format (what ``IInt8Calibrator.write_calibration_cache`` receives and what
``read_calibration_cache`` must hand back), see docs/calibration.md for sources::

    TRT-8502-EntropyCalibration2
    input: 3c010204
    /conv1/Conv_output_0: 3d8c5a1e
    ...

* Line 1: ``TRT-<NV_TENSORRT_VERSION>-<algorithm>``.  The number is the integer
  TensorRT compiles in: ``major*1000 + minor*100 + patch`` for 7.x/8.x (8.5.2 ->
  8502), ``major*10000 + minor*100 + patch`` from 10.0 (10.3.0 -> 100300).
  TensorRT ignores a cache whose version or algorithm differs from its own
  and recalibrates, hence one cache per target version.
* Then one ``<tensor name>: <scale>`` line per tensor, the scale being the
  IEEE-754 float32 bit pattern as big-endian hex (``struct.pack('>f', s).hex()``),
  ``scale = amax / 127``; TensorRT sets the tensor's dynamic range to
  ``[-scale*127, +scale*127]``.
"""
import math
import struct
from pathlib import Path
from typing import Dict, Mapping, Tuple, Union

from .._files import atomic_write_text
from ..errors import BadInput

ALGORITHMS = {
    "entropy": "EntropyCalibration2",
    "entropy1": "EntropyCalibration",
    "minmax": "MinMaxCalibration",
    "percentile": "EntropyCalibration2",  # no TensorRT percentile calibrator: ranges are ours either way
    "legacy": "LegacyCalibration",
}
KNOWN_ALGOS = set(ALGORITHMS.values())
DEFAULT_TRT_VERSIONS = ("8.2.1", "8.5.2", "8.6.2")  # JetPack 4.6.x, 5.1.x, 6.0


def _parse_version(version: str) -> "Tuple[int, int, int]":
    parts = str(version).strip().split(".")
    try:
        nums = [int(p) for p in parts[:3]]
    except ValueError:
        raise BadInput("TensorRT version {!r} must look like 8.5.2".format(version))
    while len(nums) < 3:
        nums.append(0)
    if nums[0] < 5:
        raise BadInput("TensorRT version {!r}: calibration caches need TensorRT 5 or later".format(version))
    return nums[0], nums[1], nums[2]


def trt_version_number(version: str) -> int:
    """'8.5.2' -> 8502, '10.3.0' -> 100300 (NV_TENSORRT_VERSION)."""
    major, minor, patch = _parse_version(version)
    if major >= 10:
        return major * 10000 + minor * 100 + patch
    return major * 1000 + minor * 100 + patch


def version_from_number(number: int) -> str:
    """Inverse of :func:`trt_version_number` (8502 -> '8.5.2', 100300 -> '10.3.0')."""
    if number >= 100000:
        return "{}.{}.{}".format(number // 10000, (number // 100) % 100, number % 100)
    return "{}.{}.{}".format(number // 1000, (number // 100) % 10, number % 100)


def cache_header(version: str, method: str = "entropy") -> str:
    algo = ALGORITHMS.get(method, method)
    if algo not in KNOWN_ALGOS:
        raise BadInput("calibration method {!r} has no TensorRT cache header; use entropy or minmax".format(method))
    return "TRT-{}-{}".format(trt_version_number(version), algo)


def scale_to_hex(scale: float) -> str:
    return struct.pack(">f", float(scale)).hex()


def hex_to_scale(text: str) -> float:
    text = text.strip()
    if text.lower().startswith("0x"):
        text = text[2:]
    value = int(text, 16)  # TensorRT drops leading zeros (e.g. '0' for a zero scale)
    return struct.unpack(">f", struct.pack(">I", value))[0]


# An all-zero tensor (a dead ReLU channel, padding) has amax 0; a zero scale would give TensorRT a
# [0, 0] range (a division by zero when it quantises).  Floor it: the range stays effectively zero.
MIN_AMAX = 1e-6


def format_cache(amax: "Mapping[str, float]", version: str, method: str = "entropy") -> str:
    """The cache text for per-tensor ``amax`` (absolute max of the range); amax 0 is floored at MIN_AMAX."""
    lines = [cache_header(version, method)]
    for name in sorted(amax):
        a = float(amax[name])
        if not math.isfinite(a) or a < 0:
            raise ValueError("tensor {!r}: amax must be a finite non-negative number, got {}".format(name, a))
        if "\n" in name or "\r" in name:
            raise ValueError("tensor name {!r} contains a newline and cannot be written to a TensorRT cache".format(name))
        lines.append("{}: {}".format(name, scale_to_hex(max(a, MIN_AMAX) / 127.0)))
    return "\n".join(lines) + "\n"


def write_cache(path: "Union[str, Path]", amax: "Mapping[str, float]", version: str, method: str = "entropy") -> Path:
    """Write a TensorRT calibration cache atomically."""
    return atomic_write_text(path, format_cache(amax, version, method))


def parse_cache(text: str, source: str = "cache") -> "Tuple[Dict[str, object], Dict[str, float]]":
    """(header info, {tensor: amax}) from cache text.

    Header info: ``{"header", "version_number", "tensorrt", "algorithm"}``.
    amax is recovered as ``scale * 127`` computed in float32 arithmetic, which is
    what TensorRT does.
    """
    lines = [ln.rstrip("\r") for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise BadInput("{}: empty calibration cache".format(source))
    head = lines[0].strip()
    parts = head.split("-", 2)
    if len(parts) != 3 or parts[0] != "TRT" or not parts[1].isdigit():
        raise BadInput("{}: first line {!r} is not a TensorRT cache header (TRT-<version>-<algorithm>)".format(source, head))
    number = int(parts[1])
    info: "Dict[str, object]" = {
        "header": head,
        "version_number": number,
        "tensorrt": version_from_number(number),
        "algorithm": parts[2],
    }
    amax: "Dict[str, float]" = {}
    for i, ln in enumerate(lines[1:], start=2):
        name, sep, value = ln.rpartition(":")
        if not sep or not name:
            raise BadInput("{}: line {} {!r} is not '<tensor>: <hex scale>'".format(source, i, ln))
        try:
            scale = hex_to_scale(value)
        except (ValueError, struct.error):
            raise BadInput("{}: line {} has a bad hex scale {!r}".format(source, i, value.strip()))
        amax[name.strip()] = float(_f32(_f32(scale) * _f32(127.0)))
    return info, amax


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def read_cache(path: "Union[str, Path]") -> "Tuple[Dict[str, object], Dict[str, float]]":
    """Parse a TensorRT calibration cache file: (header info, {tensor: amax})."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput("cannot read calibration cache {} ({})".format(p, exc.strerror or exc))
    except UnicodeDecodeError:
        raise BadInput("{} is not a text TensorRT calibration cache".format(p))
    return parse_cache(text, str(p))
