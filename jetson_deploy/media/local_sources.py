"""Sources that need no camera: generated shapes (``synthetic://``) and image files/folders."""
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import numpy as np

from .._lazy import optional
from ..errors import BadInput
from ..vocab import IMAGE_EXTS
from .shapes import ShapeGenerator
from .sources import Frame, Source, _cv2, query_options, uri_path

#: synthetic://...?pool=K bounds: frames pre-rendered, and their bytes together
MAX_POOL = 1024
MAX_POOL_BYTES = 1 << 30

log = logging.getLogger(__name__)


def _size(text: str, uri: str) -> "Tuple[int, int, float]":
    """``1280x720[@30]`` as (width, height, fps); fps 0 when not given."""
    fps = 0.0
    if "@" in text:
        text, f = text.split("@", 1)
        try:
            fps = float(f)
        except ValueError:
            raise BadInput("source {}: fps after @ must be a number".format(uri))
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise BadInput("source {}: size must look like 1280x720 (e.g. synthetic://1280x720@30)".format(uri))
    if w <= 0 or h <= 0:
        raise BadInput("source {}: size must be positive".format(uri))
    if w > 16384 or h > 16384:
        raise BadInput("source {}: size {}x{} is too large (at most 16384 per side)".format(uri, w, h))
    if not (fps >= 0 and fps < 1e6):  # also NaN
        raise BadInput("source {}: fps after @ must be a number >= 0, got {}".format(uri, fps))
    return w, h, fps


class SyntheticSource(Source):
    """Generated frames with ground truth: :class:`~jetson_deploy.media.shapes.ShapeGenerator`.

    ``synthetic://WxH[@fps][?frames=N&seed=S&pool=K]``.  ``@fps`` paces it like a camera (and
    makes it live: frames drop when inference is slow); without it frames come as fast as they
    are taken.  ``pool=K`` (default 16) pre-renders K frames into the allocator's (pinned) buffers
    and cycles through them, so a 1280x720 benchmark measures the pipeline, not the drawing;
    ``pool=0`` renders every frame.  ``frames=N`` ends the stream after N frames.  ``truth``
    carries the generator's label.  ``generator`` (anything with ``frame(width, height) ->
    (image, label)``) replaces the shapes; without cv2 (which draws the shapes) the frames are
    seeded noise without truth, after a one-line warning, so the path still runs.
    """

    scheme = "synthetic"

    def __init__(self, uri: str, options: "Optional[Dict[str, Any]]" = None, generator: Any = None) -> None:
        super().__init__(uri, options)
        self.live = self.fps > 0
        self.limit = int(self.options.get("frames", 0) or 0)
        self.seed = int(self.options.get("seed", 0) or 0)
        self.pool_n = int(self.options.get("pool", 16))
        self._check_pool()
        self.generator_name = "noise"
        self._gen: Any = self.options.pop("generator", None) if generator is None else generator
        self._rng = np.random.RandomState(self.seed)
        self._frames: "List[Tuple[np.ndarray, Any]]" = []
        self._t0 = 0.0
        self._n = 0

    def _check_pool(self) -> None:
        """pool=K pre-renders K frames up front: bounded (``pool=100000`` at 4096x4096 rendered until out of memory)."""
        frame = max(self.width, 1) * max(self.height, 1) * 3
        if not 0 <= self.pool_n <= MAX_POOL or self.pool_n * frame > MAX_POOL_BYTES:
            raise BadInput("source {}: pool={} frames of {}x{} is out of bounds (0 to {} frames, {} MiB at most)".format(
                self.uri, self.pool_n, self.width, self.height, MAX_POOL, MAX_POOL_BYTES >> 20))

    @classmethod
    def options_from_uri(cls, uri: str) -> "Dict[str, Any]":
        parts = urlsplit(uri)
        opts = query_options(parts.query)
        w, h, fps = _size(parts.netloc + parts.path, uri)
        opts.update(width=w, height=h, fps=opts.get("fps", fps))
        return opts

    def open_impl(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise BadInput("source {}: give a size, e.g. synthetic://1280x720 or synthetic://1280x720@30".format(self.uri))
        if self._gen is None:
            if optional("cv2") is not None:
                self._gen = ShapeGenerator(self.seed)
            else:
                log.warning("%s: OpenCV (cv2) is not installed, so frames are random noise without ground truth", self.uri)
        if self._gen is not None:
            self.generator_name = getattr(self._gen, "name", type(self._gen).__name__)
            labels = getattr(self._gen, "labels", None)
            if labels:
                self.truth_labels = [str(n) for n in labels]  # what the frames' integer truth indexes
        if self.pool_n > 0:
            for _ in range(self.pool_n):
                img, truth = self._render()
                if self._allocator is not None:
                    buf = self._allocator.empty(img.shape, np.uint8)
                    np.copyto(buf.array, img)
                    self._frames.append((buf.array, (truth, buf)))
                else:
                    self._frames.append((img, (truth, None)))
        self._t0 = time.perf_counter()

    def _render(self) -> "Tuple[np.ndarray, Any]":
        if self._gen is not None:
            img, label = self._gen.frame(self.width, self.height)
            img = np.ascontiguousarray(img, dtype=np.uint8)
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            return img, label
        return self._rng.randint(0, 256, size=(self.height, self.width, 3), dtype=np.uint8), None

    def read_impl(self, timeout: "Optional[float]") -> "Optional[Frame]":
        if self.limit and self._n >= self.limit:
            self.end("synthetic source: {} frames done".format(self.limit))
            return None
        if self.fps > 0:
            if self._n == 0:  # the clock starts at the first read, not at open (set-up can take a while)
                self._t0 = time.perf_counter()
            due = self._t0 + self._n / self.fps
            wait = due - time.perf_counter()
            if wait > 0:
                if timeout is not None and wait > timeout:
                    time.sleep(timeout)
                    return None
                time.sleep(wait)
        i = self._n
        self._n += 1
        if self._frames:
            img, (truth, buf) = self._frames[i % len(self._frames)]
            # Pool frames are shared and read-only: sinks draw on copies.
            return Frame(img, source=i, index=i, truth=truth, buffer=buf)
        img, truth = self._render()
        arr, buf, pool = self._buffer_for(*img.shape)
        if arr is not None:
            np.copyto(arr, img)
            return Frame(arr, source=i, index=i, truth=truth, buffer=buf, pool=pool)
        return Frame(img, source=i, index=i, truth=truth)

    def describe(self) -> "Dict[str, Any]":
        d = super().describe()
        d.update(generator=self.generator_name, pool=self.pool_n, frames=self.limit)
        return d


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------
class ImageSource(Source):
    """A folder of images (sorted by file name) or a single image file.  Never drops."""

    scheme = "images"

    @classmethod
    def options_from_uri(cls, uri: str) -> "Dict[str, Any]":
        return {"path": Path(uri_path(uri))}

    def __init__(self, uri: str, options: "Optional[Dict[str, Any]]" = None, path: "Optional[Path]" = None) -> None:
        super().__init__(uri, options)
        path = self.options.pop("path", None) if path is None else path
        self.path = Path(path if path is not None else uri_path(uri))
        self.files: "List[Path]" = []
        self._i = 0

    def open_impl(self) -> None:
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
            if not self.files:
                raise BadInput("source folder {} holds no images ({})".format(self.path, ", ".join(IMAGE_EXTS)))
        elif self.path.is_file():
            self.files = [self.path]
        else:
            raise BadInput("source {} does not exist: give a video file, an image folder or a URI".format(self.path))
        first = _imread(self.files[0])
        if first is not None:
            self.height, self.width = first.shape[:2]

    def read_impl(self, timeout: "Optional[float]") -> "Optional[Frame]":
        cv2 = _cv2()
        while self._i < len(self.files):
            p = self.files[self._i]
            self._i += 1
            img = _imread(p)
            if img is None:
                log.warning("skipping %s: not a readable image", ascii(str(p)))
                continue
            return Frame(img, source=p.name)
        self.end("end of image folder ({} images)".format(len(self.files)))
        return None


def _imread(path: Path) -> "Optional[np.ndarray]":
    """BGR, 3 channels, or None.  Bytes are read by Python and decoded by OpenCV, so a file name
    OpenCV cannot take (not UTF-8: it crashes) still works."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except (OSError, ValueError):
        return None
    if data.size == 0:
        return None
    return _cv2().imdecode(data, 1)
