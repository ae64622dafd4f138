"""Frame sources addressed by URI, and the capture thread that feeds the pipeline.

URIs (DESIGN.md, CLI contract)::

    csi://0?width=1280&height=720&fps=30&flip=0     Jetson CSI camera (nvarguscamerasrc, GStreamer)
    v4l2:///dev/video0?width=640&height=480&fps=30   USB/V4L2 camera
    rtsp://host:554/stream                           network stream (hw decode on Jetson, FFmpeg elsewhere)
    gst://<pipeline ending in appsink>               your own GStreamer pipeline
    clip.mp4 | file://clip.mp4                       video file
    frames/ | image.jpg                              folder of images (sorted by name) or one image
    synthetic://1280x720[@30][?frames=N&seed=S&pool=K]   generated shapes (jetson_deploy.demo)

Template method (jetson-inference / Polygraphy style): :meth:`Source.capture` holds the guards
and bookkeeping; subclasses write ``open_impl`` / ``read_impl`` / ``close_impl``.  ``capture()``
returns None at the end of the stream or on a timeout; ``is_streaming`` then says which.

Live sources (cameras, RTSP, paced synthetic) have ``live = True``: when inference is slower than
the source, :class:`CaptureThread` drops the *oldest* queued frame (counted).  Files never drop:
the capture thread waits for room instead.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from .._lazy import require
from ..errors import BadInput

log = logging.getLogger("jetson_deploy.io")

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _cv2() -> Any:
    return require("cv2", "video and camera I/O")


class Frame:
    """A captured frame: BGR ``uint8`` HxWxC ``image`` plus where it came from.

    ``source`` is the file name for image files, the frame number (as int) otherwise.
    ``buffer`` is the :class:`~jetson_deploy.runtime.memory.HostBuffer` the image lives in when
    the source captured straight into a pooled (pinned/mapped) buffer; :meth:`release` returns it.
    """

    __slots__ = ("index", "image", "source", "timestamp", "truth", "buffer", "_pool", "data")

    def __init__(self, image: np.ndarray, source: Any = None, index: int = -1, truth: Any = None,
                 buffer: Any = None, pool: Optional["BufferPool"] = None, timestamp: Optional[float] = None) -> None:
        self.image = image
        self.source = source
        self.index = index
        self.truth = truth
        self.buffer = buffer
        self._pool = pool
        self.timestamp = time.perf_counter() if timestamp is None else timestamp
        self.data: Any = None  # per-frame payload a pipeline stage attaches (e.g. preprocessed input)

    def release(self) -> None:
        """Give the pooled buffer back (idempotent).  Call when nobody reads ``image`` any more."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.put(self.buffer)


class BufferPool:
    """A free list of equally shaped host buffers that frames are captured into."""

    def __init__(self, allocator: Any, shape: Tuple[int, ...], count: int, dtype: Any = np.uint8) -> None:
        self.allocator = allocator
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self._free: Deque[Any] = deque(allocator.empty(self.shape, self.dtype) for _ in range(count))
        self._cond = threading.Condition()
        self.count = count
        self.fallbacks = 0  # times no pooled buffer was free and a plain array was used

    def get(self, timeout: float = 0.5) -> Optional[Any]:
        with self._cond:
            end = time.monotonic() + timeout
            while not self._free:
                left = end - time.monotonic()
                if left <= 0:
                    self.fallbacks += 1
                    return None
                self._cond.wait(left)
            return self._free.popleft()

    def put(self, buf: Any) -> None:
        with self._cond:
            self._free.append(buf)
            self._cond.notify()


class Source:
    """Base class of all frame sources; subclasses implement the ``*_impl`` hooks."""

    scheme = ""
    live = False
    #: a source that is busy recovering by itself (RTSP reconnect) is not stalled
    recovering = False

    def __init__(self, uri: str, options: Optional[Dict[str, Any]] = None) -> None:
        self.uri = uri
        self.options: Dict[str, Any] = dict(options or {})
        self.width = int(self.options.get("width", 0) or 0)
        self.height = int(self.options.get("height", 0) or 0)
        self.fps = float(self.options.get("fps", 0) or 0)
        self.is_streaming = False
        self.frames_captured = 0
        self.end_reason = ""
        self._opened = False
        self._allocator: Any = None
        self._pool: Optional[BufferPool] = None
        self._pool_size = 0

    # ---- public template -------------------------------------------------------------
    def open(self) -> "Source":
        if not self._opened:
            self.open_impl()
            self._opened = True
            self.is_streaming = True
        return self

    def capture(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """Next frame, or None at end of stream (``is_streaming`` False) or on timeout."""
        if not self._opened:
            self.open()
        if not self.is_streaming:
            return None
        frame = self.read_impl(timeout)
        if frame is None:
            return None
        if frame.index < 0:
            frame.index = self.frames_captured
        if frame.source is None:
            frame.source = frame.index
        self.frames_captured += 1
        return frame

    def close(self) -> None:
        if self._opened:
            try:
                self.close_impl()
            finally:
                self._opened = False
                self.is_streaming = False

    def end(self, reason: str) -> None:
        """Mark the end of the stream (subclasses call this from read_impl)."""
        self.is_streaming = False
        if not self.end_reason:
            self.end_reason = reason

    def __enter__(self) -> "Source":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self):
        while True:
            f = self.capture()
            if f is None:
                if not self.is_streaming:
                    return
                continue
            yield f

    # ---- buffers -----------------------------------------------------------------------
    def use_allocator(self, allocator: Any, pool_size: int = 8) -> None:
        """Capture into pooled buffers from ``allocator`` (pinned/mapped) where the source can."""
        self._allocator = allocator
        self._pool_size = max(2, int(pool_size))

    def _buffer_for(self, h: int, w: int, c: int = 3) -> Tuple[Optional[np.ndarray], Any, Optional[BufferPool]]:
        """(array, buffer, pool) to capture into, or (None, None, None) for a fresh array."""
        if self._allocator is None or h <= 0 or w <= 0:
            return None, None, None
        if self._pool is None or self._pool.shape != (h, w, c):
            self._pool = BufferPool(self._allocator, (h, w, c), self._pool_size)
        buf = self._pool.get()
        if buf is None:
            return None, None, None
        return buf.array, buf, self._pool

    # ---- hooks ---------------------------------------------------------------------------
    def open_impl(self) -> None:
        pass

    def read_impl(self, timeout: Optional[float]) -> Optional[Frame]:
        raise NotImplementedError

    def close_impl(self) -> None:
        pass

    def describe(self) -> Dict[str, Any]:
        return {"uri": self.uri, "kind": self.scheme, "live": self.live, "width": self.width,
                "height": self.height, "fps": self.fps}


# ---------------------------------------------------------------------------------------------
# synthetic
# ---------------------------------------------------------------------------------------------
class SyntheticSource(Source):
    """Generated frames: shapes from ``jetson_deploy.demo.ShapeGenerator`` (noise if absent).

    ``@fps`` paces it like a camera (and makes it live: frames drop when inference is slow);
    without it frames come as fast as they are taken.  ``pool=K`` (default 16) pre-renders K
    frames into the allocator's (pinned) buffers and cycles through them, so a 1280x720 benchmark
    measures the pipeline, not the drawing; ``pool=0`` renders every frame.  ``frames=N`` ends the
    stream after N frames.  ``truth`` carries the generator's label.
    """

    scheme = "synthetic"

    def __init__(self, uri: str, options: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(uri, options)
        self.live = self.fps > 0
        self.limit = int(self.options.get("frames", 0) or 0)
        self.seed = int(self.options.get("seed", 0) or 0)
        self.pool_n = int(self.options.get("pool", 16))
        self.generator_name = "noise"
        self._gen: Any = None
        self._rng = np.random.RandomState(self.seed)
        self._frames: List[Tuple[np.ndarray, Any]] = []
        self._t0 = 0.0
        self._n = 0

    def open_impl(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise BadInput("source {}: give a size, e.g. synthetic://1280x720 or synthetic://1280x720@30".format(self.uri))
        try:
            from .. import demo  # noqa: WPS433 (optional sibling package)

            self._gen = demo.ShapeGenerator(self.seed)
            self.generator_name = "shapes"
        except Exception:  # demo package missing or broken: noise frames still exercise the path
            self._gen = None
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

    def _render(self) -> Tuple[np.ndarray, Any]:
        if self._gen is not None:
            img, label = self._gen.frame(self.width, self.height)
            img = np.ascontiguousarray(img, dtype=np.uint8)
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            return img, label
        return self._rng.randint(0, 256, size=(self.height, self.width, 3), dtype=np.uint8), None

    def read_impl(self, timeout: Optional[float]) -> Optional[Frame]:
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

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        d.update(generator=self.generator_name, pool=self.pool_n, frames=self.limit)
        return d


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------
class ImageSource(Source):
    """A folder of images (sorted by file name) or a single image file.  Never drops."""

    scheme = "images"

    def __init__(self, uri: str, options: Optional[Dict[str, Any]] = None, path: Optional[Path] = None) -> None:
        super().__init__(uri, options)
        self.path = Path(path if path is not None else uri)
        self.files: List[Path] = []
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
        first = _cv2().imread(str(self.files[0]), 1)
        if first is not None:
            self.height, self.width = first.shape[:2]

    def read_impl(self, timeout: Optional[float]) -> Optional[Frame]:
        cv2 = _cv2()
        while self._i < len(self.files):
            p = self.files[self._i]
            self._i += 1
            img = cv2.imread(str(p), 1)  # always BGR, 3 channels
            if img is None:
                log.warning("skipping %s: not a readable image", p)
                continue
            return Frame(img, source=p.name)
        self.end("end of image folder ({} images)".format(len(self.files)))
        return None


# ---------------------------------------------------------------------------------------------
# OpenCV-backed sources: video files, V4L2, CSI, RTSP, GStreamer
# ---------------------------------------------------------------------------------------------
def has_gstreamer() -> bool:
    """True when this OpenCV build has GStreamer (JetPack's does; pip wheels don't)."""
    try:
        info = _cv2().getBuildInformation()
    except Exception:
        return False
    for line in info.splitlines():
        if "GStreamer" in line and ":" in line:
            return "YES" in line.split(":", 1)[1]
    return False


def is_jetson() -> bool:
    return os.path.exists("/etc/nv_tegra_release") or os.path.exists("/proc/device-tree/model") and "jetson" in _read("/proc/device-tree/model").lower()


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").strip("\x00\n ")
    except OSError:
        return ""


class OpenCVSource(Source):
    """A ``cv2.VideoCapture`` read straight into a pooled (pinned/mapped) buffer."""

    scheme = "opencv"
    api_name = "CAP_ANY"
    #: seconds a read may block before the source counts as stalled
    read_timeout = 5.0

    def __init__(self, uri: str, options: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(uri, options)
        self.cap: Any = None
        self.read_timeout = float(self.options.get("timeout", self.read_timeout))

    # what to open: (target, api) -- subclasses override
    def target(self) -> Tuple[Any, Optional[int]]:
        return self.uri, None

    def _open_capture(self) -> Any:
        """Open and return a VideoCapture-like object (tests replace this)."""
        cv2 = _cv2()
        target, api = self.target()
        params: List[int] = []
        ms = int(self.read_timeout * 1000)
        for name, val in (("CAP_PROP_OPEN_TIMEOUT_MSEC", ms), ("CAP_PROP_READ_TIMEOUT_MSEC", ms)):
            if hasattr(cv2, name) and self.live:
                params += [getattr(cv2, name), val]
        if api is None:
            api = cv2.CAP_ANY
        try:
            cap = cv2.VideoCapture(target, api, params) if params else cv2.VideoCapture(target, api)
        except TypeError:  # old OpenCV without the params overload
            cap = cv2.VideoCapture(target, api)
        return cap

    def _configure(self, cap: Any) -> None:
        pass

    def open_impl(self) -> None:
        cap = self._open_capture()
        if cap is None or not cap.isOpened():
            raise BadInput(self.open_error())
        self._configure(cap)
        self.cap = cap
        self._read_props()

    def _read_props(self) -> None:
        cv2 = _cv2()
        try:
            w = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
            h = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
            fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0)
        except Exception:
            w = h = 0
            fps = 0.0
        self.width, self.height = w or self.width, h or self.height
        self.fps = fps if fps > 0 and fps < 1000 else self.fps

    def open_error(self) -> str:
        return "cannot open source {}".format(self.uri)

    def _grab(self) -> Optional[Frame]:
        arr, buf, pool = self._buffer_for(self.height, self.width, 3)
        if arr is not None:
            ok, img = self.cap.read(image=arr)
        else:
            ok, img = self.cap.read()
        if not ok or img is None:
            if pool is not None:
                pool.put(buf)
            return None
        if arr is not None and img is not arr and not np.shares_memory(img, arr):
            # OpenCV reallocated (size changed mid-stream): drop the pool and use its array.
            pool.put(buf)
            self._pool = None
            h, w = img.shape[:2]
            self.width, self.height = w, h
            return Frame(img)
        return Frame(img, buffer=buf, pool=pool)

    def read_impl(self, timeout: Optional[float]) -> Optional[Frame]:
        f = self._grab()
        if f is None:
            self.end(self.eos_message())
        return f

    def eos_message(self) -> str:
        return "end of stream: {}".format(self.uri)

    def close_impl(self) -> None:
        if self.cap is not None:
            try:
                self.cap.release()
            finally:
                self.cap = None


class VideoFileSource(OpenCVSource):
    """A video file; every frame is delivered (never drops).  ``source`` is the frame number."""

    scheme = "file"

    def __init__(self, uri: str, options: Optional[Dict[str, Any]] = None, path: Optional[Path] = None) -> None:
        super().__init__(uri, options)
        self.path = Path(path if path is not None else uri)

    def target(self) -> Tuple[Any, Optional[int]]:
        return str(self.path), None

    def open_impl(self) -> None:
        if not self.path.is_file():
            raise BadInput("source {} does not exist: give a video file, an image folder or a URI".format(self.path))
        super().open_impl()

    def open_error(self) -> str:
        return "cannot decode video {} (not a video, or this OpenCV lacks its codec)".format(self.path)

    def eos_message(self) -> str:
        return "end of video {} ({} frames)".format(self.path.name, self.frames_captured)


class V4L2Source(OpenCVSource):
    """``v4l2:///dev/videoN``: a USB/V4L2 camera; ``width``/``height``/``fps`` options."""

    scheme = "v4l2"
    live = True

    def __init__(self, uri: str, options: Optional[Dict[str, Any]] = None, device: str = "/dev/video0") -> None:
        super().__init__(uri, options)
        self.device = device

    def target(self) -> Tuple[Any, Optional[int]]:
        cv2 = _cv2()
        return self.device, getattr(cv2, "CAP_V4L2", None)

    def _configure(self, cap: Any) -> None:
        cv2 = _cv2()
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        if hasattr(cv2, "CAP_PROP_BUFFERSIZE"):
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a backlog

    def open_error(self) -> str:
        if not os.path.exists(self.device):
            return "camera {} not found: is it plugged in? (ls /dev/video*)".format(self.device)
        return "cannot open camera {} (busy, or no permission: add your user to the 'video' group)".format(self.device)

    def eos_message(self) -> str:
        if not os.path.exists(self.device):
            return "camera {} disappeared (unplugged?)".format(self.device)
        return "camera {} stopped delivering frames".format(self.device)


def csi_pipeline(sensor: int = 0, width: int = 1280, height: int = 720, fps: float = 30, flip: int = 0) -> str:
    """The nvarguscamerasrc GStreamer pipeline OpenCV opens for ``csi://N`` (BGR frames to appsink)."""
    return (
        "nvarguscamerasrc sensor-id={s} ! "
        "video/x-raw(memory:NVMM), width=(int){w}, height=(int){h}, framerate=(fraction){f}/1, format=(string)NV12 ! "
        "nvvidconv flip-method={flip} ! video/x-raw, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! "
        "appsink drop=true max-buffers=2 sync=false"
    ).format(s=int(sensor), w=int(width), h=int(height), f=int(round(fps)), flip=int(flip))


def rtsp_pipeline(url: str, latency_ms: int = 200, codec: str = "h264", hw: bool = True, timeout_s: float = 5.0) -> str:
    """GStreamer pipeline for RTSP: ``nvv4l2decoder`` (hardware) on a Jetson, ``avdec`` elsewhere.

    ``rtspsrc`` gets TCP and UDP timeouts so a stalled server makes the pipeline fail (the read
    returns, the source reconnects) instead of blocking the appsink forever.
    """
    depay = "rtph265depay ! h265parse" if codec == "h265" else "rtph264depay ! h264parse"
    if hw:
        dec = "nvv4l2decoder ! nvvidconv ! video/x-raw, format=(string)BGRx ! videoconvert"
    else:
        dec = ("avdec_h265" if codec == "h265" else "avdec_h264") + " ! videoconvert"
    us = int(timeout_s * 1e6)
    return (
        "rtspsrc location={u} latency={l} protocols=tcp tcp-timeout={us} timeout={us} ! {d} ! {dec} ! "
        "video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=2 sync=false"
    ).format(u=url, l=int(latency_ms), us=us, d=depay, dec=dec)


class CSISource(OpenCVSource):
    """``csi://N``: a MIPI CSI camera through ``nvarguscamerasrc`` (needs OpenCV with GStreamer)."""

    scheme = "csi"
    live = True

    def __init__(self, uri: str, options: Optional[Dict[str, Any]] = None, sensor: int = 0) -> None:
        super().__init__(uri, options)
        self.sensor = sensor
        self.width = self.width or 1280
        self.height = self.height or 720
        self.fps = self.fps or 30.0
        self.flip = int(self.options.get("flip", 0) or 0)

    def pipeline(self) -> str:
        return csi_pipeline(self.sensor, self.width, self.height, self.fps, self.flip)

    def target(self) -> Tuple[Any, Optional[int]]:
        return self.pipeline(), _cv2().CAP_GSTREAMER

    def open_impl(self) -> None:
        if not has_gstreamer():
            raise BadInput("csi:// needs OpenCV built with GStreamer (JetPack's python3-opencv), this OpenCV has none")
        super().open_impl()

    def open_error(self) -> str:
        return "cannot open CSI camera {} (is nvargus-daemon running? try: sudo systemctl restart nvargus-daemon)".format(self.sensor)

    def eos_message(self) -> str:
        return "CSI camera {} stopped delivering frames".format(self.sensor)


class GstSource(OpenCVSource):
    """``gst://<pipeline>``: a user's own GStreamer pipeline ending in ``appsink``."""

    scheme = "gst"
    live = True

    def __init__(self, uri: str, options: Optional[Dict[str, Any]] = None, pipeline: str = "") -> None:
        super().__init__(uri, options)
        self.pipeline = pipeline
        if "appsink" not in pipeline:
            raise BadInput("gst:// pipeline must end in appsink (e.g. gst://videotestsrc ! videoconvert ! appsink)")
        self.live = str(self.options.get("live", "1")) not in ("0", "false", "no")

    def target(self) -> Tuple[Any, Optional[int]]:
        return self.pipeline, _cv2().CAP_GSTREAMER

    def open_impl(self) -> None:
        if not has_gstreamer():
            raise BadInput("gst:// needs OpenCV built with GStreamer (JetPack's python3-opencv), this OpenCV has none")
        super().open_impl()

    def open_error(self) -> str:
        return "GStreamer could not start the pipeline: {}".format(self.pipeline)


class RTSPSource(OpenCVSource):
    """``rtsp://``: hardware decode through GStreamer on a Jetson, FFmpeg elsewhere.

    When the stream drops or stalls (a read fails or times out), the source reconnects with
    exponential backoff (``backoff`` seconds doubling to ``backoff_max``), at most ``reconnects``
    times in a row (0 = forever); then it ends with a message.  Reads time out after ``timeout``
    seconds (FFmpeg's read timeout; the GStreamer appsink never blocks longer than its pipeline).
    """

    scheme = "rtsp"
    live = True

    def __init__(self, uri: str, options: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(uri, options)
        self.backoff = float(self.options.get("backoff", 0.5))
        self.backoff_max = float(self.options.get("backoff_max", 8.0))
        self.max_reconnects = int(self.options.get("reconnects", 10))
        self.latency = int(self.options.get("latency", 200))
        self.codec = str(self.options.get("codec", "h264"))
        self.reconnects = 0
        self._fails = 0
        #: True while reconnecting: the pipeline does not count this as a stall (the source gives up itself)
        self.recovering = False
        gst = self.options.get("gstreamer")
        self.use_gst = (has_gstreamer() and is_jetson()) if gst is None else bool(gst)
        self._sleep: Callable[[float], None] = time.sleep

    def target(self) -> Tuple[Any, Optional[int]]:
        cv2 = _cv2()
        if self.use_gst:
            return rtsp_pipeline(self.uri, self.latency, self.codec, hw=is_jetson(), timeout_s=self.read_timeout), cv2.CAP_GSTREAMER
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS",
                              "rtsp_transport;tcp|stimeout;{}".format(int(self.read_timeout * 1e6)))
        return self.uri, cv2.CAP_FFMPEG

    def open_error(self) -> str:
        return "cannot connect to {} (check the URL, credentials and that the camera is reachable)".format(self.uri)

    def _reconnect(self) -> bool:
        self.recovering = True
        try:
            return self._reconnect_loop()
        finally:
            self.recovering = False

    def _reconnect_loop(self) -> bool:
        while self.max_reconnects <= 0 or self._fails < self.max_reconnects:
            delay = min(self.backoff * (2 ** self._fails), self.backoff_max)
            self._fails += 1
            log.warning("%s: stream lost, reconnecting in %.1fs (attempt %d)", self.uri, delay, self._fails)
            if self.cap is not None:
                try:
                    self.cap.release()
                except Exception:
                    pass
                self.cap = None
            self._sleep(delay)
            try:
                cap = self._open_capture()
            except Exception as exc:  # an error opening is one more failed attempt
                log.warning("%s: reconnect failed: %s", self.uri, exc)
                continue
            if cap is not None and cap.isOpened():
                self.cap = cap
                self.reconnects += 1
                return True
            if cap is not None:
                try:
                    cap.release()
                except Exception:
                    pass
        return False

    def read_impl(self, timeout: Optional[float]) -> Optional[Frame]:
        while True:
            f = self._grab() if self.cap is not None else None
            if f is not None:
                self._fails = 0
                return f
            if not self._reconnect():
                self.end("{}: stream lost, gave up after {} reconnect attempts".format(self.uri, self._fails))
                return None

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        d.update(reconnects=self.reconnects, decoder="gstreamer" if self.use_gst else "ffmpeg")
        return d


# ---------------------------------------------------------------------------------------------
# URI parsing
# ---------------------------------------------------------------------------------------------
def _options(query: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        out[k] = v
    return out


def _size(text: str, uri: str) -> Tuple[int, int, float]:
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
    return w, h, fps


def parse_source_uri(uri: str) -> Tuple[str, Dict[str, Any]]:
    """(kind, options) for a source URI; kinds: synthetic csi v4l2 rtsp gst file images."""
    uri = str(uri)
    if uri.startswith("gst://"):
        return "gst", {"pipeline": uri[len("gst://"):]}
    if uri.startswith(("rtsp://", "rtsps://")):
        return "rtsp", {}
    if uri.startswith("synthetic://"):
        parts = urlsplit(uri)
        opts = _options(parts.query)
        w, h, fps = _size(parts.netloc + parts.path, uri)
        opts.update(width=w, height=h, fps=opts.get("fps", fps))
        return "synthetic", opts
    if uri.startswith("csi://"):
        parts = urlsplit(uri)
        opts = _options(parts.query)
        try:
            opts["sensor"] = int(parts.netloc or (parts.path.strip("/") or 0))
        except ValueError:
            raise BadInput("source {}: csi://N takes a sensor number".format(uri))
        return "csi", opts
    if uri.startswith("v4l2://"):
        parts = urlsplit(uri)
        opts = _options(parts.query)
        dev = parts.path or "/dev/video0"
        if parts.netloc:
            dev = "/dev/video" + parts.netloc if parts.netloc.isdigit() else "/" + parts.netloc + dev
        opts["device"] = dev
        return "v4l2", opts
    if uri.startswith("/dev/video"):
        return "v4l2", {"device": uri}
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    if "://" in path:
        raise BadInput("source {}: unknown scheme; use csi://, v4l2://, rtsp://, gst://, synthetic://, a video file or an image folder".format(uri))
    p = Path(path)
    if p.is_dir() or p.suffix.lower() in IMAGE_EXTS:
        return "images", {"path": p}
    return "file", {"path": p}


def open_source(uri: Any, **options: Any) -> Source:
    """Make (not yet open) the source for ``uri``; extra keyword options override URI ones."""
    if isinstance(uri, Source):
        return uri
    kind, opts = parse_source_uri(str(uri))
    opts.update({k: v for k, v in options.items() if v is not None})
    uri = str(uri)
    if kind == "synthetic":
        return SyntheticSource(uri, opts)
    if kind == "images":
        return ImageSource(uri, opts, path=opts.pop("path"))
    if kind == "file":
        return VideoFileSource(uri, opts, path=opts.pop("path"))
    if kind == "csi":
        return CSISource(uri, opts, sensor=int(opts.pop("sensor", 0)))
    if kind == "v4l2":
        return V4L2Source(uri, opts, device=opts.pop("device"))
    if kind == "rtsp":
        return RTSPSource(uri, opts)
    if kind == "gst":
        return GstSource(uri, opts, pipeline=opts.pop("pipeline"))
    raise BadInput("unknown source {}".format(uri))  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# capture thread
# ---------------------------------------------------------------------------------------------
class CaptureThread:
    """Runs ``source.capture()`` on its own thread into a bounded queue.

    * ``drop=True`` (live sources): when the queue is full the oldest frame is dropped (its
      buffer released) and counted in ``dropped``; the consumer always gets the freshest frames.
    * ``drop=False`` (files): the thread waits for room; nothing is lost.
    * ``prepare(frame)`` runs on this thread after capture (e.g. host preprocessing for CPU
      backends, so it overlaps inference).
    * :meth:`get` never blocks longer than its timeout; ``finished`` is True once the source
      ended (end of stream, unplugged camera, failure) and the queue is empty; ``end_reason``
      and ``error`` say why.
    """

    def __init__(self, source: Source, maxsize: int = 4, drop: Optional[bool] = None,
                 prepare: Optional[Callable[[Frame], None]] = None, max_frames: Optional[int] = None,
                 poll: float = 0.25) -> None:
        self.source = source
        self.maxsize = max(1, int(maxsize))
        self.drop = source.live if drop is None else bool(drop)
        self.prepare = prepare
        self.max_frames = max_frames
        self.poll = poll
        self.dropped = 0
        self.captured = 0
        self.error: Optional[BaseException] = None
        self.end_reason = ""
        self.last_frame_time = time.monotonic()
        self._q: Deque[Frame] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> "CaptureThread":
        self._thread.start()
        return self

    def _run(self) -> None:
        src = self.source
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and self.captured >= self.max_frames:
                    self.end_reason = "max frames reached ({})".format(self.max_frames)
                    break
                frame = src.capture(timeout=self.poll)
                if frame is None:
                    if not src.is_streaming:
                        self.end_reason = src.end_reason or "end of stream"
                        break
                    continue
                if self.prepare is not None:
                    self.prepare(frame)
                self.captured += 1
                self._put(frame)
        except BaseException as exc:  # reported to the consumer, never swallowed
            self.error = exc
            self.end_reason = "source failed: {}".format(exc)
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _put(self, frame: Frame) -> None:
        with self._cond:
            while len(self._q) >= self.maxsize:
                if self.drop:
                    old = self._q.popleft()
                    old.release()
                    self.dropped += 1
                    break
                if self._stop.is_set():
                    frame.release()
                    return
                self._cond.wait(self.poll)
            self._q.append(frame)
            self.last_frame_time = time.monotonic()
            self._cond.notify_all()

    def get(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The oldest queued frame, or None after ``timeout`` seconds or when finished."""
        with self._cond:
            end = None if timeout is None else time.monotonic() + timeout
            while not self._q:
                if self._done:
                    return None
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(self.poll if left is None else min(left, self.poll))
            f = self._q.popleft()
            self._cond.notify_all()
            return f

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._done and not self._q

    def stop(self, join_timeout: float = 2.0) -> None:
        """Stop capturing, release queued frames, close the source (never blocks for long)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(join_timeout)
        with self._cond:
            while self._q:
                self._q.popleft().release()
        if not self._thread.is_alive():
            self.source.close()
        else:  # stuck inside a driver read; it is a daemon thread and dies with the process
            log.warning("capture thread still blocked in %s after stop; leaving it", self.source.uri)
