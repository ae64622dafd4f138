"""Host preprocessing from a ModelSpec: the one implementation used everywhere.

Calibration builds its sets with :func:`preprocess`, and the runtime feeds engines
with it, so an INT8 engine sees at run time the distribution it was calibrated on.
Frames are OpenCV-convention BGR (or gray) ``uint8`` arrays.

Resizing is exact bilinear (half-pixel centres, edges clamped, rounded half up to a
uint8 level) -- what the GPU kernel (``runtime.gpu_preprocess``) computes in float32 --
done by OpenCV's bit-exact ``INTER_LINEAR_EXACT``: unbiased (measured mean +0.001 of a
level on a 1080p frame resized to 224x224) and at most one level from exact.  Plain
``INTER_LINEAR`` on uint8 uses 11-bit fixed-point weights (``INTER_RESIZE_COEF_BITS``,
imgproc/src/resize.cpp) whose truncations lower 12.7% of the values by a level (mean
-0.127): calibration would see slightly darker inputs than the GPU path feeds the engine.

The in-graph variant (uint8 NHWC in, normalisation inside the engine) lives in
``jetson_deploy.convert`` and is checked against this one.
"""
from typing import Iterable, Optional, Tuple

import numpy as np

from .errors import BadInput
from .spec import ModelSpec

LETTERBOX_FILL = 114  # grey, the YOLO-family convention


def _bilinear(cv2):
    """OpenCV's bit-exact bilinear (OpenCV 3.4.2+: every OpenCV a JetPack ships)."""
    return getattr(cv2, "INTER_LINEAR_EXACT", cv2.INTER_LINEAR)


def _cv2():
    from ._lazy import require

    return require("cv2", "image resizing and colour conversion")


def letterbox_params(src_w: int, src_h: int, spec: "ModelSpec") -> "Tuple[float, int, int]":
    """(scale, pad_x, pad_y) mapping source pixels into the model input.

    Detection postprocessing uses the same numbers to map boxes back.
    """
    dst_w, dst_h = spec.resize_wh
    if not spec.keep_aspect:
        return (dst_w / float(src_w), 0, 0)
    r = min(dst_w / float(src_w), dst_h / float(src_h))
    new_w, new_h = int(round(src_w * r)), int(round(src_h * r))
    return (r, (dst_w - new_w) // 2, (dst_h - new_h) // 2)


def resize_frame(frame: "np.ndarray", spec: "ModelSpec") -> "np.ndarray":
    """Resize (or letterbox) to the model size, still uint8 and in source colour."""
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.dtype != np.uint8:
        raise BadInput("frames must be HxWxC uint8 images, got shape {} dtype {}".format(frame.shape, frame.dtype))
    h, w = frame.shape[:2]
    dst_w, dst_h = spec.resize_wh
    if (w, h) == (dst_w, dst_h):
        return frame
    cv2 = _cv2()
    if not spec.keep_aspect:
        out = cv2.resize(frame, (dst_w, dst_h), interpolation=_bilinear(cv2))
        return out if out.ndim == 3 else out[:, :, None]
    r, px, py = letterbox_params(w, h, spec)
    new_w, new_h = int(round(w * r)), int(round(h * r))
    small = cv2.resize(frame, (new_w, new_h), interpolation=_bilinear(cv2))
    if small.ndim == 2:
        small = small[:, :, None]
    canvas = np.full((dst_h, dst_w, frame.shape[2]), LETTERBOX_FILL, dtype=np.uint8)
    canvas[py : py + new_h, px : px + new_w] = small
    return canvas


def convert_color(frame: "np.ndarray", spec: "ModelSpec") -> "np.ndarray":
    """BGR/gray source -> the model's colour order (HxWxC uint8)."""
    c = frame.shape[2]
    if spec.color == "gray":
        if c == 1:
            return frame
        cv2 = _cv2()
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[:, :, None]
    if c == 1:
        frame = np.repeat(frame, 3, axis=2)
    elif c == 4:
        frame = frame[:, :, :3]
    if spec.color == "rgb":
        return frame[:, :, ::-1]
    return frame


def normalize_constants(spec: "ModelSpec") -> "Tuple[np.ndarray, np.ndarray]":
    """(multiplier, offset) per channel so that ``x * mul + off`` == ``(x*scale - mean)/std``."""
    std = np.asarray(spec.std, dtype=np.float32)
    mean = np.asarray(spec.mean, dtype=np.float32)
    mul = np.float32(spec.scale) / std
    off = -mean / std
    return mul.astype(np.float32), off.astype(np.float32)


def preprocess(frame: "np.ndarray", spec: "ModelSpec", out: "Optional[np.ndarray]" = None) -> "np.ndarray":
    """One frame -> one model input without the batch axis.

    Returns (C,H,W) for ``nchw`` specs and (H,W,C) for ``nhwc``; ``float32``
    normalised, or raw ``uint8`` when the spec's input dtype is uint8 (the engine
    folds normalisation in).  ``out`` lets the runtime write straight into a
    pinned/mapped buffer with no extra copy.
    """
    img = convert_color(resize_frame(frame, spec), spec)
    if spec.dtype == "uint8":
        res = img if spec.layout == "nhwc" else img.transpose(2, 0, 1)
        if out is None:
            return np.ascontiguousarray(res)
        np.copyto(out, res)
        return out
    dtype = np.float16 if spec.dtype == "float16" else np.float32
    mul, off = normalize_constants(spec)
    if spec.layout == "nchw":
        src = img.transpose(2, 0, 1)
        mul_b, off_b = mul[:, None, None], off[:, None, None]
    else:
        src = img
        mul_b, off_b = mul[None, None, :], off[None, None, :]
    if out is None:
        out = np.empty(src.shape, dtype=dtype)
    if out.dtype == np.float32:
        np.multiply(src, mul_b, out=out, casting="unsafe")
        out += off_b
    else:
        out[...] = (src.astype(np.float32) * mul_b + off_b).astype(out.dtype)
    return out


def preprocess_batch(frames: "Iterable[np.ndarray]", spec: "ModelSpec") -> "np.ndarray":
    """Frames -> a batched model input (N, ...)."""
    arrays = [preprocess(f, spec) for f in frames]
    if not arrays:
        raise BadInput("no frames to preprocess")
    return np.stack(arrays, axis=0)


def input_shape_no_batch(spec: "ModelSpec") -> "Tuple[int, ...]":
    return tuple(int(s) for s in spec.shape[1:])


def numpy_dtype(spec: "ModelSpec") -> "np.dtype":
    return np.dtype({"float32": np.float32, "float16": np.float16, "uint8": np.uint8, "int8": np.int8}[spec.dtype])
