import numpy as np
import pytest

from support import optional_module

from jetson_deploy.preprocess import letterbox_params, preprocess, preprocess_batch
from jetson_deploy.spec import load_spec

pytestmark = pytest.mark.needs("cv2")
cv2 = optional_module("cv2")


def spec(**over):
    d = {
        "input": {"name": "input", "shape": [1, 3, 32, 48], "dtype": "float32", "color": "rgb"},
        "preprocess": {"scale": 1 / 255, "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.25, 0.125]},
    }
    for k, v in over.items():
        d.setdefault(k, {}).update(v) if isinstance(v, dict) else d.__setitem__(k, v)
    return load_spec(d)


def reference(frame, s):
    """Straightforward float64 version of the documented formula (OpenCV's exact bilinear resize)."""
    img = cv2.resize(frame, tuple(s.resize_wh), interpolation=cv2.INTER_LINEAR_EXACT)
    img = img[:, :, ::-1].astype(np.float64)
    out = (img * s.scale - np.array(s.mean)) / np.array(s.std)
    return out.transpose(2, 0, 1)


def test_matches_formula_rgb_nchw():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    s = spec()
    x = preprocess(frame, s)
    assert x.shape == (3, 32, 48) and x.dtype == np.float32
    np.testing.assert_allclose(x, reference(frame, s), atol=1e-5)


def test_colour_order_is_respected():
    frame = np.zeros((32, 48, 3), np.uint8)
    frame[:, :, 0] = 255  # pure blue in BGR
    rgb = preprocess(frame, spec(preprocess={"mean": [0, 0, 0], "std": [1, 1, 1]}))
    bgr = preprocess(frame, spec(input={"color": "bgr"}, preprocess={"mean": [0, 0, 0], "std": [1, 1, 1]}))
    assert rgb[2].mean() == pytest.approx(1.0) and rgb[0].mean() == 0
    assert bgr[0].mean() == pytest.approx(1.0) and bgr[2].mean() == 0


def test_gray_and_uint8_and_nhwc():
    frame = np.full((32, 48, 3), 200, np.uint8)
    g = preprocess(frame, spec(input={"color": "gray", "shape": [1, 1, 32, 48]}, preprocess={"mean": 0, "std": 1}))
    assert g.shape == (1, 32, 48)
    np.testing.assert_allclose(g, 200 / 255, atol=1e-6)
    u = preprocess(frame, spec(input={"dtype": "uint8", "layout": "nhwc", "shape": [1, 32, 48, 3]}))
    assert u.dtype == np.uint8 and u.shape == (32, 48, 3) and int(u[0, 0, 0]) == 200


def test_letterbox_keeps_aspect_and_pads():
    frame = np.full((100, 400, 3), 255, np.uint8)  # 4:1 into 48x32
    s = spec(preprocess={"keep_aspect": True, "mean": 0, "std": 1})
    r, px, py = letterbox_params(400, 100, s)
    assert r == pytest.approx(48 / 400) and px == 0 and py > 0
    x = preprocess(frame, s)
    assert x[:, 0, :].max() == pytest.approx(114 / 255, abs=1e-6)  # padded row
    assert x[:, 16, :].min() == pytest.approx(1.0, abs=1e-6)  # image row


def test_out_buffer_is_filled_in_place():
    frame = np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    s = spec()
    buf = np.zeros((3, 32, 48), np.float32)
    res = preprocess(frame, s, out=buf)
    assert res is buf
    np.testing.assert_allclose(buf, preprocess(frame, s))


def test_batch_and_bad_frames():
    s = spec()
    frames = [np.zeros((10, 10, 3), np.uint8), np.ones((20, 30, 3), np.uint8)]
    assert preprocess_batch(frames, s).shape == (2, 3, 32, 48)
    from jetson_deploy.errors import BadInput

    with pytest.raises(BadInput):
        preprocess(np.zeros((10, 10, 3), np.float32), s)
