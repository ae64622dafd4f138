"""Labelled clips, image folders and training sets for the embedded demo model.

The frame generator itself (:class:`ShapeGenerator`, :func:`sample_scene`, :func:`render`)
lives in :mod:`jetson_deploy.media.shapes`, where the ``synthetic://`` source uses it;
it is re-exported here, so ``jetson_deploy.demo.ShapeGenerator`` keeps working.
"""
import os
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .._lazy import require
from ..errors import BadInput
from ..vocab import IMAGE_EXTS as _IMAGE_EXTS
from ..media.shapes import (  # noqa: F401 (re-exported: the demo's public names)
    CIRCLE,
    LABELS,
    MIN_CONTRAST,
    NONE,
    SIZE_RANGE,
    SQUARE,
    THICKNESS_RANGE,
    TRIANGLE,
    Scene,
    ShapeGenerator,
    render,
    sample_scene,
)

_VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


def _cv2():
    return require("cv2", "writing demo clips and images")


def write_clip(
    path,
    n_frames: int,
    width: int = 320,
    height: int = 240,
    fps: float = 15,
    seed: int = 0,
    hold: int = 5,
) -> "List[int]":
    """Write a synthetic video (``.mp4``: mp4v, ``.avi``: MJPG) atomically.

    Returns the ground-truth label index of every frame, in order.
    """
    cv2 = _cv2()
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _VIDEO_CODECS:
        raise BadInput("clip {}: use a .mp4 (mp4v) or .avi (MJPG) file name".format(path))
    if n_frames < 1:
        raise BadInput("clip {}: n_frames must be at least 1, got {}".format(path, n_frames))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.stem + ".", suffix=suffix, dir=str(path.parent))
    os.close(fd)
    labels: "List[int]" = []
    try:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*_VIDEO_CODECS[suffix]), float(fps), (int(width), int(height)))
        if not writer.isOpened():
            raise BadInput(
                "clip {}: OpenCV cannot write {} video with codec {}; try the other suffix (.mp4 or .avi)".format(
                    path, suffix, _VIDEO_CODECS[suffix]
                )
            )
        try:
            for frame, label in ShapeGenerator(seed).clip_frames(int(n_frames), int(width), int(height), int(hold)):
                writer.write(frame)
                labels.append(label)
        finally:
            writer.release()
        if os.path.getsize(tmp) == 0:
            raise BadInput("clip {}: OpenCV wrote an empty file; try the other suffix (.mp4 or .avi)".format(path))
        os.replace(tmp, str(path))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return labels


def write_images(
    folder,
    n: int,
    width: int = 160,
    height: int = 120,
    seed: int = 0,
    ext: str = ".png",
) -> "List[Tuple[Path, int]]":
    """Write ``n`` labelled frames as ``NNNNN_<label><ext>`` files (each written atomically).

    Returns (path, label index) pairs in order.
    """
    from .._files import atomic_write_bytes

    cv2 = _cv2()
    ext = ext if ext.startswith(".") else "." + ext
    if ext.lower() not in _IMAGE_EXTS:
        raise BadInput("image extension {!r} not supported: use one of {}".format(ext, ", ".join(_IMAGE_EXTS)))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: "List[Tuple[Path, int]]" = []
    for i, (frame, label) in enumerate(ShapeGenerator(seed).frames(int(n), int(width), int(height))):
        ok, buf = cv2.imencode(ext, frame)
        if not ok:
            raise BadInput("OpenCV cannot encode {} images".format(ext))
        p = folder / "{:05d}_{}{}".format(i, LABELS[label], ext)
        atomic_write_bytes(p, buf.tobytes())
        out.append((p, label))
    return out


def label_of(name: str, labels: "Sequence[str]" = LABELS) -> "Optional[int]":
    """Ground-truth label index from a file name written by :func:`write_images` (None if absent)."""
    stem = Path(name).stem
    tail = stem.rsplit("_", 1)[-1]
    return list(labels).index(tail) if tail in labels else None


# Source frame sizes (W, H) used for training and evaluation: several aspect ratios,
# so the model is robust to the stretch of a plain (non-letterboxed) resize to 64x64.
MIXED_SIZES: "List[Tuple[int, int]]" = [
    (64, 64),
    (96, 96),
    (128, 128),
    (96, 72),
    (160, 120),
    (200, 150),
    (320, 240),
    (72, 96),
    (120, 160),
    (128, 72),
    (160, 90),
    (256, 144),
    (640, 360),
    (72, 128),
    (90, 160),
]


def dataset(
    n: int,
    seed: int,
    sizes: "Optional[Sequence[Tuple[int, int]]]" = None,
    spec=None,
    jpeg: float = 0.0,
    progress=None,
) -> "Tuple[np.ndarray, np.ndarray]":
    """``n`` labelled model inputs, preprocessed by :func:`jetson_deploy.preprocess.preprocess`.

    Frames come from ``ShapeGenerator(seed)`` at sizes drawn (with their own seeded
    stream) from ``sizes`` (default :data:`MIXED_SIZES`).  ``jpeg`` is the fraction
    of frames passed through JPEG compression first (quality 25-90), as a video
    codec would.  ``spec`` defaults to the demo spec.  Returns (inputs (N,C,H,W)
    float32, labels (N,) int64).  ``progress(k)`` is called after each frame.
    """
    from ..preprocess import numpy_dtype, preprocess

    if spec is None:
        from . import load_spec

        spec = load_spec()
    cv2 = _cv2()
    sizes = list(sizes or MIXED_SIZES)
    gen = ShapeGenerator(seed)
    pick = np.random.RandomState((int(seed) * 7919 + 17) % (2**32))
    x = np.empty((int(n),) + tuple(spec.shape[1:]), dtype=numpy_dtype(spec))
    y = np.empty(int(n), dtype=np.int64)
    for i in range(int(n)):
        w, h = sizes[int(pick.randint(len(sizes)))]
        frame, label = gen.frame(w, h)
        if jpeg > 0 and pick.rand() < jpeg:
            ok, buf = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), int(pick.randint(25, 91))])
            frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        preprocess(frame, spec, out=x[i])
        y[i] = label
        if progress is not None:
            progress(1)
    return x, y
