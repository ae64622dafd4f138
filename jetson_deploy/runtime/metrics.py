"""Throughput and latency bookkeeping for the frame loop (cheap enough to run every frame)."""
import logging
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)


def percentiles(samples: "Sequence[float]", qs: "Sequence[float]" = (50, 95, 99)) -> "Dict[str, float]":
    if len(samples) == 0:
        return {"p{}".format(int(q)): 0.0 for q in qs}
    arr = np.asarray(samples, dtype=np.float64)
    vals = np.percentile(arr, list(qs))
    return {"p{}".format(int(q)): round(float(v), 4) for q, v in zip(qs, vals)}


class Metrics:
    """Frames, FPS, latency percentiles, drops; logs a line (INFO) every ``interval`` seconds (0: never).

    Latency samples are kept in a bounded reservoir (``max_samples``, uniform over the run), so a
    camera running for days keeps constant memory.
    """

    def __init__(self, interval: float = 5.0, max_samples: int = 200000, seed: int = 0) -> None:
        self.interval = interval
        self.max_samples = max_samples
        self.frames = 0
        self.dropped = 0
        self.samples: "List[float]" = []
        self._rng = np.random.RandomState(seed)
        self.t_start = time.perf_counter()
        self.t_first: "Optional[float]" = None
        self.t_last = self.t_start
        self._win_t = self.t_start
        self._win_n = 0
        self.window_fps = 0.0
        self.reports = 0
        #: where live drop counts come from (the capture thread) for the periodic lines
        self.dropped_fn: "Optional[Callable[[], int]]" = None

    def start(self) -> None:
        self.t_start = self._win_t = self.t_last = time.perf_counter()

    def add(self, latency_ms: float, now: "Optional[float]" = None) -> None:
        now = time.perf_counter() if now is None else now
        if self.t_first is None:
            self.t_first = now
        self.frames += 1
        self.t_last = now
        n = self.frames
        if len(self.samples) < self.max_samples:
            self.samples.append(latency_ms)
        else:
            j = self._rng.randint(0, n)
            if j < self.max_samples:
                self.samples[j] = latency_ms
        self._win_n += 1
        dt = now - self._win_t
        if dt >= self.interval and self.interval > 0:
            self.window_fps = self._win_n / dt
            self._win_t, self._win_n = now, 0
            self.report()

    def live_fps(self) -> float:
        """FPS over the current window (for overlays)."""
        if self.window_fps:
            return self.window_fps
        dt = time.perf_counter() - self.t_start
        return self.frames / dt if dt > 0 else 0.0

    def report(self) -> None:
        self.reports += 1
        if self.dropped_fn is not None:
            self.dropped = int(self.dropped_fn())
        if not log.isEnabledFor(logging.INFO):
            return
        p = percentiles(self.samples[-1000:])
        log.info("frames %d | %.1f FPS | latency p50 %.2f ms p95 %.2f ms p99 %.2f ms | dropped %d",
                 self.frames, self.window_fps, p["p50"], p["p95"], p["p99"], self.dropped)

    @property
    def elapsed(self) -> float:
        return max(self.t_last - self.t_start, 1e-9)

    def fps(self) -> float:
        return self.frames / self.elapsed if self.frames else 0.0

    def summary(self) -> "Dict[str, Any]":
        return {"frames": self.frames, "fps": round(self.fps(), 3), "seconds": round(self.elapsed, 4),
                "latency_ms": percentiles(self.samples), "dropped": self.dropped}
