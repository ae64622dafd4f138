"""OpenCV-backed sources: video files, V4L2 and CSI cameras, RTSP streams, GStreamer pipelines."""
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import numpy as np

from .._files import is_utf8_path
from ..errors import BadInput
from .sources import Frame, Source, _cv2, query_options, uri_path

log = logging.getLogger(__name__)


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

    def __init__(self, uri: str, options: "Optional[Dict[str, Any]]" = None) -> None:
        super().__init__(uri, options)
        self.cap: Any = None
        self.read_timeout = float(self.options.get("timeout", self.read_timeout))

    # what to open: (target, api) -- subclasses override
    def target(self) -> "Tuple[Any, Optional[int]]":
        return self.uri, None

    def _open_capture(self) -> Any:
        """Open and return a VideoCapture-like object (tests replace this)."""
        cv2 = _cv2()
        target, api = self.target()
        params: "List[int]" = []
        ms = int(self.read_timeout * 1000)
        for name, val in (("CAP_PROP_OPEN_TIMEOUT_MSEC", ms), ("CAP_PROP_READ_TIMEOUT_MSEC", ms)):
            if hasattr(cv2, name) and self.live:
                params += [getattr(cv2, name), val]
        if api is None:
            api = cv2.CAP_ANY
        if isinstance(target, str) and not is_utf8_path(target):  # OpenCV/FFmpeg crash on such a name
            raise BadInput("--source {!r} is not valid UTF-8: rename the file".format(target))
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

    def _grab(self) -> "Optional[Frame]":
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

    def read_impl(self, timeout: "Optional[float]") -> "Optional[Frame]":
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

    def __init__(self, uri: str, options: "Optional[Dict[str, Any]]" = None, path: "Optional[Path]" = None) -> None:
        super().__init__(uri, options)
        path = self.options.pop("path", None) if path is None else path
        self.path = Path(path if path is not None else uri_path(uri))

    @classmethod
    def options_from_uri(cls, uri: str) -> "Dict[str, Any]":
        return {"path": Path(uri_path(uri))}

    def target(self) -> "Tuple[Any, Optional[int]]":
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

    def __init__(self, uri: str, options: "Optional[Dict[str, Any]]" = None, device: "Optional[str]" = None) -> None:
        super().__init__(uri, options)
        device = self.options.pop("device", None) if device is None else device
        self.device = str(device or "/dev/video0")

    @classmethod
    def options_from_uri(cls, uri: str) -> "Dict[str, Any]":
        """``v4l2:///dev/video2``, ``v4l2://2`` and a bare ``/dev/video2`` all name /dev/video2."""
        if uri.startswith("/dev/video"):
            return {"device": uri}
        parts = urlsplit(uri)
        opts = query_options(parts.query)
        dev = parts.path or "/dev/video0"
        if parts.netloc:
            dev = "/dev/video" + parts.netloc if parts.netloc.isdigit() else "/" + parts.netloc + dev
        opts["device"] = dev
        return opts

    def target(self) -> "Tuple[Any, Optional[int]]":
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

    def __init__(self, uri: str, options: "Optional[Dict[str, Any]]" = None, sensor: "Optional[int]" = None) -> None:
        super().__init__(uri, options)
        sensor = self.options.pop("sensor", 0) if sensor is None else sensor
        self.sensor = int(sensor)
        self.width = self.width or 1280
        self.height = self.height or 720
        self.fps = self.fps or 30.0
        self.flip = int(self.options.get("flip", 0) or 0)

    @classmethod
    def options_from_uri(cls, uri: str) -> "Dict[str, Any]":
        parts = urlsplit(uri)
        opts = query_options(parts.query)
        try:
            opts["sensor"] = int(parts.netloc or (parts.path.strip("/") or 0))
        except ValueError:
            raise BadInput("source {}: csi://N takes a sensor number".format(uri))
        return opts

    def pipeline(self) -> str:
        return csi_pipeline(self.sensor, self.width, self.height, self.fps, self.flip)

    def target(self) -> "Tuple[Any, Optional[int]]":
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

    def __init__(self, uri: str, options: "Optional[Dict[str, Any]]" = None, pipeline: "Optional[str]" = None) -> None:
        super().__init__(uri, options)
        if pipeline is None:
            pipeline = self.options.pop("pipeline", None) or self.options_from_uri(uri)["pipeline"]
        self.pipeline = str(pipeline)
        if "appsink" not in pipeline:
            raise BadInput("gst:// pipeline must end in appsink (e.g. gst://videotestsrc ! videoconvert ! appsink)")
        self.live = str(self.options.get("live", "1")) not in ("0", "false", "no")

    @classmethod
    def options_from_uri(cls, uri: str) -> "Dict[str, Any]":
        # the rest is the pipeline, "?" and all
        return {"pipeline": uri[len("gst://"):] if uri.startswith("gst://") else uri}

    def target(self) -> "Tuple[Any, Optional[int]]":
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

    def __init__(self, uri: str, options: "Optional[Dict[str, Any]]" = None) -> None:
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
        self._sleep: "Callable[[float], None]" = time.sleep

    @classmethod
    def options_from_uri(cls, uri: str) -> "Dict[str, Any]":
        return {}  # the query belongs to the camera's URL; options come as keywords

    def target(self) -> "Tuple[Any, Optional[int]]":
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

    def read_impl(self, timeout: "Optional[float]") -> "Optional[Frame]":
        while True:
            f = self._grab() if self.cap is not None else None
            if f is not None:
                self._fails = 0
                return f
            if not self._reconnect():
                self.end("{}: stream lost, gave up after {} reconnect attempts".format(self.uri, self._fails))
                return None

    def describe(self) -> "Dict[str, Any]":
        d = super().describe()
        d.update(reconnects=self.reconnects, decoder="gstreamer" if self.use_gst else "ffmpeg")
        return d
