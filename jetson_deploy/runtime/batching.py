"""Several sources, one engine: which batch the engine runs, how a batch is formed, how its rows go back.

* :func:`resolve_batch` -- the rows per engine call for N sources: a dynamic-batch engine runs N
  (ONNX Runtime: the actual count of each batch) up to its profile's maximum, a fixed batch B runs
  B (padding rows when fewer are ready); N > rows runs in ceil(N / rows) calls a round.
* :class:`BatchFormer` -- at most one frame per source per batch, sources taken round-robin from
  the one after the last served (a fast source cannot starve a slow one; every row is attributable), waiting at most
  ``batch_timeout`` for the sources not ready yet, woken by the capture threads (no polling).
* :func:`split_rows` -- a batch's outputs as one ``(1, ...)`` dict per real row (padding rows are
  never read), so postprocessing is the single-frame code.
"""
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .metrics import Metrics

#: batch wait when no source says its frame rate (files, unpaced synthetic)
DEFAULT_BATCH_TIMEOUT = 0.03


def engine_batch(engine: Any) -> "Tuple[int, bool, Optional[int]]":
    """(batch, dynamic, dynamic maximum or None) of an activated engine's first input."""
    shape = tuple(engine.inputs[0].shape) if getattr(engine, "inputs", None) else ()
    if not shape:
        return 1, False, None
    first = int(shape[0])
    if first >= 1:
        return first, False, None
    top = None
    prof = getattr(engine, "profile_shapes", None)
    if callable(prof):
        try:
            shapes = prof(engine.inputs[0].name)
            top = int(shapes[2][0]) if shapes else None
        except Exception:  # no profile API (doubles, old bindings): trust the request
            top = None
    return 0, True, top


def resolve_batch(engine: Any, sources: int, bundle: str = "") -> "Tuple[int, bool]":
    """(rows per engine call, dynamic) for ``sources`` frames a round, as DeepStream's nvinfer
    does it: a dynamic-batch engine runs all of them (up to its profile's maximum), a fixed batch B
    runs B rows a call; more sources than rows run in ``ceil(sources / rows)`` calls a round."""
    fixed, dynamic, top = engine_batch(engine)
    if dynamic:
        rows = max(sources, 1) if top is None else max(min(sources, top), 1)
        return rows, True
    return fixed, False


def split_rows(outs: "Dict[str, Any]", rows: int, batch: int) -> "List[Dict[str, Any]]":
    """One dict per real row; an output without a batch axis (leading dim not rows/batch) is shared."""
    per: "List[Dict[str, Any]]" = [dict() for _ in range(rows)]
    for name, v in outs.items():
        a = np.asarray(v)
        batched = a.ndim >= 1 and a.shape[0] in (rows, batch) and a.shape[0] >= rows
        for i in range(rows):
            per[i][name] = a[i:i + 1] if batched else a
    return per


def pad_rows(arrays: "Sequence[np.ndarray]", batch: int) -> "np.ndarray":
    """Stack ``(1, ...)`` rows into ``(batch, ...)``, repeating row 0 into the padding rows: a
    padding row is a real frame of this batch (valid numbers), and its result is discarded."""
    rows = list(arrays) + [arrays[0]] * max(batch - len(arrays), 0)
    return np.concatenate(rows, axis=0)


class SourceState:
    """One source of a multi-source run: its capture thread, metrics and how it ended."""

    def __init__(self, index: int, source: Any, interval: float = 0.0) -> None:
        self.index = index
        self.source = source
        self.cap: Any = None
        self.metrics = Metrics(interval=0.0)
        self.ended = False
        self.end_reason = ""
        self.last_frame = time.monotonic()
        self.submitted = 0

    def end(self, reason: str) -> None:
        if not self.ended:
            self.ended = True
            self.end_reason = reason

    def to_dict(self) -> "Dict[str, Any]":
        m = self.metrics.summary()
        cap = self.cap
        return {"index": self.index, "source": str(self.source.uri), "frames": m["frames"], "fps": m["fps"],
                "seconds": m["seconds"], "latency_ms": m["latency_ms"],
                "dropped": cap.dropped if cap is not None else 0, "captured": cap.captured if cap is not None else 0,
                "end_reason": self.end_reason or (cap.end_reason if cap is not None else "")}


def default_batch_timeout(sources: "Sequence[Any]") -> float:
    """One frame interval of the slowest live source (a paced camera), else 30 ms."""
    rates = [float(s.fps) for s in sources if getattr(s, "live", False) and getattr(s, "fps", 0)]
    return 1.0 / min(rates) if rates else DEFAULT_BATCH_TIMEOUT


class BatchFormer:
    """Forms batches from the sources' capture queues: one frame per source at most, round-robin.

    ``form()`` returns the frames that are ready now; when some but not all active sources have one,
    it waits for the others at most ``timeout`` seconds from the first frame of the batch, woken
    by ``ready`` (set by every capture thread on each frame and at its end).
    """

    def __init__(self, states: "Sequence[SourceState]", ready: "threading.Event", timeout: float) -> None:
        self.states = list(states)
        self.ready = ready
        self.timeout = max(0.0, float(timeout))
        self._next = 0

    def _order(self) -> "List[SourceState]":
        """Every source, starting after the last one served (a batch smaller than the number of
        sources takes the next ones each call: chunks of a round, none served twice before all)."""
        n = len(self.states)
        start = self._next % n
        return [self.states[(start + k) % n] for k in range(n)]

    def form(self, max_rows: int, idle_wait: float) -> "List[Tuple[SourceState, Any]]":
        """Up to ``max_rows`` (state, frame); [] after ``idle_wait`` seconds with nothing ready."""
        rows: "List[Tuple[SourceState, Any]]" = []
        taken = set()
        order = self._order()
        t_first: "Optional[float]" = None
        t_idle = time.monotonic() + idle_wait
        while True:
            self.ready.clear()  # cleared before the scan: a frame queued after it wakes the wait below
            for st in order:
                if len(rows) >= max_rows:
                    break
                if st.ended or st.index in taken:
                    continue
                f = st.cap.get(timeout=0)
                if f is not None:
                    rows.append((st, f))
                    taken.add(st.index)
            active = [st for st in order if not st.ended and not st.cap.finished and st.index not in taken]
            if len(rows) >= max_rows or not active:
                return self._served(rows)
            now = time.monotonic()
            if rows:
                if t_first is None:
                    t_first = now
                left = t_first + self.timeout - now
            else:
                left = t_idle - now
            if left <= 0:
                return self._served(rows)
            self.ready.wait(left)

    def _served(self, rows: "List[Tuple[SourceState, Any]]") -> "List[Tuple[SourceState, Any]]":
        """The next call starts after the last source served (or the next one, when none was)."""
        self._next = (rows[-1][0].index + 1) if rows else self._next + 1
        return rows
