"""What the network sinks share: a latest-wins frame slot, live figures, ``HOST:PORT`` parsing.

The frame loop calls :meth:`LatestSlot.put` and never waits: a frame the encoder has not taken
yet is replaced (and counted as dropped), so a slow encoder or a slow client costs frames of the
stream, never frames of the pipeline.
"""
import ipaddress
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Dict, List, Optional, Tuple

import numpy as np



def stream_key(frame: Any) -> int:
    """Which stream a frame belongs to: 0 until batched multi-source runs tag frames with their
    source index (``frame.stream``); the network sinks keep one stream per key already."""
    return int(getattr(frame, "stream", 0) or 0)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost (a name resolving elsewhere is not trusted)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port(port: int, uri: str, allow_zero: bool = False) -> int:
    """PORT in 1..65535 (0 too where the system may pick one); BadInput naming the sink otherwise
    (99999 listened on 34463: the socket layer keeps the low 16 bits)."""
    from ..errors import BadInput

    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise BadInput("sink {}: port {} is not a TCP port ({} to 65535)".format(uri, port, low))
    return port


def split_host_port(netloc: str, default_host: str, default_port: int) -> "Tuple[str, int]":
    """``@:8080`` / ``:8080`` / ``host:8080`` / ``[::1]:8080`` -> (host, port); ``@`` or empty is ``default_host``."""
    host, port = netloc, ""
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif ":" in netloc:
        host, _, port = netloc.rpartition(":")
    if host in ("", "@"):
        host = default_host
    return host, int(port) if port else default_port


class LatestSlot:
    """Hand-over from the frame loop to an encoder thread: the latest item per stream key wins.

    Keyed so that several sources feeding one sink each keep their newest frame: one shared
    slot let the faster (or later) source starve the others' streams.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: "OrderedDict[Any, Any]" = OrderedDict()
        self.seq = 0
        self.dropped = 0
        self.closed = False

    def put(self, item: Any, key: Any = 0) -> None:
        with self._cond:
            if key in self._items:  # an older frame of this stream was never encoded
                self.dropped += 1
                del self._items[key]  # to the back: streams take turns
            self._items[key] = item
            self.seq += 1
            self._cond.notify()

    def take(self, timeout: float = 0.5) -> Any:
        """The newest item of the stream waiting longest (None on timeout or once closed)."""
        with self._cond:
            if not self._items and not self.closed:
                self._cond.wait(timeout)
            if not self._items:
                return None
            return self._items.popitem(last=False)[1]

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def overlay_copy(image: "np.ndarray", result: Any, fps: "Optional[float]") -> "np.ndarray":
    """A BGR 3-channel annotated copy (the frame's buffer goes back to its pool after the sinks)."""
    from .overlay import draw

    img = image
    if img.ndim == 2 or img.shape[2] == 1:
        img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
    else:
        img = np.ascontiguousarray(img[:, :, :3]).copy()
    return draw(img, result, fps)


class LiveFigures:
    """FPS, latency p50/p95, drops and the last labels, from what :meth:`Sink.render` receives.

    Source drops are inferred from gaps in ``result.index`` (sources number every frame they
    produce, so a frame the capture thread dropped leaves a hole); the pipeline's own counter
    is not passed to sinks.
    """

    def __init__(self, window: int = 300, labels: int = 5) -> None:
        self._lock = threading.Lock()
        self._lat: "deque" = deque(maxlen=window)
        self._labels: "deque" = deque(maxlen=labels)
        self.frames = 0
        self.fps: "Optional[float]" = None
        self._first_index: "Optional[int]" = None
        self._last_index = -1
        self.t0 = time.time()

    def add(self, result: Any, fps: "Optional[float]") -> None:
        lat = getattr(result, "latency_ms", None)
        with self._lock:
            self.frames += 1
            self.fps = fps
            if lat is not None:
                self._lat.append(float(lat))
            idx = getattr(result, "index", None)
            if isinstance(idx, int) and idx >= 0:
                if self._first_index is None:
                    self._first_index = idx
                self._last_index = max(self._last_index, idx)
            self._labels.append(_label_text(result))

    def snapshot(self) -> "Dict[str, Any]":
        with self._lock:
            lat = sorted(self._lat)
            gaps = 0
            if self._first_index is not None:
                gaps = max(0, self._last_index - self._first_index + 1 - self.frames)
            return {
                "frames": self.frames,
                "fps": round(self.fps, 2) if self.fps is not None else None,
                "latency_ms_p50": round(_pct(lat, 50), 3) if lat else None,
                "latency_ms_p95": round(_pct(lat, 95), 3) if lat else None,
                "dropped_source": gaps,
                "labels": list(self._labels)[::-1],
                "uptime_s": round(time.time() - self.t0, 1),
            }


def _pct(sorted_vals: "List[float]", q: float) -> float:
    k = (len(sorted_vals) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def _label_text(result: Any) -> str:
    if getattr(result, "task", "classify") == "detect":
        dets = getattr(result, "detections", None) or []
        return ", ".join("{} {:.2f}".format(d.label, d.score) for d in dets[:5]) or "(none)"
    label = getattr(result, "label", None)
    if label is None:
        return "(none)"
    return "{} {:.2f}".format(label, getattr(result, "score", None) or 0.0)
