"""TensorRT calibration cache text format: headers, hex scales, round trips."""
import struct
from pathlib import Path

import numpy as np
import pytest

from jetson_deploy.calibration.cache import (
    cache_header,
    format_cache,
    hex_to_scale,
    parse_cache,
    read_cache,
    scale_to_hex,
    trt_version_number,
    version_from_number,
    write_cache,
)
from jetson_deploy.errors import BadInput


@pytest.mark.parametrize(
    "version,number",
    [("8.2.1", 8201), ("8.5.2", 8502), ("8.6.2", 8602), ("7.1.3", 7103), ("10.3.0", 100300), ("10.14.1", 101401)],
)
def test_version_numbers_match_nv_tensorrt_version(version: str, number: int) -> None:
    assert trt_version_number(version) == number
    assert version_from_number(number) == version


def test_headers() -> None:
    assert cache_header("8.5.2") == "TRT-8502-EntropyCalibration2"
    assert cache_header("8.2.1", "minmax") == "TRT-8201-MinMaxCalibration"
    with pytest.raises(BadInput):
        cache_header("banana")


def test_hex_is_big_endian_ieee754() -> None:
    assert scale_to_hex(1.0) == "3f800000"
    assert scale_to_hex(2.0 / 127.0) == struct.pack(">f", 2.0 / 127.0).hex()
    assert hex_to_scale("3f800000") == 1.0
    assert hex_to_scale("0") == 0.0  # TensorRT writes a zero scale as '0'
    # the example in ONNX Runtime's TensorRT EP reader: data_0: 4000889d
    assert abs(hex_to_scale("4000889d") - 2.008338) < 1e-6


def test_round_trip_equals_ranges(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    amax = {"input": 2.0, "conv1/out": 13.7, "relu:0": 0.0}
    amax.update({"t{}".format(i): float(v) for i, v in enumerate(rng.uniform(1e-4, 1e3, 50))})
    p = write_cache(tmp_path / "8.5.2.cache", amax, "8.5.2")
    text = p.read_text()
    assert text.splitlines()[0] == "TRT-8502-EntropyCalibration2"
    assert len(text.splitlines()) == len(amax) + 1
    info, back = read_cache(p)
    assert info["tensorrt"] == "8.5.2" and info["algorithm"] == "EntropyCalibration2"
    assert set(back) == set(amax)
    hexes = {ln.rpartition(":")[0]: ln.rpartition(":")[2].strip() for ln in text.splitlines()[1:]}
    from jetson_deploy.calibration.cache import MIN_AMAX

    for k, v in amax.items():
        v = max(v, MIN_AMAX)  # amax 0 ("relu:0") is floored: never a zero scale (issue #12 item 10)
        assert back[k] == pytest.approx(v, rel=1e-6, abs=1e-12)
        assert hexes[k] == scale_to_hex(v / 127.0)  # the float32 bits of amax/127


def test_parse_rejects_garbage(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="header"):
        parse_cache("hello\nx: 3f800000\n")
    with pytest.raises(BadInput, match="hex"):
        parse_cache("TRT-8502-EntropyCalibration2\nx: zz\n")
    with pytest.raises(BadInput, match="empty"):
        parse_cache("")
    with pytest.raises(ValueError):
        format_cache({"x": float("nan")}, "8.5.2")


def test_gate_says_when_the_holdout_set_cannot_resolve_the_threshold():
    from jetson_deploy.calibration.gate import resolution_note, wilson_lower

    note = resolution_note(42, 0.99)
    assert note is not None and "42 held-out samples" in note and "at least 100" in note
    assert resolution_note(100, 0.99) is None and resolution_note(20, 0.95) is None
    assert resolution_note(19, 0.95) is not None
    # Wilson lower bound: 42/42 cannot vouch for 0.99; 1000/1000 can
    assert wilson_lower(42, 42) < 0.99 < wilson_lower(1000, 1000)
    assert 0.0 < wilson_lower(41, 42) < 41 / 42


def test_amax_of_zero_never_writes_a_zero_scale():
    """Issue #12 item 10: an all-zero tensor must not become a zero scale in TensorRT's cache."""
    from jetson_deploy.calibration.cache import format_cache, parse_cache

    info, amax = parse_cache(format_cache({"dead": 0.0, "live": 2.0}, "8.5.2"))
    assert amax["dead"] > 0 and amax["live"] == pytest.approx(2.0)
