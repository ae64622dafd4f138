"""``http://HOST:PORT/``: a browser live view (MJPEG + live figures) served by the standard library.

URI grammar::

    http://[HOST][:PORT][/][?token=TOKEN&quality=Q]

``HOST`` empty or ``@`` binds 127.0.0.1 (the default; unlike ``rtsp://@``, which means every
interface as in jetson-utils).  A loopback address needs no token unless the URI gives one.  Any
other address (``0.0.0.0`` for every interface) requires a token: ``?token=`` in the URI (16
characters or more), ``$JETSON_DEPLOY_HTTP_TOKEN``, or a fresh ``secrets.token_urlsafe`` one
whose URL is logged once (a given token is redacted wherever the URI is shown).  Requests without
it (``?token=`` or the cookie the page sets) get 403; without a token, so do requests whose
``Host`` is not this loopback address or ``localhost`` (DNS rebinding).  ``PORT`` defaults to 8080;
``Q`` is the JPEG quality (1 to 100, default 80).

Routes: ``/`` the page, ``/stream.mjpg`` (``multipart/x-mixed-replace``), ``/frame.jpg`` (the
latest frame), ``/stats`` (JSON figures).  ``?source=K`` picks a stream once several sources
feed one run (see :func:`.live.stream_key`).

Nothing here blocks the frame loop: :meth:`HTTPSink.render_impl` drops the frame into a
latest-wins slot; one encoder thread draws the overlay and JPEG-encodes the newest frame (older
ones are dropped and counted); each client thread sends the newest JPEG it has not sent yet, so a
stalled client only stalls its own thread.  Without viewers nothing is encoded.
"""
import hmac
import json
import logging
import os
import re
import secrets
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any, Dict, Iterable, Optional
from urllib.parse import parse_qs, urlsplit

from .._lazy import require
from ..errors import BadInput
from .live import LatestSlot, LiveFigures, check_port, is_loopback, overlay_copy, split_host_port, stream_key
from .sinks import Sink

log = logging.getLogger(__name__)

COOKIE = "jd_token"
MAX_CLIENTS = 16
MIN_TOKEN = 16
#: the token from the environment (the service's root-only environment file), kept off the command line
TOKEN_ENV = "JETSON_DEPLOY_HTTP_TOKEN"


def redact(uri: str) -> str:
    """URI with its token's value replaced: what summaries, messages and logs show."""
    return re.sub(r"(token=)[^&#]*", r"\1<redacted>", uri)
BOUNDARY = "jdframe"


class _Stream:
    """One source's newest JPEG; clients wait on ``cond`` for the next one."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jpeg = b""
        self.seq = 0
        self.size = (0, 0)

    def publish(self, jpeg: bytes) -> None:
        with self.cond:
            self.jpeg = jpeg
            self.seq += 1
            self.cond.notify_all()

    def next_after(self, seq: int, timeout: float) -> "tuple":
        with self.cond:
            if self.seq == seq:
                self.cond.wait(timeout)
            return self.seq, self.jpeg


class _Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sink: "HTTPSink"


class _Server6(_Server):
    address_family = socket.AF_INET6  # http://[::1]:PORT/


class HTTPSink(Sink):
    scheme = "http"
    example = "http://127.0.0.1:8080/"

    def __init__(self, uri: str, fps: float = 30.0) -> None:
        super().__init__(uri, fps)
        parts = urlsplit(uri)
        q = parse_qs(parts.query, keep_blank_values=True)
        self.uri = redact(uri)  # what summaries (--json) and messages show
        unknown = sorted(set(q) - {"token", "quality"})
        if unknown:
            raise BadInput("sink {}: unknown option {!r} (http:// takes ?token= and ?quality=)".format(self.uri, unknown[0]))
        try:
            self.host, self.port = split_host_port(parts.netloc, "127.0.0.1", 8080)
            self.quality = int(q.get("quality", ["80"])[0])
        except ValueError:
            raise BadInput("sink {}: use http://[HOST][:PORT]/ (e.g. {})".format(self.uri, self.example))
        check_port(self.port, self.uri, allow_zero=True)
        if not 1 <= self.quality <= 100:
            raise BadInput("sink {}: quality={} is not a JPEG quality (1 to 100)".format(self.uri, self.quality))
        self.loopback = is_loopback(self.host)
        # beyond loopback a token is mandatory; ?token= (or $JETSON_DEPLOY_HTTP_TOKEN, which keeps it off the
        # command line: the service's environment file) asks for one on loopback too
        given = q.get("token", [""])[0] or os.environ.get(TOKEN_ENV, "").strip()
        if given and len(given) < MIN_TOKEN:
            raise BadInput("sink {}: the token is {} characters; use {} or more (or leave it out off loopback and one "
                           "is made)".format(self.uri, len(given), MIN_TOKEN))
        self.token: "Optional[str]" = given or None
        self.token_made = False
        if not self.loopback and not self.token:
            self.token, self.token_made = secrets.token_urlsafe(16), True
        self.figures = LiveFigures()
        self.streams: "Dict[int, _Stream]" = {}
        self.slot = LatestSlot()
        self.clients = 0
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: "Optional[_Server]" = None
        self._threads: "list" = []
        #: the stream keys (source indexes) this sink will get; None: any (set by the run, see expect_streams)
        self.expected: "Optional[set]" = None

    def expect_streams(self, keys: "Iterable[int]") -> None:
        """The sources feeding this sink: any other ``?source=`` is 404 at once."""
        self.expected = set(int(k) for k in keys)

    # -- Sink template -------------------------------------------------------------------------
    def open_impl(self) -> None:
        require("cv2", "http:// live view (JPEG encoding)")
        try:
            srv = (_Server6 if ":" in self.host else _Server)((self.host, self.port), _Handler)
        except (OSError, OverflowError) as exc:
            raise BadInput("sink {}: cannot listen on {}:{} ({}); pick another port".format(
                self.uri, self.host, self.port, getattr(exc, "strerror", None) or exc))
        srv.sink = self
        self._server = srv
        self.port = srv.server_address[1]
        self._threads = [threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                          name="http-sink-serve", daemon=True),
                         threading.Thread(target=self._encode_loop, name="http-sink-encode", daemon=True)]
        for t in self._threads:
            t.start()
        log.info("live view: %s", self.url if self.token_made else redact(self.url))
        if not self.loopback:
            log.info("live view: bound to %s; the token is required (keep the URL private)", self.host)

    def render_impl(self, frame: Any, result: Any, fps: "Optional[float]") -> None:
        self.figures.add(result, fps)
        key = stream_key(frame)
        if key not in self.streams:
            self.streams[key] = _Stream()
        if self.clients > 0 and getattr(frame, "image", None) is not None:
            self.slot.put((key, frame.image.copy(), result, fps), key=key)

    def close_impl(self) -> None:
        self._stop.set()
        self.slot.close()
        for st in list(self.streams.values()):
            with st.cond:
                st.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for t in self._threads:
            t.join(timeout=2.0)

    def describe(self) -> "Dict[str, Any]":
        d = super().describe()
        d.update(url=self.url, encoder_dropped=self.slot.dropped, jpeg_sent=self.sent)
        return d

    @property
    def url(self) -> str:
        host = "[{}]".format(self.host) if ":" in self.host else self.host
        return "http://{}:{}/{}".format(host, self.port, "?token=" + self.token if self.token else "")

    # -- threads -------------------------------------------------------------------------------
    def _encode_loop(self) -> None:
        cv2 = require("cv2")
        params = [int(cv2.IMWRITE_JPEG_QUALITY), self.quality]
        while not self._stop.is_set():
            item = self.slot.take(0.5)
            if item is None:
                continue
            key, img, result, fps = item
            try:
                ok, buf = cv2.imencode(".jpg", overlay_copy(img, result, fps), params)
            except Exception as exc:  # a bad frame must not end the view
                log.debug("live view: encode failed: %s", exc)
                continue
            if ok:
                st = self.streams[key]
                st.size = (img.shape[1], img.shape[0])
                st.publish(buf.tobytes())

    def stats(self) -> "Dict[str, Any]":
        d = self.figures.snapshot()
        d.update(dropped_stream=self.slot.dropped, clients=self.clients, jpeg_sent=self.sent,
                 streams=sorted(self.streams))
        return d

    def host_allowed(self, host_header: "Optional[str]") -> bool:
        """Without a token, only this loopback address or ``localhost`` (with the port) may name the
        server: a page whose name was rebound to 127.0.0.1 (DNS rebinding) sends its own name."""
        if self.token is not None or host_header is None:
            return True
        try:
            host, port = split_host_port(host_header.strip().lower(), "", 80)
        except ValueError:
            return False
        return port == self.port and (host == "localhost" or host == self.host.lower())

    def stream_known(self, key: int) -> bool:
        return key in self.expected if self.expected is not None else key in self.streams

    def authorized(self, query: "Dict[str, Any]", cookie: str) -> bool:
        if self.token is None:
            return True
        given = query.get("token", [""])[0] or _cookie_value(cookie, COOKIE)
        return hmac.compare_digest(given.encode(), self.token.encode())


def _cookie_value(header: str, name: str) -> str:
    for part in (header or "").split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return ""


class _Handler(BaseHTTPRequestHandler):
    server_version = "jetson-deploy"
    timeout = 15  # a client that stops reading is dropped after this many seconds of blocked writes

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("live view %s: " + fmt, self.client_address[0], *args)

    def do_GET(self) -> None:
        sink = self.server.sink
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if not sink.host_allowed(self.headers.get("Host")):
            self._send(403, "text/plain", b"403: this live view answers to its own address only (Host header)\n")
            return
        if not sink.authorized(query, self.headers.get("Cookie", "")):
            self._send(403, "text/plain", b"403: this live view needs ?token= (printed with its URL)\n")
            return
        route = parts.path.rstrip("/") or "/"
        try:
            key = int(query.get("source", ["0"])[0])
        except ValueError:
            key = -1
        if route in ("/frame.jpg", "/stream.mjpg") and not sink.stream_known(key):
            self._send(404, "text/plain", "404: no source {} here (streams: {})\n".format(
                query.get("source", ["0"])[0], sorted(sink.expected if sink.expected is not None else sink.streams)).encode())
            return
        if route == "/":
            extra = {}
            if sink.token and query.get("token"):
                extra["Set-Cookie"] = "{}={}; HttpOnly; SameSite=Strict; Path=/".format(COOKIE, sink.token)
            self._send(200, "text/html; charset=utf-8", PAGE.replace("{SOURCE}", str(key)).encode(), extra)
        elif route == "/stats":
            self._send(200, "application/json", json.dumps(sink.stats()).encode())
        elif route == "/frame.jpg":
            self._frame(sink, key)
        elif route == "/stream.mjpg":
            self._mjpeg(sink, key)
        else:
            self._send(404, "text/plain", b"404\n")

    def _send(self, code: int, ctype: str, body: bytes, extra: "Optional[Dict[str, str]]" = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _enter(self, sink: "HTTPSink") -> bool:
        with sink._lock:
            if sink.clients >= MAX_CLIENTS:
                return False
            sink.clients += 1
            return True

    def _leave(self, sink: "HTTPSink") -> None:
        with sink._lock:
            sink.clients -= 1

    def _client_gone(self) -> bool:
        """The client hung up (readable with nothing to read), noticed while waiting to write."""
        try:
            ready, _, _ = select.select([self.connection], [], [], 0)
            return bool(ready) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _frame(self, sink: "HTTPSink", key: int) -> None:
        if not self._enter(sink):
            self._send(503, "text/plain", b"503: too many viewers\n")
            return
        try:
            st = sink.streams.get(key)
            seq, jpeg = (st.next_after(0, 2.0) if st is not None else (0, b""))
            if not jpeg:
                self._send(503, "text/plain", b"503: no frame yet\n")
            else:
                self._send(200, "image/jpeg", jpeg)
        finally:
            self._leave(sink)

    def _mjpeg(self, sink: "HTTPSink", key: int) -> None:
        if not self._enter(sink):
            self._send(503, "text/plain", b"503: too many viewers\n")
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=" + BOUNDARY)
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seq = 0
            while not sink._stop.is_set():
                st = sink.streams.get(key)
                if st is None:  # a known source whose first frame has not come yet
                    if self._client_gone():
                        return
                    time.sleep(0.1)
                    continue
                new, jpeg = st.next_after(seq, 1.0)
                if new == seq or not jpeg:
                    if self._client_gone():
                        return
                    continue
                seq = new
                self.wfile.write("--{}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n".format(
                    BOUNDARY, len(jpeg)).encode() + jpeg + b"\r\n")
                sink.sent += 1
        except (OSError, socket.timeout):
            pass  # the client went away or stopped reading: only this thread noticed
        finally:
            self._leave(sink)


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>jetson-deploy live</title>
<style>
body{margin:0;background:#111;color:#eee;font:15px/1.4 sans-serif;display:flex;align-items:flex-start;gap:16px;padding:16px}
#view{background:#000;max-width:75vw}
#figs{min-width:220px;padding:12px;border:4px solid #555;background:#222}
#figs.live{border-color:#00c853}
dt{color:#aaa}dd{margin:0 0 8px 0;font-size:20px}
</style></head><body>
<img id="view" alt="live stream">
<dl id="figs"><dt>FPS</dt><dd id="fps">-</dd><dt>latency p50 / p95 (ms)</dt><dd id="lat">-</dd>
<dt>dropped (source / stream)</dt><dd id="drop">-</dd><dt>frames</dt><dd id="frames">-</dd>
<dt>last labels</dt><dd id="labels">-</dd></dl>
<script>
var src = "{SOURCE}";
function f(x){return x === null || x === undefined ? "-" : x;}
function poll(){
  fetch("stats", {credentials: "same-origin", cache: "no-store"}).then(function(r){return r.json();}).then(function(s){
    document.getElementById("fps").textContent = f(s.fps);
    document.getElementById("lat").textContent = f(s.latency_ms_p50) + " / " + f(s.latency_ms_p95);
    document.getElementById("drop").textContent = s.dropped_source + " / " + s.dropped_stream;
    document.getElementById("frames").textContent = s.frames;
    document.getElementById("labels").textContent = s.labels.join(" | ");
    document.getElementById("figs").className = "live";
  }).catch(function(){ document.getElementById("figs").className = ""; });
}
window.addEventListener("load", function(){
  document.getElementById("view").src = "stream.mjpg?source=" + src;
  poll(); setInterval(poll, 1000);
});
</script></body></html>
"""
