"""preprocess() against the independent float64 oracle (tests/support/oracle.py).

Every spec here has per-channel mean and std all different, so a constant applied to the
wrong channel (or a layout/colour slip) moves every value by far more than one pixel step.
"""
import itertools

import numpy as np
import pytest

from support import oracle
from jetson_deploy.preprocess import preprocess
from jetson_deploy.spec import ModelSpec

pytestmark = pytest.mark.needs("cv2")

MEAN = [0.485, 0.256, 0.106]
STD = [0.229, 0.524, 0.125]


def make_spec(color: str, layout: str, dtype: str = "float32", w: int = 40, h: int = 24, keep_aspect: bool = False) -> "ModelSpec":
    c = 1 if color == "gray" else 3
    shape = [1, c, h, w] if layout == "nchw" else [1, h, w, c]
    pre = {"keep_aspect": keep_aspect, "scale": 1.0 / 255.0}
    pre["mean"], pre["std"] = ([0.3], [0.7]) if c == 1 else (MEAN, STD)
    return ModelSpec.from_dict({"input": {"shape": shape, "dtype": dtype, "color": color, "layout": layout}, "preprocess": pre})


def frame(h: int, w: int, c: int = 3, seed: int = 0) -> "np.ndarray":
    """Smooth gradients plus noise, channels distinct (a channel swap changes values)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = [(xx * 255.0 / max(1, w - 1)), (yy * 255.0 / max(1, h - 1)), ((xx + yy) * 97.0) % 256]
    img = np.stack(chans[:c], axis=2) + rng.normal(0, 20, (h, w, c))
    return np.clip(img, 0, 255).astype(np.uint8)


GRID = list(itertools.product(["rgb", "bgr", "gray"], ["nchw", "nhwc"], ["float32", "float16", "uint8"], [False, True]))


@pytest.mark.parametrize("color,layout,dtype,keep", GRID, ids=["-".join(map(str, g)) for g in GRID])
@pytest.mark.parametrize("src", [(48, 80), (17, 13), (24, 40)], ids=["down", "up", "same"])
def test_preprocess_matches_the_oracle(color, layout, dtype, keep, src) -> None:
    spec = make_spec(color, layout, dtype, keep_aspect=keep)
    img = frame(src[0], src[1], seed=sum(src))
    oracle.assert_matches(preprocess(img, spec), img, spec)
    oracle.assert_matches(preprocess(img, spec), img, spec.to_dict())  # the dict form reads the same


@pytest.mark.parametrize("src_c", [1, 4])
def test_gray_and_bgra_sources(src_c) -> None:
    img = frame(30, 50, c=3, seed=3)
    if src_c == 1:
        img = img[:, :, :1].copy()
    else:
        img = np.concatenate([img, np.full(img.shape[:2] + (1,), 200, np.uint8)], axis=2)
    for color in ("rgb", "bgr", "gray"):
        spec = make_spec(color, "nhwc")
        oracle.assert_matches(preprocess(img, spec), img, spec, lsb=2.0 if color == "gray" else 1.0)


def test_the_oracle_catches_reversed_channel_constants() -> None:
    """The oracle is sharp enough: the same input with mean/std reversed fails it."""
    img = frame(48, 80, seed=5)
    for layout in ("nchw", "nhwc"):
        spec = make_spec("rgb", layout)
        wrong = spec.replace(mean=MEAN[::-1], std=STD[::-1])
        with pytest.raises(AssertionError, match="differ from the oracle"):
            oracle.assert_matches(preprocess(img, wrong), img, spec)
        swapped = spec.replace(color="bgr")
        with pytest.raises(AssertionError, match="differ from the oracle"):
            oracle.assert_matches(preprocess(img, swapped), img, spec)


def test_oracle_letterbox_geometry_by_hand() -> None:
    """A 10x20 white frame letterboxed into 40x24: scale 2, 40x20 image centred, rows 0-1 and 22-23 grey."""
    spec = make_spec("bgr", "nhwc", "uint8", keep_aspect=True)
    img = np.full((10, 20, 3), 255, np.uint8)
    out = oracle.preprocess(img, spec)
    assert out.shape == (24, 40, 3)
    assert (out[:2] == 114).all() and (out[22:] == 114).all() and (out[2:22] == 255).all()
    np.testing.assert_array_equal(preprocess(img, spec), out)


def test_oracle_bilinear_by_hand() -> None:
    """2 -> 4 pixels: centres at -0.25 (clamped), 0.25, 0.75, 1.25 (clamped)."""
    row = np.array([[[0.0], [100.0]]])
    np.testing.assert_allclose(oracle.bilinear(row, 4, 1)[0, :, 0], [0.0, 25.0, 75.0, 100.0])
    np.testing.assert_allclose(oracle.bilinear(np.array([[[0.0], [10.0], [20.0], [30.0]]]), 2, 1)[0, :, 0], [5.0, 25.0])
