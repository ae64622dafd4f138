"""The frame loop: source -> (capture thread) -> executor ring -> postprocess -> sinks.

A :class:`~jetson_deploy.runtime.session.Session` builds the engine and the executor and makes the
pipeline (:meth:`Session.run`); :func:`~jetson_deploy.runtime.session.run_pipeline` is the one-call API.

The loop keeps up to ``depth`` frames in flight.  Each iteration takes the next captured frame,
and only if the ring is full waits for the *oldest* in-flight frame's event; everything else is
non-blocking (``query``), so the host never synchronises with the GPU inside the loop otherwise.
Results are post-processed and handed to the sinks a frame or more after submission.

Never hangs: the capture thread has a bounded queue and the loop polls it with timeouts; a source
that stops delivering for ``stall_timeout`` seconds ends the run with a message; Ctrl-C ends it
cleanly with a summary.  Periodic metrics are INFO records of ``jetson_deploy.runtime.metrics``.
"""
import logging
import time
from collections import deque
from contextlib import contextmanager
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

from .engine import Engine
from .executors import Executor, release_frame
from .memory import SyncCounter
from .metrics import Metrics
from .options import OutputOptions, RunOptions, SourceOptions
from .postprocess import Postprocessor
from .summary import RunSummary

__all__ = ["Pipeline", "RunSummary"]

log = logging.getLogger(__name__)


def not_the_engine(exc: BaseException) -> BaseException:
    """Mark an error of a source, a sink or postprocessing: the session reports every other error
    escaping the loop as the engine's (one line naming the bundle and the batch)."""
    try:
        exc.from_source = True  # type: ignore[attr-defined]
    except Exception:  # an exception type without a __dict__: reported as the engine's
        pass
    return exc


class _Loop:
    """The frame loop's state: the ring of in-flight ``(slot, frame)``, the free slots, the clocks."""

    def __init__(self, depth: int, cap: Any, counter: "Optional[SyncCounter]") -> None:
        self.ring: "Deque[Tuple[int, Any]]" = deque()
        self.free = list(range(depth))[::-1]
        self.cap = cap
        self.counter = counter
        self.submitted = 0
        self.wait_src = 0.0
        self.wait_dev = 0.0
        self.end_reason = ""
        self.loop_syncs: "Optional[Dict[str, int]]" = None
        self.t_loop = time.perf_counter()
        self.last_frame = time.monotonic()

    def per_frame_ms(self, seconds: float) -> float:
        return 1000.0 * seconds / max(self.submitted, 1)


class Pipeline:
    """Source -> engine -> sinks with a ring of in-flight frames.  Use :func:`run_pipeline`.

    ``run()`` is start -> loop -> drain -> summary; only the loop has the no-host-sync rule.
    """

    def __init__(self, engine: "Engine", spec: Any, source: Any, sinks: "Sequence[Any]", executor: "Executor",
                 options: "Optional[RunOptions]" = None, inputs: "Optional[SourceOptions]" = None,
                 outputs: "Optional[OutputOptions]" = None, labels: "Optional[Sequence[str]]" = None) -> None:
        self.engine = engine
        self.spec = spec
        self.source = source
        self.sinks = list(sinks)
        self.executor = executor
        self.options = options or RunOptions()
        self.inputs = inputs or SourceOptions()
        self.outputs = outputs or OutputOptions()
        self.metrics = Metrics(interval=self.outputs.metrics_interval)
        self.post = Postprocessor(spec, topk=self.options.topk)
        if labels:
            self.post.labels = list(labels)
        self.results: "List[Dict[str, Any]]" = []
        self.correct = 0
        self.with_truth = 0
        self._truth_names: "Dict[int, Optional[List[str]]]" = {}  # per source: the names its truth indices stand for
        self.host_seconds = 0.0
        self.stop_requested = False
        self._worker: "Optional[_OutputWorker]" = None
        self._wait_sink = 0.0
        self._fps_wanted = any(s.needs_image for s in self.sinks)

    def _finish(self, slot: int, frame: Any, wait: bool) -> None:
        ex = self.executor
        if wait:
            ex.wait(slot)
        self._hand_over(frame, ex.outputs(slot))

    def _hand_over(self, frame: Any, outs: "Dict[str, Any]") -> None:
        """To the output thread (copies of reused slot buffers) or straight to :meth:`_deliver`."""
        ex = self.executor
        if self._worker is not None:
            if not ex.outputs_owned:  # slot buffers are reused: hand over copies (small)
                outs = {k: v.copy() for k, v in outs.items()}
            t0 = time.perf_counter()
            self._worker.put((frame, outs))  # blocks only while the output thread is behind (slow sink)
            self._wait_sink += time.perf_counter() - t0
        else:
            self._deliver(frame, outs)

    def _deliver(self, frame: Any, outs: "Dict[str, Any]") -> None:
        """Postprocess one frame's outputs, update metrics, feed the sinks, release the frame; an
        error here is the output side's (marked so the session does not call it the engine's)."""
        try:
            self._deliver_impl(frame, outs)
        except Exception as exc:
            raise not_the_engine(exc)

    def _deliver_impl(self, frame: Any, outs: "Dict[str, Any]") -> None:
        img = frame.image
        res = self.post(outs, (img.shape[1], img.shape[0]))
        now = time.perf_counter()
        res.index = frame.index
        res.source = frame.source
        res.truth = self._truth_label(frame.truth, frame)
        res.latency_ms = (now - frame.timestamp) * 1000.0
        self.metrics.add(res.latency_ms, now)
        self._account(frame, res, now)
        if res.truth is not None and res.label is not None:
            self.with_truth += 1
            self.correct += int(res.truth == res.label)
        fps = self.metrics.live_fps() if self._fps_wanted else None  # only sinks that draw show it
        for s in self._sinks_for(frame):
            s.render(frame, res, fps)
            if getattr(s, "closed_by_user", False):  # only display sinks have a window to close
                self.stop_requested = True
        if self.outputs.keep_results:
            self.results.append(res.to_json())
        if self.outputs.on_result is not None:
            self.outputs.on_result(frame, res)
        release_frame(frame)

    def _account(self, frame: Any, res: Any, now: float) -> None:
        """Per-source bookkeeping of a delivered frame (multi-source runs)."""

    def _sinks_for(self, frame: Any) -> "Sequence[Any]":
        return self.sinks

    def _truth_label(self, truth: Any, frame: Any = None) -> Any:
        """The frame's ground truth as a class name of this bundle, or None when it is not one.

        A source's truth index means a name of *its* label list (the synthetic source's generator
        draws the demo's shapes), not the bundle's: accuracy is counted only when that list's names
        are all labels of the bundle, so a model with other classes never gets a number that means
        nothing."""
        if truth is None:
            return None
        if truth.__class__ is str:
            return truth if truth in self.post.labels else None
        try:
            index = int(truth)
        except (TypeError, ValueError):
            return None
        if isinstance(truth, bool) or index != truth:
            return None
        names = self._source_truth_names(frame)
        return names[index] if names is not None and 0 <= index < len(names) else None

    def _source_truth_names(self, frame: Any) -> "Optional[List[str]]":
        stream = getattr(frame, "stream", None) or 0
        if stream not in self._truth_names:
            sources = getattr(self, "sources", None) or [self.source]
            src = sources[stream] if stream < len(sources) else self.source
            names = truth_names(src)
            known = set(self.post.labels or [])
            if names is not None and not set(names) <= known:
                log.info("no accuracy for source %s: its ground truth names %s, not labels of this bundle (%s)",
                         getattr(src, "uri", stream), ", ".join(names), ", ".join(self.post.labels or []) or "none")
                names = None
            self._truth_names[stream] = names
        return self._truth_names[stream]

    def run(self, max_frames: "Optional[int]" = None) -> "RunSummary":
        """Process frames until ``max_frames``, the end of the source, a stall or Ctrl-C."""
        st = self._start()
        ok = False
        try:
            with _sync_debug_mode(self.engine, self.options.sync_debug):
                self._loop(st, max_frames)
            ok = True
        except KeyboardInterrupt:
            st.end_reason = "interrupted"
            ok = True
        finally:
            self._stop(st, failed=not ok)
        self._drain(st)
        return self._summary(st)

    def _start(self) -> "_Loop":
        """Open the source in this thread (errors surface here; it allocates its pinned pool here),
        set the executor up for its frame size, start the capture (and output) threads."""
        from ..media.capture import CaptureThread

        ex, src = self.executor, self.source
        depth = max(1, int(ex.depth))
        use_worker = self.options.output_thread
        if use_worker is None:
            # CPU engines block this thread, and drawing/encoding/showing frames is slow: run
            # postprocess + sinks on their own thread so they overlap inference
            use_worker = ex.outputs_owned or any(s.needs_image for s in self.sinks)
        if ex.frame_allocator is not None:
            held = self.inputs.queue_size + depth + 3 + (_OutputWorker.MAXSIZE if use_worker else 0)
            src.use_allocator(ex.frame_allocator, pool_size=held)
        src.open()
        if src.width and src.height:
            ex.setup((src.height, src.width, 3))
        if src.fps:
            for s in self.sinks:
                s.fps = src.fps
        # GPU-preprocessing executors: the capture thread only captures (no per-pixel CPU work)
        cap = CaptureThread(src, maxsize=self.inputs.queue_size, prepare=ex.prepare if ex.host_preprocess else None)
        self.metrics.dropped_fn = lambda: cap.dropped
        self._worker = _OutputWorker(self._deliver) if use_worker else None
        self.metrics.start()
        cap.start()
        st = _Loop(depth, cap, ex.sync_counter)
        if st.counter is not None:
            st.counter.inside_loop = True
        return st

    def _stopping(self, st: "_Loop", max_frames: "Optional[int]") -> bool:
        """True (with the reason in ``st``) when the loop must end before taking more frames."""
        if max_frames is not None and st.submitted >= max_frames:
            st.end_reason = "max frames reached ({})".format(max_frames)
            return True
        if self.stop_requested:
            st.end_reason = "stopped by the display window"
            return True
        return False

    def _loop(self, st: "_Loop", max_frames: "Optional[int]") -> None:
        """The steady state.  The one blocking call on the GPU is ``wait`` on the oldest slot when
        the ring is full; finished results are collected with non-blocking ``query``."""
        ex = self.executor
        while not self._stopping(st, max_frames):
            t0 = time.perf_counter()
            # frames in flight: poll briefly so finished results go out promptly (latency on
            # paced cameras) without blocking on the GPU; nothing in flight: wait longer
            frame = st.cap.get(timeout=0.00025 if st.ring else 0.1)
            st.wait_src += time.perf_counter() - t0
            if frame is None:
                self._collect(st, keep=0)  # nothing new: hand over results that are already done
                st.end_reason = self._idle_end_reason(st)
                if st.end_reason:
                    return
                continue
            st.last_frame = time.monotonic()
            slot = self._free_slot(st)
            ex.submit(slot, frame)
            st.submitted += 1
            st.ring.append((slot, frame))
            self._collect(st, keep=1)

    def _free_slot(self, st: "_Loop") -> int:
        """A free ring slot; when the ring is full, the one allowed wait, on the oldest in flight."""
        if not st.free:
            slot, old = st.ring.popleft()
            t0 = time.perf_counter()
            self.executor.wait(slot)
            st.wait_dev += time.perf_counter() - t0
            self._finish(slot, old, wait=False)
            st.free.append(slot)
        return st.free.pop()

    def _collect(self, st: "_Loop", keep: int) -> None:
        """Finish the oldest in-flight frames whose event has fired, leaving at least ``keep``."""
        while len(st.ring) > keep and self.executor.query(st.ring[0][0]):
            slot, f = st.ring.popleft()
            self._finish(slot, f, wait=False)
            st.free.append(slot)

    def _idle_end_reason(self, st: "_Loop") -> str:
        """Why the run ends now that no frame came ("" to go on): end of stream, error or stall."""
        cap, src = st.cap, self.source
        if cap.finished:
            if cap.error is not None:
                raise not_the_engine(cap.error)
            return cap.end_reason or "end of stream"
        if src.recovering:  # reconnecting with backoff: it ends itself if it must
            st.last_frame = time.monotonic()
        elif not st.ring and time.monotonic() - st.last_frame > self.inputs.stall_timeout:
            return "source stalled: no frame for {:.0f} s ({})".format(self.inputs.stall_timeout, src.uri)
        return ""

    def _stop(self, st: "_Loop", failed: bool) -> None:
        """Leave the loop: account host time and syncs, stop capturing; on an error also stop the
        output thread, keeping the original error."""
        loop_s = time.perf_counter() - st.t_loop
        self.host_seconds = max(loop_s - st.wait_src - st.wait_dev - self._wait_sink, 0.0)
        if st.counter is not None:
            st.counter.inside_loop = False
            st.loop_syncs = dict(st.counter.loop_counts)
        self._stop_capture(st)
        if failed and self._worker is not None:
            try:
                self._worker.close(timeout=5.0)
            except BaseException:
                pass
            self._worker = None

    def _stop_capture(self, st: "_Loop") -> None:
        st.cap.stop()

    def _drain(self, st: "_Loop") -> None:
        """Finish the frames still in flight (outside the loop: blocking is fine here)."""
        try:
            while st.ring:
                slot, f = st.ring.popleft()
                self._finish(slot, f, wait=True)
        finally:
            if self._worker is not None:
                self._worker.close()
                self._worker = None

    def _summary(self, st: "_Loop") -> "RunSummary":
        cap = st.cap
        return self._make_summary(st, cap.dropped, cap.captured, str(self.source.uri), st.end_reason or cap.end_reason,
                                  cap.cpu_seconds)

    def _make_summary(self, st: "_Loop", dropped: int, captured: int, source: str, end_reason: str,
                      capture_cpu_s: float = 0.0) -> "RunSummary":
        self.metrics.dropped = dropped
        m = self.metrics.summary()
        summary = RunSummary(
            frames=m["frames"], fps=m["fps"], seconds=m["seconds"], latency_ms=m["latency_ms"], dropped=dropped,
            captured=captured, backend=self.engine.backend, source=source,
            sinks=[s.uri for s in self.sinks], end_reason=end_reason,
            executor=self.executor.describe(), host_ms_per_frame=st.per_frame_ms(self.host_seconds),
            wait_ms_per_frame={"source": round(st.per_frame_ms(st.wait_src), 4),
                               "device": round(st.per_frame_ms(st.wait_dev), 4),
                               "sink": round(st.per_frame_ms(self._wait_sink), 4)},
            accuracy=(self.correct / float(self.with_truth)) if self.with_truth else None,
            results=self.results if self.outputs.keep_results else None,
            capture_cpu_ms_per_frame=(1000.0 * capture_cpu_s / captured) if captured else None,
        )
        if st.counter is not None:
            summary.syncs = {"in_loop": st.loop_syncs, "total": st.counter.total}
        return summary


def truth_names(source: Any) -> "Optional[List[str]]":
    """The class names a source's integer ground truth indexes (its ``truth_labels``: the synthetic
    source's are its generator's, the demo's shapes); None when it does not say."""
    names = getattr(source, "truth_labels", None)
    return [str(n) for n in names] if names else None


@contextmanager
def _sync_debug_mode(engine: "Engine", mode: "Optional[str]") -> "Iterator[None]":
    """Run the body under ``torch.cuda.set_sync_debug_mode(mode)`` (GPU engines), restoring it after."""
    if not mode:
        yield
        return
    if not engine.is_gpu:
        log.warning("--sync-debug applies to GPU engines; %s runs on the CPU", engine.backend)
        yield
        return
    from .._lazy import require

    torch = require("torch", "--sync-debug")
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


class _OutputWorker:
    """Postprocess + sinks on their own thread (bounded queue), for engines that block the loop thread."""

    MAXSIZE = 8

    def __init__(self, fn: "Callable[[Any, Dict[str, Any]], None]", maxsize: int = MAXSIZE) -> None:
        import threading

        self.fn = fn
        self.maxsize = maxsize
        self.q: "Deque[Tuple[Any, Dict[str, Any]]]" = deque()
        self.cond = threading.Condition()
        self.error: "Optional[BaseException]" = None
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="output", daemon=True)
        self.thread.start()

    def put(self, item: "Tuple[Any, Dict[str, Any]]") -> None:
        with self.cond:
            while len(self.q) >= self.maxsize and self.error is None:
                self.cond.wait(0.1)
            if self.error is not None:
                raise self.error
            self.q.append(item)
            self.cond.notify_all()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.q and not self.closed:
                    self.cond.wait(0.1)
                if not self.q:
                    return
                item = self.q.popleft()
                self.cond.notify_all()
            try:
                self.fn(*item)
            except BaseException as exc:  # handed to the loop thread at its next put/close
                with self.cond:
                    self.error = exc
                    self.cond.notify_all()
                    release_frame(item[0])
                    while self.q:
                        release_frame(self.q.popleft()[0])
                return

    def close(self, timeout: float = 60.0) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error
