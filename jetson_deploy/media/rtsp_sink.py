"""``rtsp://@:8554/NAME``: an RTSP server inside ``run`` (GStreamer's RTSP server via PyGObject).

URI grammar (as jetson-utils' ``videoOutput``)::

    rtsp://[HOST][:PORT]/NAME[?bitrate=KBPS&encoder=ELEMENT]

``HOST`` ``@`` or empty listens on every interface (jetson-inference's meaning: the point is to
watch from a laptop); ``127.0.0.1`` keeps it on this machine.  ``PORT`` defaults to 8554.
Clients open ``rtsp://<this machine>:PORT/NAME``.  The stream is not authenticated.

H.264 from ``nvv4l2h264enc`` (the Jetson's hardware encoder) when present, else ``x264enc``
(tune=zerolatency) or ``openh264enc``; ``?encoder=`` forces one.  One shared media serves every
client.  The frame loop only drops the frame into a latest-wins slot; a feeder thread draws the
overlay and pushes it into ``appsrc``, dropping (and counting) frames while appsrc reports
``enough-data``, so a slow client or encoder never slows the pipeline.  Streams are keyed by
:func:`~.live.stream_key`: source 0 is ``/NAME``, source K (multi-source runs) ``/NAME/K``.
"""
import logging
import re
import threading
import time
from typing import Any, Dict, Optional
from urllib.parse import parse_qs, urlsplit

from ..errors import BadInput
from .live import LatestSlot, LiveFigures, check_port, overlay_copy, split_host_port, stream_key
from .sinks import Sink

log = logging.getLogger(__name__)

INSTALL = ("rtsp:// needs GStreamer's RTSP server and PyGObject ({}): on a Jetson (JetPack 4/5/6) "
           "sudo apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good; "
           "on Debian/Ubuntu also gstreamer1.0-plugins-ugly (x264enc); in a virtualenv "
           "pip install 'jetson-deploy[stream]' (needs libgirepository1.0-dev libcairo2-dev pkg-config gcc)")
ENCODERS = ("nvv4l2h264enc", "x264enc", "openh264enc")
#: H.264 bitrates the encoders take, kbit/s (x264enc's property is kbit/s, the others' bit/s)
MIN_KBPS, MAX_KBPS = 16, 500000


def load_gst() -> "tuple":
    """(Gst, GstRtspServer, GLib), initialised; BadInput with what to install when missing."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as exc:
        raise BadInput(INSTALL.format(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    Gst.init(None)
    return Gst, GstRtspServer, GLib


def encoder_chain(Gst: Any, name: str, fps: int, kbps: int) -> str:
    """The launch text from raw BGR to H.264 for one encoder element."""
    if name == "nvv4l2h264enc":
        return ("videoconvert ! video/x-raw,format=I420 ! nvvidconv ! video/x-raw(memory:NVMM),format=I420 ! "
                "nvv4l2h264enc bitrate={} insert-sps-pps=true idrinterval={} ! h264parse".format(kbps * 1000, fps))
    if name == "x264enc":
        return ("videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast "
                "bitrate={} key-int-max={} ! video/x-h264,profile=baseline".format(kbps, fps))
    if name == "openh264enc":
        return "videoconvert ! video/x-raw,format=I420 ! openh264enc bitrate={} ! h264parse".format(kbps * 1000)
    return "videoconvert ! {} ! h264parse".format(name)


class _Stream:
    """One mount point: its factory, the live appsrc of the shared media, and the feed slot."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.slot = LatestSlot()
        self.appsrc: Any = None
        self.full = False
        self.pushed = 0
        self.dropped = 0
        self.t0 = 0.0
        self.size = (0, 0)


class RTSPSink(Sink):
    scheme = "rtsp"
    example = "rtsp://@:8554/NAME"

    def __init__(self, uri: str, fps: float = 30.0) -> None:
        super().__init__(uri, fps)
        parts = urlsplit(uri)
        q = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(q) - {"bitrate", "encoder"})
        if unknown:
            raise BadInput("sink {}: unknown option {!r} (rtsp:// takes ?bitrate= and ?encoder=)".format(uri, unknown[0]))
        try:
            self.host, self.port = split_host_port(parts.netloc, "0.0.0.0", 8554)
            self.kbps = int(q.get("bitrate", ["4000"])[0])
        except ValueError:
            raise BadInput("sink {}: use {}".format(uri, self.example))
        check_port(self.port, uri)
        if not MIN_KBPS <= self.kbps <= MAX_KBPS:
            raise BadInput("sink {}: bitrate={} kbit/s is out of range ({} to {})".format(uri, self.kbps, MIN_KBPS, MAX_KBPS))
        self.path = "/" + parts.path.strip("/") if parts.path.strip("/") else "/stream"
        self.encoder = q.get("encoder", [""])[0]
        if self.encoder and not re.match(r"^[a-z0-9_]+\Z", self.encoder):
            raise BadInput("sink {}: encoder {!r} is not a GStreamer element name (e.g. {})".format(uri, self.encoder, ", ".join(ENCODERS)))
        self.figures = LiveFigures()
        self.streams: "Dict[int, _Stream]" = {}
        self._stop = threading.Event()
        self._threads: "list" = []
        self._gst: Any = None
        self._server: Any = None
        self._loop: Any = None

    def open_impl(self) -> None:
        Gst, GstRtspServer, GLib = self._gst = load_gst()
        self.encoder = self.encoder or next((e for e in ENCODERS if Gst.ElementFactory.find(e)), "")
        if not self.encoder or not Gst.ElementFactory.find(self.encoder):
            raise BadInput("rtsp://: no H.264 encoder ({}); install gstreamer1.0-plugins-ugly (x264enc) "
                           "or gstreamer1.0-plugins-bad (openh264enc)".format(self.encoder or "/".join(ENCODERS)))
        self._server = GstRtspServer.RTSPServer()
        self._server.set_address(self.host)
        self._server.set_service(str(self.port))
        if self._server.attach(None) == 0:
            raise BadInput("sink {}: cannot listen on {}:{}; pick another port".format(self.uri, self.host, self.port))
        self._loop = GLib.MainLoop()
        self._threads.append(threading.Thread(target=self._loop.run, name="rtsp-sink-glib", daemon=True))
        self._threads[-1].start()
        log.info("rtsp stream: rtsp://%s:%d%s (%s)", "<this machine>" if self.host == "0.0.0.0" else self.host,
                 self.port, self.path, self.encoder)

    def _mount(self, key: int, w: int, h: int) -> "_Stream":
        """Add the mount point for stream ``key`` at this frame size, and its feeder thread."""
        Gst, GstRtspServer, _ = self._gst
        st = _Stream(self.path if key == 0 else "{}/{}".format(self.path, key))
        st.size = (w, h)
        fps = max(1, int(round(self.fps or 30)))
        launch = ("( appsrc name=src is-live=true format=time do-timestamp=false "
                  "caps=video/x-raw,format=BGR,width={},height={},framerate={}/1 ! {} ! rtph264pay name=pay0 pt=96 "
                  "config-interval=1 )").format(w, h, fps, encoder_chain(Gst, self.encoder, fps, self.kbps))
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        factory.connect("media-configure", self._configure, st)
        self._server.get_mount_points().add_factory(st.path, factory)
        t = threading.Thread(target=self._feed, args=(st,), name="rtsp-sink-feed", daemon=True)
        self._threads.append(t)
        t.start()
        self.streams[key] = st
        return st

    def _configure(self, factory: Any, media: Any, st: "_Stream") -> None:
        """A (shared) media was built for the first client: take its appsrc."""
        src = media.get_element().get_child_by_name("src")
        src.set_property("max-bytes", st.size[0] * st.size[1] * 3 * 2)
        src.connect("enough-data", lambda *_: setattr(st, "full", True))
        src.connect("need-data", lambda *_: setattr(st, "full", False))
        media.connect("unprepared", lambda *_: setattr(st, "appsrc", None))
        st.full, st.t0, st.appsrc = False, time.monotonic(), src

    def render_impl(self, frame: Any, result: Any, fps: "Optional[float]") -> None:
        self.figures.add(result, fps)
        img = getattr(frame, "image", None)
        if img is None:
            return
        key = stream_key(frame)
        st = self.streams.get(key) or self._mount(key, img.shape[1], img.shape[0])
        if st.appsrc is not None:  # nobody watching: nothing to copy
            st.slot.put((img.copy(), result, fps))

    def _feed(self, st: "_Stream") -> None:
        Gst = self._gst[0]
        cv2 = None
        while not self._stop.is_set():
            item = st.slot.take(0.5)
            src = st.appsrc
            if item is None or src is None:
                continue
            if st.full:
                st.dropped += 1
                continue
            img, result, fps = item
            if (img.shape[1], img.shape[0]) != st.size:
                if cv2 is None:
                    from .._lazy import require

                    cv2 = require("cv2")
                img = cv2.resize(img, st.size)
            data = overlay_copy(img, result, fps).tobytes()
            buf = Gst.Buffer.new_wrapped(data)
            buf.pts = int((time.monotonic() - st.t0) * Gst.SECOND)
            buf.duration = int(Gst.SECOND / max(1.0, float(self.fps or 30)))
            src.emit("push-buffer", buf)
            st.pushed += 1

    def close_impl(self) -> None:
        self._stop.set()
        for st in self.streams.values():
            st.slot.close()
            if st.appsrc is not None:
                st.appsrc.emit("end-of-stream")
        if self._loop is not None:
            self._loop.quit()
        for t in self._threads:
            t.join(timeout=2.0)
        log.info("rtsp stream: %s", ", ".join("{} pushed {} dropped {}".format(
            st.path, st.pushed, st.dropped + st.slot.dropped) for st in self.streams.values()) or "no frames")

    def stats(self) -> "Dict[str, Any]":
        d = self.figures.snapshot()
        d["streams"] = {st.path: {"pushed": st.pushed, "dropped": st.dropped + st.slot.dropped}
                        for st in self.streams.values()}
        return d

    def describe(self) -> "Dict[str, Any]":
        d = super().describe()
        d["streams"] = self.stats()["streams"]
        return d
