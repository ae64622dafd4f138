"""Result sinks: the :class:`Sink` template and ``display://0``, video files, ``.jsonl``, ``null://``.

``registry.open_sink`` picks the class by URI scheme or file suffix; a new sink (``rtsp://``,
``http://``) is a subclass here or in its own module plus one ``register_sink`` line there.

Template method: :meth:`Sink.render` holds the guards (lazy open at the first frame's size,
frame counting); subclasses write ``open_impl`` / ``render_impl`` / ``close_impl``.  File sinks
write to a temporary name beside the target and rename it into place on close, so a reader never
sees a half-written file (an interrupted run keeps ``NAME.partial``).
"""
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from .._files import is_utf8_path, temp_sibling
from .._lazy import require
from ..errors import BadInput

#: video-file suffixes VideoSink writes, with the codec for each (fewer than vocab.VIDEO_EXTS reads)
VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".mov": "mp4v"}


class Sink:
    """Base class; ``needs_image`` is False for sinks that never look at pixels."""

    scheme = ""
    needs_image = True
    #: how the URI looks, for error messages (default ``<scheme>://``)
    example = ""

    def __init__(self, uri: str, fps: float = 30.0) -> None:
        self.uri = uri
        self.fps = fps
        self.frames = 0
        self._opened = False
        self.size = (0, 0)

    def render(self, frame: Any, result: Any, fps: "Optional[float]" = None) -> None:
        """Show/write one frame's result.  ``frame.image`` is not modified (overlays draw on a copy)."""
        if not self._opened:
            img = getattr(frame, "image", None)
            h, w = (img.shape[:2] if img is not None else (0, 0))
            self.size = (int(w), int(h))
            self.open_impl()
            self._opened = True
        self.render_impl(frame, result, fps)
        self.frames += 1

    def close(self) -> None:
        if self._opened:
            self._opened = False
            self.close_impl()

    def abort(self) -> None:
        """Close without publishing (errors); default: same as close."""
        self.close()

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def open_impl(self) -> None:
        pass

    def render_impl(self, frame: Any, result: Any, fps: "Optional[float]") -> None:
        raise NotImplementedError

    def close_impl(self) -> None:
        pass

    def describe(self) -> "Dict[str, Any]":
        return {"uri": self.uri, "kind": self.scheme, "frames": self.frames}


class NullSink(Sink):
    scheme = "null"
    needs_image = False

    def render_impl(self, frame: Any, result: Any, fps: "Optional[float]") -> None:
        pass


def _file_path(uri: str) -> Path:
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri)


def _partial(path: Path, suffix: str = "") -> Path:
    """``NAME.partial``; a short temporary name when that would pass the 255-byte name limit."""
    name = ("." + path.stem + ".partial" + suffix) if suffix else (path.name + ".partial")
    return path.with_name(name) if len(os.fsencode(name)) <= 255 else temp_sibling(path, suffix)


class JsonlSink(Sink):
    """One JSON object a frame: index, source, label, score, latency_ms (and task fields)."""

    scheme = "jsonl"
    needs_image = False

    def __init__(self, uri: str, fps: float = 30.0, path: "Optional[Path]" = None) -> None:
        super().__init__(uri, fps)
        self.path = Path(path) if path is not None else _file_path(uri)
        self._f: Any = None

    def open_impl(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(str(_partial(self.path)), "w", encoding="utf-8")

    def render_impl(self, frame: Any, result: Any, fps: "Optional[float]") -> None:
        self._f.write(json.dumps(result.to_json(), separators=(",", ":")) + "\n")

    def close_impl(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(str(_partial(self.path)), str(self.path))

    def abort(self) -> None:
        if self._opened and self._f is not None:
            self._opened = False
            self._f.close()  # keep NAME.partial for inspection; never publish a broken file


class VideoSink(Sink):
    """Annotated video (overlay: label, score, FPS / boxes / mask).  ``.mp4`` (mp4v) or ``.avi`` (MJPG)."""

    scheme = "video"

    def __init__(self, uri: str, fps: float = 30.0, path: "Optional[Path]" = None) -> None:
        super().__init__(uri, fps)
        self.path = Path(path) if path is not None else _file_path(uri)
        self._w: Any = None
        self._tmp = _partial(self.path, self.path.suffix)

    def open_impl(self) -> None:
        cv2 = require("cv2", "writing video files")
        if not is_utf8_path(self.path):  # OpenCV/FFmpeg crash on such a name
            raise BadInput("--sink {!r} is not valid UTF-8: use another name".format(str(self.path)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC.get(self.path.suffix.lower(), "mp4v"))
        w, h = self.size
        self._w = cv2.VideoWriter(str(self._tmp), fourcc, float(self.fps or 30.0), (w, h))
        if not self._w.isOpened():
            raise BadInput("cannot write video {} (this OpenCV lacks the {} encoder; try .avi)".format(
                self.path, VIDEO_FOURCC.get(self.path.suffix.lower(), "mp4v")))

    def render_impl(self, frame: Any, result: Any, fps: "Optional[float]") -> None:
        from .overlay import draw

        img = frame.image
        if img.ndim == 2 or img.shape[2] == 1:
            img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
        else:
            img = img.copy()
        if (img.shape[1], img.shape[0]) != self.size:
            img = require("cv2").resize(img, self.size)
        self._w.write(draw(img, result, fps))

    def close_impl(self) -> None:
        self._w.release()
        os.replace(str(self._tmp), str(self.path))

    def abort(self) -> None:
        if self._opened:
            self._opened = False
            self._w.release()
            try:
                os.unlink(str(self._tmp))
            except OSError:
                pass


class DisplaySink(Sink):
    """``display://N``: an OpenCV window (needs a GUI-enabled OpenCV and a display)."""

    scheme = "display"
    example = "display://0"

    def __init__(self, uri: str, fps: float = 30.0, title: str = "jetson-deploy") -> None:
        super().__init__(uri, fps)
        self.title = title
        self.closed_by_user = False

    def open_impl(self) -> None:
        cv2 = require("cv2", "display://")
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            raise BadInput("display:// needs a screen (DISPLAY is not set); write a video file or use null:// instead")
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except Exception as exc:  # headless OpenCV wheels have no GUI
            raise BadInput("display:// needs OpenCV with GUI support ({}); on a Jetson use JetPack's python3-opencv".format(
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__))

    def render_impl(self, frame: Any, result: Any, fps: "Optional[float]") -> None:
        from .overlay import draw

        cv2 = require("cv2")
        cv2.imshow(self.title, draw(frame.image.copy(), result, fps))
        if (cv2.waitKey(1) & 0xFF) in (27, ord("q")):
            self.closed_by_user = True

    def close_impl(self) -> None:
        try:
            require("cv2").destroyWindow(self.title)
        except Exception:
            pass
