"""Result sinks: the :class:`Sink` template and ``display://0``, video files, ``.jsonl``, ``null://``.

``registry.open_sink`` picks the class by URI scheme or file suffix; a new sink (``rtsp://``,
``http://``) is a subclass here or in its own module plus one ``register_sink`` line there.

Template method: :meth:`Sink.render` holds the guards (lazy open at the first frame's size,
frame counting); subclasses write ``open_impl`` / ``render_impl`` / ``close_impl``.  File sinks
are checked: a failed write is one line naming the file.  A video is written under a temporary name
and renamed into place on close (never half a video); a ``.jsonl`` is a log written line by line to
the final file (``tail -f`` follows a live run).
"""
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from .._files import is_utf8_path, temp_sibling
from .._lazy import require
from ..errors import BadInput, RunFailed

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
    """One JSON object a frame: index, source, label, score, latency_ms (and task fields).

    A log, not an artifact written once at the end: each line goes to the final file as it is
    made (``tail -f out.jsonl`` follows a live run), whole lines only.  Past ``rotate_bytes`` the
    file is renamed ``out.jsonl.N`` (the next free N, never replacing one) and a new one begun.
    A failed write (full disk, ``ulimit -f``) ends the run in one line naming the file, with the
    lines written before it intact.  The file is opened at the first result, replacing what was
    there without following a symlink.
    """

    scheme = "jsonl"
    needs_image = False
    ROTATE_BYTES = 256 << 20

    def __init__(self, uri: str, fps: float = 30.0, path: "Optional[Path]" = None, rotate_bytes: "Optional[int]" = None) -> None:
        super().__init__(uri, fps)
        self.path = Path(path) if path is not None else _file_path(uri)
        self.rotate_bytes = int(rotate_bytes or self.ROTATE_BYTES)
        self.rotated: "List[str]" = []
        self._fd = -1
        self._size = 0

    def open_impl(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(self.path)
        fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            os.replace(str(tmp), str(self.path))  # the entry is replaced, never a link's target written
        except BaseException:
            os.close(fd)
            _unlink(tmp)
            raise
        self._fd, self._size = fd, 0

    def render_impl(self, frame: Any, result: Any, fps: "Optional[float]") -> None:
        line = (json.dumps(result.to_json(), separators=(",", ":")) + "\n").encode("utf-8")
        if self._size and self._size + len(line) > self.rotate_bytes:
            self._rotate()
        self._write(line)

    def _write(self, data: bytes) -> None:
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError as exc:
            if done:  # never leave half a line: cut back to the last whole one
                try:
                    os.ftruncate(self._fd, self._size)
                except OSError:
                    pass
            raise write_failed(self.path, exc, "{} lines written before".format(self.frames))
        self._size += done

    def _rotate(self) -> None:
        self._finish()
        n = 1
        while os.path.lexists("{}.{}".format(self.path, n)):
            n += 1
        os.replace(str(self.path), "{}.{}".format(self.path, n))
        self.rotated.append("{}.{}".format(self.path, n))
        self.open_impl()

    def _finish(self) -> None:
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            raise write_failed(self.path, exc, "")
        finally:
            os.close(fd)

    def close_impl(self) -> None:
        self._finish()

    def abort(self) -> None:
        """An error ended the run: the lines so far stay (a log), the file is closed."""
        self._opened = False
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def write_failed(path: Path, exc: OSError, detail: str) -> "RunFailed":
    """One line for a sink that could not write: the file and the system's reason."""
    return RunFailed("--sink {}: cannot write ({}){}".format(path, exc.strerror or exc, "; " + detail if detail else ""))


def _unlink(path: "os.PathLike[str]") -> None:
    try:
        os.unlink(str(path))
    except OSError:
        pass


class VideoSink(Sink):
    """Annotated video (overlay: label, score, FPS / boxes / mask).  ``.mp4`` (mp4v) or ``.avi`` (MJPG).

    Written under a temporary name and renamed into place on close, after the file was read
    back: OpenCV's writer reports no write errors, so a full disk or ``ulimit -f`` showed only
    as a truncated video.  Now the written frame count and the last frame must read back, else
    one line names the file and nothing is published."""

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
            _unlink(self._tmp)
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
        try:
            self._w.release()
            self._check_written()
            os.replace(str(self._tmp), str(self.path))
        except BaseException:
            _unlink(self._tmp)
            raise

    def _check_written(self) -> None:
        """The frames written must read back (frame count, and the last frame decodes)."""
        cv2 = require("cv2")
        cap = cv2.VideoCapture(str(self._tmp))
        try:
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
            ok = count == self.frames
            if ok and self.frames:
                cap.set(cv2.CAP_PROP_POS_FRAMES, self.frames - 1)
                ok = cap.read()[0]
        finally:
            cap.release()
        if not ok:
            try:
                size = os.stat(str(self._tmp)).st_size
            except OSError:
                size = 0
            raise RunFailed("--sink {}: the video could not be written whole ({} of {} frames read back, {} bytes on disk: "
                            "disk full or a file size limit?); nothing published".format(self.path, count, self.frames, size))

    def abort(self) -> None:
        """Close without publishing: the temporary file goes (also after a close that failed half-way)."""
        self._opened = False
        if self._w is not None:
            try:
                self._w.release()
            except Exception:
                pass
        _unlink(self._tmp)


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
