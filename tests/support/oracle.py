"""An independent float64 reference for ModelSpec preprocessing (the test oracle).

Written from the spec's meaning (DESIGN.md "ModelSpec file (v1)"), sharing no code with
``jetson_deploy.preprocess``: tests that compare an implementation (host, folded into the
graph, GPU kernel) with this catch what comparing it with ``preprocess()`` itself cannot,
e.g. per-channel constants applied in the wrong channel order.

Semantics:

* frames are HxWxC ``uint8`` in OpenCV order (BGR, BGRA or gray, HxW allowed for gray);
* resize to ``preprocess.resize`` (width, height) with bilinear interpolation, pixel-centre
  convention ``src = (dst + 0.5) * in/out - 0.5`` clamped to the image (cv2.INTER_LINEAR),
  the result rounded to ``uint8``; with ``keep_aspect`` the frame is scaled by
  ``r = min(W/w, H/h)`` to ``round(w*r) x round(h*r)`` and centred on a canvas of 114
  (offset ``(W - new_w) // 2``, ``(H - new_h) // 2``);
* colour after resizing: ``rgb`` reverses BGR, ``gray`` is ``round(.299 R + .587 G + .114 B)``,
  a gray frame feeds rgb/bgr models as three equal channels, an alpha channel is dropped;
* ``uint8`` inputs stop there; otherwise ``(x * scale - mean[c]) / std[c]`` per channel c of
  the model's colour order, then cast to float16 when the input is float16;
* layout ``nchw`` gives (C, H, W), ``nhwc`` (H, W, C); no batch axis.

Call :func:`preprocess` with a frame and a spec (a ``ModelSpec`` or its ``to_dict()`` form).
"""
import math
from typing import Any, Dict, Tuple

import numpy as np

FILL = 114.0


def _fields(spec: Any) -> "Dict[str, Any]":
    """The spec's fields as plain values, from a ModelSpec or a v1 dict."""
    if not isinstance(spec, dict):
        spec = spec.to_dict()
    inp = spec["input"]
    pre = spec.get("preprocess", {}) or {}
    layout = str(inp.get("layout", "nchw")).lower()
    shape = [int(s) for s in inp["shape"]]
    color = inp.get("color", "rgb")
    channels = 1 if color == "gray" else 3
    if pre.get("resize"):
        w, h = int(pre["resize"][0]), int(pre["resize"][1])
    elif layout == "nchw":
        w, h = shape[3], shape[2]
    else:
        w, h = shape[2], shape[1]

    def per_channel(v: Any, default: float) -> "np.ndarray":
        if v is None:
            v = default
        if isinstance(v, (int, float)):
            v = [v] * channels
        return np.array([float(x) for x in v], dtype=np.float64)

    return {
        "w": w, "h": h, "layout": layout, "color": color, "dtype": inp.get("dtype", "float32"),
        "keep_aspect": bool(pre.get("keep_aspect", False)),
        "scale": float(pre.get("scale", 1.0 / 255.0)),
        "mean": per_channel(pre.get("mean"), 0.0), "std": per_channel(pre.get("std"), 1.0),
    }


def _axis_weights(n_in: int, n_out: int) -> "Tuple[np.ndarray, np.ndarray, np.ndarray]":
    """For each output index: the two source indices and the weight of the second."""
    s = n_in / float(n_out)
    lo = np.empty(n_out, dtype=np.int64)
    hi = np.empty(n_out, dtype=np.int64)
    wt = np.empty(n_out, dtype=np.float64)
    for d in range(n_out):
        x = (d + 0.5) * s - 0.5
        x = min(max(x, 0.0), n_in - 1.0)
        i = int(math.floor(x))
        lo[d] = i
        hi[d] = min(i + 1, n_in - 1)
        wt[d] = x - i
    return lo, hi, wt


def bilinear(img: "np.ndarray", out_w: int, out_h: int) -> "np.ndarray":
    """HxWxC float64 -> out_h x out_w x C float64, bilinear, half-pixel centres, edges clamped."""
    h, w = img.shape[:2]
    y0, y1, wy = _axis_weights(h, out_h)
    x0, x1, wx = _axis_weights(w, out_w)
    wy = wy[:, None, None]
    wx = wx[None, :, None]
    top = img[y0][:, x0] * (1.0 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1.0 - wx) + img[y1][:, x1] * wx
    return top * (1.0 - wy) + bottom * wy


def _to_u8(x: "np.ndarray") -> "np.ndarray":
    return np.clip(np.floor(x + 0.5), 0.0, 255.0)


def resize(frame: "np.ndarray", f: "Dict[str, Any]") -> "np.ndarray":
    """Source-colour frame at the model size, uint8 values held in float64."""
    img = frame.astype(np.float64)
    h, w = img.shape[:2]
    W, H = f["w"], f["h"]
    if not f["keep_aspect"]:
        return img if (w, h) == (W, H) else _to_u8(bilinear(img, W, H))
    r = min(W / float(w), H / float(h))
    nw, nh = int(round(w * r)), int(round(h * r))
    canvas = np.full((H, W, img.shape[2]), FILL, dtype=np.float64)
    x0, y0 = (W - nw) // 2, (H - nh) // 2
    canvas[y0:y0 + nh, x0:x0 + nw] = img if (nw, nh) == (w, h) else _to_u8(bilinear(img, nw, nh))
    return canvas


def colour(img: "np.ndarray", color: str) -> "np.ndarray":
    """BGR(A)/gray HxWxC -> the model's colour order."""
    c = img.shape[2]
    if color == "gray":
        if c == 1:
            return img
        b, g, r = img[:, :, 0], img[:, :, 1], img[:, :, 2]
        return _to_u8(0.299 * r + 0.587 * g + 0.114 * b)[:, :, None]
    if c == 1:
        img = np.concatenate([img, img, img], axis=2)
    b, g, r = img[:, :, 0], img[:, :, 1], img[:, :, 2]
    chans = [r, g, b] if color == "rgb" else [b, g, r]
    return np.stack(chans, axis=2)


def preprocess(frame: "np.ndarray", spec: Any) -> "np.ndarray":
    """One uint8 frame -> the model input (no batch axis) as float64, per the spec's meaning."""
    f = _fields(spec)
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = frame[:, :, None]
    assert frame.ndim == 3 and frame.dtype == np.uint8, (frame.shape, frame.dtype)
    img = colour(resize(frame, f), f["color"])
    if f["dtype"] != "uint8":
        planes = []
        for c in range(img.shape[2]):
            planes.append((img[:, :, c] * f["scale"] - f["mean"][c]) / f["std"][c])
        img = np.stack(planes, axis=2)
        if f["dtype"] == "float16":
            img = img.astype(np.float16).astype(np.float64)
    if f["layout"] == "nchw":
        img = np.transpose(img, (2, 0, 1))
    return np.ascontiguousarray(img)


def tolerance(spec: Any, lsb: float = 1.0) -> "np.ndarray":
    """Per-channel absolute tolerance of ``lsb`` source steps (cv2's fixed-point resize and colour
    rounding may differ from exact maths by one step), shaped to broadcast over the output."""
    f = _fields(spec)
    if f["dtype"] == "uint8":
        tol = np.full(len(f["mean"]), lsb)
    else:
        tol = lsb * f["scale"] / np.abs(f["std"])
        if f["dtype"] == "float16":
            top = np.abs((np.array([0.0, 255.0])[:, None] * f["scale"] - f["mean"]) / f["std"]).max(axis=0)
            tol = tol + top * 2.0 ** -10
    tol = tol + 1e-5
    return tol[:, None, None] if f["layout"] == "nchw" else tol[None, None, :]


def assert_matches(actual: "np.ndarray", frame: "np.ndarray", spec: Any, lsb: float = 1.0, exact_fraction: float = 0.75) -> None:
    """``actual`` equals the oracle within ``lsb`` source steps everywhere, and within float
    rounding on at least ``exact_fraction`` of the values (a wrong constant moves all of them)."""
    want = preprocess(frame, spec)
    got = np.asarray(actual, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    diff = np.abs(got - want)
    tol = tolerance(spec, lsb)
    bad = diff > tol
    assert not bad.any(), "{} of {} values differ from the oracle by more than {} step(s); max diff {:.4g}".format(
        int(bad.sum()), diff.size, lsb, float(diff.max()))
    tight = diff <= tolerance(spec, 0.0) + 1e-4 * np.abs(want)
    frac = float(tight.mean())
    assert frac >= exact_fraction, "only {:.3f} of values match the oracle closely".format(frac)
