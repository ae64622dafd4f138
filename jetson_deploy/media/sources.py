"""The frame source template: :class:`Source`, its :class:`Frame` and :class:`BufferPool`.

This is the base every source imports, and it imports none of them.  Implementations live
beside it: ``local_sources`` (synthetic, images), ``opencv_sources`` (video files, V4L2, CSI,
RTSP, GStreamer); ``registry`` maps URI schemes to them (``open_source``); ``capture`` runs a
source on its own thread.

Template method (jetson-inference / Polygraphy style): :meth:`Source.capture` holds the guards
and bookkeeping; subclasses write ``open_impl`` / ``read_impl`` / ``close_impl`` and, when their
URI carries more than ``?key=value`` options, :meth:`Source.options_from_uri`.  ``capture()``
returns None at the end of the stream or on a timeout; ``is_streaming`` then says which.

Live sources (cameras, RTSP, paced synthetic) have ``live = True``: when inference is slower than
the source, :class:`~jetson_deploy.media.capture.CaptureThread` drops the *oldest* queued frame
(counted).  Files never drop: the capture thread waits for room instead.
"""
import logging
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from .._lazy import require

log = logging.getLogger(__name__)


def _cv2() -> Any:
    return require("cv2", "video and camera I/O")


def query_options(query: str) -> "Dict[str, Any]":
    """``a=1&b=x`` as ``{"a": "1", "b": "x"}`` (values stay strings; sources convert them)."""
    return dict(parse_qsl(query, keep_blank_values=True))


def uri_path(uri: str) -> str:
    """The file path a ``file://PATH`` or plain ``PATH`` URI names."""
    return uri[len("file://"):] if uri.startswith("file://") else uri


class Frame:
    """A captured frame: BGR ``uint8`` HxWxC ``image`` plus where it came from.

    ``source`` is the file name for image files, the frame number (as int) otherwise.
    ``buffer`` is the :class:`~jetson_deploy.runtime.memory.HostBuffer` the image lives in when
    the source captured straight into a pooled (pinned/mapped) buffer; :meth:`release` returns it.
    """

    __slots__ = ("index", "image", "source", "timestamp", "truth", "buffer", "_pool", "data", "stream")

    def __init__(self, image: "np.ndarray", source: Any = None, index: int = -1, truth: Any = None,
                 buffer: Any = None, pool: "Optional['BufferPool']" = None, timestamp: "Optional[float]" = None) -> None:
        self.image = image
        self.source = source
        self.index = index
        self.truth = truth
        self.buffer = buffer
        self._pool = pool
        self.timestamp = time.perf_counter() if timestamp is None else timestamp
        self.data: Any = None  # per-frame payload a pipeline stage attaches (e.g. preprocessed input)
        self.stream = 0  # source index in a multi-source run (media.live.stream_key)

    def release(self) -> None:
        """Give the pooled buffer back (idempotent).  Call when nobody reads ``image`` any more."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.put(self.buffer)


class BufferPool:
    """A free list of equally shaped host buffers that frames are captured into."""

    def __init__(self, allocator: Any, shape: "Tuple[int, ...]", count: int, dtype: Any = np.uint8) -> None:
        self.allocator = allocator
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self._free: "Deque[Any]" = deque(allocator.empty(self.shape, self.dtype) for _ in range(count))
        self._cond = threading.Condition()
        self.count = count
        self.fallbacks = 0  # times no pooled buffer was free and a plain array was used

    def get(self, timeout: float = 0.5) -> "Optional[Any]":
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
    #: class names a frame's integer ``truth`` indexes, when the source knows them (the synthetic
    #: source: its generator's); the run reports accuracy only against these
    truth_labels: "Optional[List[str]]" = None

    def __init__(self, uri: str, options: "Optional[Dict[str, Any]]" = None) -> None:
        self.uri = uri
        self.options: "Dict[str, Any]" = dict(options or {})
        self.width = int(self.options.get("width", 0) or 0)
        self.height = int(self.options.get("height", 0) or 0)
        self.fps = float(self.options.get("fps", 0) or 0)
        self.is_streaming = False
        self.frames_captured = 0
        self.end_reason = ""
        self._opened = False
        self._allocator: Any = None
        self._pool: "Optional[BufferPool]" = None
        self._pool_size = 0

    # ---- public template -------------------------------------------------------------
    def open(self) -> "Source":
        if not self._opened:
            self.open_impl()
            self._opened = True
            self.is_streaming = True
        return self

    def capture(self, timeout: "Optional[float]" = None) -> "Optional[Frame]":
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

    def _buffer_for(self, h: int, w: int, c: int = 3) -> "Tuple[Optional[np.ndarray], Any, Optional[BufferPool]]":
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
    @classmethod
    def options_from_uri(cls, uri: str) -> "Dict[str, Any]":
        """The options a URI of this source's scheme carries (default: its ``?key=value`` query)."""
        return query_options(urlsplit(uri).query)

    def open_impl(self) -> None:
        pass

    def read_impl(self, timeout: "Optional[float]") -> "Optional[Frame]":
        raise NotImplementedError

    def close_impl(self) -> None:
        pass

    def describe(self) -> "Dict[str, Any]":
        return {"uri": self.uri, "kind": self.scheme, "live": self.live, "width": self.width,
                "height": self.height, "fps": self.fps}
