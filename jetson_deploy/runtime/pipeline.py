"""The frame loop: source -> (capture thread) -> executor ring -> postprocess -> sinks.

::

    from jetson_deploy.runtime.pipeline import run_pipeline
    summary = run_pipeline("bundle/", "synthetic://1280x720@30", "out.mp4", backend="onnxruntime", max_frames=300)
    print(summary.fps, summary.latency_ms, summary.dropped)

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
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import BadInput
from .batching import BatchFormer, SourceState, default_batch_timeout, resolve_batch
from .engine import Engine
from .executors import Executor, HostExecutor, PycudaExecutor, TorchCudaExecutor, release_frame
from .memory import SyncCounter
from .metrics import Metrics
from .options import OutputOptions, RunOptions, SourceOptions, split_options
from .postprocess import Postprocessor

__all__ = ["MultiPipeline", "OutputOptions", "Pipeline", "RunOptions", "RunSummary", "SourceOptions", "load_bundle", "make_executor",
           "run_pipeline"]

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did.  ``to_dict()`` is what ``run --json`` prints."""

    frames: int = 0
    fps: float = 0.0
    seconds: float = 0.0
    latency_ms: "Dict[str, float]" = field(default_factory=dict)
    dropped: int = 0
    captured: int = 0
    backend: str = ""
    source: str = ""
    sinks: "List[str]" = field(default_factory=list)
    end_reason: str = ""
    executor: "Dict[str, Any]" = field(default_factory=dict)
    host_ms_per_frame: float = 0.0
    wait_ms_per_frame: "Dict[str, float]" = field(default_factory=dict)
    accuracy: "Optional[float]" = None
    bundle: str = ""
    results: "Optional[List[Dict[str, Any]]]" = None
    syncs: "Optional[Dict[str, Any]]" = None
    capture_cpu_ms_per_frame: "Optional[float]" = None
    #: multi-source runs: per source index, uri, frames, fps, latency_ms, dropped, captured, end_reason
    sources: "Optional[List[Dict[str, Any]]]" = None

    def to_dict(self) -> "Dict[str, Any]":
        d = {
            "frames": self.frames, "fps": round(self.fps, 3), "seconds": round(self.seconds, 4),
            "latency_ms": self.latency_ms, "dropped": self.dropped, "captured": self.captured,
            "backend": self.backend, "source": self.source, "sinks": self.sinks, "end_reason": self.end_reason,
            "executor": self.executor, "host_ms_per_frame": round(self.host_ms_per_frame, 4),
            "wait_ms_per_frame": self.wait_ms_per_frame, "bundle": self.bundle,
        }
        if self.accuracy is not None:
            d["accuracy"] = round(self.accuracy, 5)
        if self.syncs is not None:
            d["syncs"] = self.syncs
        if self.capture_cpu_ms_per_frame is not None:
            d["capture_cpu_ms_per_frame"] = round(self.capture_cpu_ms_per_frame, 4)
        if self.sources is not None:
            d["sources"] = self.sources
        if self.results is not None:
            d["results"] = self.results
        return d


def load_bundle(bundle: Any, verify: bool = True) -> Any:
    """An opened, verified :class:`~jetson_deploy.bundle.Bundle` (checksums checked before loading)."""
    from ..bundle import open_bundle

    return open_bundle(bundle, verify=verify)


def make_executor(engine: Any, spec: Any, memory: str = "auto", depth: int = 3, graph: bool = True,
                  topk: int = 5, mapped_out: "Optional[bool]" = None, batch: int = 1, dynamic_batch: bool = False,
                  **kw: Any) -> Any:
    """The executor for an activated engine.

    ``memory``: ``auto`` (torch CUDA engines -> torch pinned + GPU preprocessing; TensorRT -> pycuda;
    CPU engines -> numpy), ``numpy``, ``torch`` / ``torch-pinned``, ``pycuda`` (pinned, or mapped on an
    integrated GPU), ``pycuda-pinned``, ``pycuda-mapped``.  ``batch``: rows per engine call (several
    sources); ``dynamic_batch``: the engine takes fewer (ONNX Runtime runs the actual count).
    ``mapped_out``: results written straight into mapped pinned host memory (torch: default on;
    pycuda: default on for small outputs), False for device buffers + a D2H copy.
    """
    backend = engine.backend
    gpu = bool(engine.is_gpu)
    if memory == "auto":
        if backend == "torch" and gpu:
            memory = "torch"
        elif backend == "tensorrt":
            memory = "pycuda"
        else:
            memory = "numpy"
    if memory == "numpy":
        if batch > 1 or dynamic_batch:
            return HostExecutor(engine, spec, batch=batch, dynamic_batch=dynamic_batch)
        return HostExecutor(engine, spec)
    if memory in ("torch", "torch-pinned"):
        if not (backend == "torch" and gpu):
            raise BadInput("--memory torch needs the torch backend on a CUDA GPU")
        return TorchCudaExecutor(engine, spec, depth=depth, graph=graph, topk=topk, mapped_out=mapped_out is not False,
                                 mapped_in=kw.get("mapped_in"), preprocess_impl=str(kw.get("gpu_preprocess", "auto")),
                                 batch=batch)
    if memory in ("pycuda", "pycuda-pinned", "pycuda-mapped"):
        mapped = None if memory == "pycuda" else memory == "pycuda-mapped"
        if batch > 1:
            kw["batch"] = batch
        return _pycuda_executor(engine, spec, depth=depth, mapped=mapped, graph=graph, mapped_out=mapped_out, **kw)
    raise BadInput("--memory {!r}: use auto, numpy, torch, pycuda, pycuda-pinned or pycuda-mapped".format(memory))


def _pycuda_executor(engine: Any, spec: Any, gpu_preprocess: Any = "auto", **kw: Any) -> Any:
    """The pycuda executor: GPU preprocessing (the fused kernel) unless it cannot compile here
    (``gpu_preprocess="auto"``: then host preprocessing, said once) or is switched off (False)."""
    from .._lazy import require
    from ..trt.cuda import ensure_pycuda_context
    from .gpu_executors import PycudaGpuExecutor, gpu_preprocess_unavailable

    # `run`/`bench --memory pycuda-*` from the CLI: nobody has made a context current yet
    ensure_pycuda_context(kw.get("cuda") or require("pycuda.driver", "the pycuda runtime path"))
    if gpu_preprocess in (False, "off", "host"):
        return PycudaExecutor(engine, spec, **kw)
    why = gpu_preprocess_unavailable(spec, engine, cuda=kw.get("cuda"))
    if not why:
        return PycudaGpuExecutor(engine, spec, **kw)
    if gpu_preprocess in (True, "on", "kernel"):
        raise BadInput("GPU preprocessing on the pycuda path needs pycuda's SourceModule and nvcc: {}".format(why))
    ex = PycudaExecutor(engine, spec, **kw)
    ex.preprocess_note = "GPU preprocessing kernel unavailable ({}); host preprocessing on the capture thread".format(why)
    log.warning("%s", ex.preprocess_note)
    return ex


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
        """Postprocess one frame's outputs, update metrics, feed the sinks, release the frame."""
        img = frame.image
        res = self.post(outs, (img.shape[1], img.shape[0]))
        now = time.perf_counter()
        res.index = frame.index
        res.source = frame.source
        res.truth = self._truth_label(frame.truth)
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

    def _truth_label(self, truth: Any) -> Any:
        if truth is None or truth.__class__ is str:
            return truth
        if isinstance(truth, (int,)) and not isinstance(truth, bool):
            labels = self.post.labels
            return labels[truth] if 0 <= truth < len(labels) else truth
        try:
            import numpy as np

            if isinstance(truth, np.integer):
                return self._truth_label(int(truth))
        except ImportError:  # pragma: no cover
            pass
        return truth

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
                raise cap.error
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


class MultiPipeline(Pipeline):
    """Several sources -> one engine at batch N -> each source's sinks.  Use :func:`run_pipeline`.

    Each source keeps its capture thread and live policy; each ring slot holds one batch (at most
    one frame per source, formed by :class:`~jetson_deploy.runtime.batching.BatchFormer`), one
    event per batch.  Rows go back to their source (``frame.stream``): per-source metrics, sinks
    bound to a source (``bindings``: per sink, a source index or None for all).  A source that ends
    or stalls ends alone; the run ends when all did (or the first, with ``stop_on_first_end``).
    """

    def __init__(self, engine: "Engine", spec: Any, sources: "Sequence[Any]", sinks: "Sequence[Any]",
                 executor: "Executor", options: "Optional[RunOptions]" = None,
                 inputs: "Optional[SourceOptions]" = None, outputs: "Optional[OutputOptions]" = None,
                 labels: "Optional[Sequence[str]]" = None, bindings: "Optional[Sequence[Optional[int]]]" = None) -> None:
        super().__init__(engine, spec, sources[0], sinks, executor, options=options, inputs=inputs, outputs=outputs,
                         labels=labels)
        self.sources = list(sources)
        self.states = [SourceState(i, src) for i, src in enumerate(self.sources)]
        self.bindings = list(bindings) if bindings is not None else [None] * len(self.sinks)
        self._routes = [[s for s, b in zip(self.sinks, self.bindings) if b is None or b == i]
                        for i in range(len(self.sources))]
        self.former: "Optional[BatchFormer]" = None

    def _account(self, frame: Any, res: Any, now: float) -> None:
        if len(self.states) > 1:  # one source through a fixed-batch engine: rows as a single-source run's
            res.stream = frame.stream
        self.states[frame.stream].metrics.add(res.latency_ms, now)

    def _sinks_for(self, frame: Any) -> "Sequence[Any]":
        return self._routes[frame.stream]

    def _start(self) -> "_Loop":
        """Open every source here (errors surface here), set the executor up, start the threads."""
        import threading

        from ..media.capture import CaptureThread

        ex = self.executor
        depth = max(1, int(ex.depth))
        use_worker = self.options.output_thread
        if use_worker is None:
            use_worker = ex.outputs_owned or any(s.needs_image for s in self.sinks)
        for state in self.states:
            if ex.frame_allocator is not None:
                held = self.inputs.queue_size + depth + 3 + (_OutputWorker.MAXSIZE if use_worker else 0)
                state.source.use_allocator(ex.frame_allocator, pool_size=held)
            state.source.open()
        first = self.sources[0]
        if first.width and first.height:
            ex.setup((first.height, first.width, 3))
        for sink, bound in zip(self.sinks, self.bindings):
            fps = self.sources[bound].fps if bound is not None else first.fps
            if fps:
                sink.fps = fps
        ready = threading.Event()
        prepare = ex.prepare if ex.host_preprocess else None
        for state in self.states:
            state.cap = CaptureThread(state.source, maxsize=self.inputs.queue_size, prepare=prepare, ready=ready,
                                      name="capture-{}".format(state.index))
        self.metrics.dropped_fn = lambda: sum(x.cap.dropped for x in self.states)
        self._worker = _OutputWorker(self._deliver) if use_worker else None
        timeout = self.inputs.batch_timeout
        if timeout is None:
            timeout = default_batch_timeout(self.sources)
        self.former = BatchFormer(self.states, ready, timeout)
        self.metrics.start()
        for state in self.states:
            state.metrics.start()
            state.cap.start()
            state.last_frame = time.monotonic()
        st = _Loop(depth, None, ex.sync_counter)
        if st.counter is not None:
            st.counter.inside_loop = True
        return st

    def _loop(self, st: "_Loop", max_frames: "Optional[int]") -> None:
        """As :meth:`Pipeline._loop`, a batch per slot: form -> (ring full: wait oldest) -> submit."""
        ex = self.executor
        while not self._stopping(st, max_frames):
            t0 = time.perf_counter()
            room = ex.batch if max_frames is None else min(ex.batch, max_frames - st.submitted)
            rows = self.former.form(room, 0.00025 if st.ring else 0.1)  # type: ignore[union-attr]
            st.wait_src += time.perf_counter() - t0
            if not rows:
                self._collect(st, keep=0)
            self._check_sources(st)
            if not rows:
                if st.end_reason:
                    return
                continue
            now = time.monotonic()
            frames = []
            for state, frame in rows:
                state.last_frame = now
                frame.stream = state.index
                frames.append(frame)
            slot = self._free_slot(st)
            ex.submit_batch(slot, frames)
            st.submitted += len(frames)
            st.ring.append((slot, frames))
            self._collect(st, keep=1)
            if st.end_reason:
                return

    def _finish(self, slot: int, frames: Any, wait: bool) -> None:
        ex = self.executor
        if wait:
            ex.wait(slot)
        for frame, outs in zip(frames, ex.row_outputs(slot, len(frames))):
            self._hand_over(frame, outs)

    def _check_sources(self, st: "_Loop") -> None:
        """End sources that finished or stalled, each alone; set the run's end reason when it ends."""
        now = time.monotonic()
        for state in self.states:
            if state.ended:
                continue
            cap, src = state.cap, state.source
            if cap.finished:
                if cap.error is not None and len(self.states) == 1:
                    raise cap.error
                if cap.error is not None:
                    log.warning("source %d (%s) failed: %s; the other sources go on", state.index, src.uri, cap.error)
                state.end(cap.end_reason or "end of stream")
            elif src.recovering:
                state.last_frame = now
                continue
            elif now - state.last_frame > self.inputs.stall_timeout:
                state.end("source stalled: no frame for {:.0f} s ({})".format(self.inputs.stall_timeout, src.uri))
                log.warning("source %d %s", state.index, state.end_reason)
            else:
                continue
            if len(self.states) > 1:
                log.info("source %d ended: %s", state.index, state.end_reason)
            if self.inputs.stop_on_first_end and not st.end_reason:
                st.end_reason = "source {} ended ({}); --stop-on-first-end".format(state.index, state.end_reason)
        if not st.end_reason and all(x.ended for x in self.states):
            st.end_reason = self.states[0].end_reason if len(self.states) == 1 else "all sources ended"

    def _stop_capture(self, st: "_Loop") -> None:
        for state in self.states:
            if state.cap is not None:
                state.cap.stop()

    def _summary(self, st: "_Loop") -> "RunSummary":
        caps = [x.cap for x in self.states]
        summary = self._make_summary(st, sum(c.dropped for c in caps), sum(c.captured for c in caps),
                                     ", ".join(str(s.uri) for s in self.sources), st.end_reason,
                                     sum(c.cpu_seconds for c in caps))
        rows = []
        for state in self.states:
            d = state.to_dict()
            if not state.ended:
                d["end_reason"] = st.end_reason
            rows.append(d)
        summary.sources = rows
        return summary


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


def run_pipeline(bundle_or_path: Any, source: Any, sink: Any = "null://", *,
                 options: "Optional[RunOptions]" = None, inputs: "Optional[SourceOptions]" = None,
                 outputs: "Optional[OutputOptions]" = None, engine: "Optional[Engine]" = None,
                 **flat: Any) -> "RunSummary":
    """Run a bundle on one or several sources into one or more sinks; return a :class:`RunSummary`.

    ``bundle_or_path``: a bundle directory / packed file (checksums verified before loading) or an
    opened Bundle.  ``source``: a URI or a :class:`~jetson_deploy.media.Source`, or a list of them:
    several sources are batched into one engine call (:class:`MultiPipeline`; the bundle needs a
    fixed batch >= N or ``--dynamic-batch``).  ``sink``: a URI, a Sink, or a list of them; ``"K=URI"``
    binds a sink to source K (the others receive every source).  ``options`` / ``inputs`` /
    ``outputs``: see :mod:`jetson_deploy.runtime.options`; flat keywords named after their fields
    (``backend="onnxruntime"``, ``max_frames=10``, ``jsonl=...``) override them.  ``engine``
    overrides the bundle's engine (tests, benchmarks).
    """
    from ..media import open_sink, open_source
    from .backends import create_engine, describe_choice, explain_backend

    opts, ins, outs = split_options(options, inputs, outputs, **flat)
    b = load_bundle(bundle_or_path, verify=opts.verify)
    uris = list(source) if isinstance(source, (list, tuple)) else [source]
    if not uris:
        raise BadInput("no source given: pass at least one --source")
    srcs = [open_source(u, **ins.options) for u in uris]
    sink_list, bindings = bind_sinks(sink, len(srcs))
    if outs.jsonl:
        sink_list.append(outs.jsonl)
        bindings.append(None)
    fps_hint = srcs[0].fps or 30.0
    sinks = [open_sink(s, fps=fps_hint) for s in sink_list]
    why = ""
    if engine is None:
        why = explain_backend(b, opts.backend, opts.device)[1]
    eng = engine if engine is not None else create_engine(b, backend=opts.backend, device=opts.device,
                                                          batch=len(srcs), **opts.engine_options)
    eng.activate()
    executor = None
    ok = False
    try:
        batch, dynamic = resolve_batch(eng, len(srcs), str(b.source))
        multi = len(srcs) > 1 or (batch > 1 and not dynamic)
        kw = dict(opts.executor_options, batch=batch, dynamic_batch=dynamic) if multi else opts.executor_options
        executor = make_executor(eng, b.spec, memory=opts.memory, depth=opts.depth, graph=opts.cuda_graph,
                                 topk=opts.topk, **kw)
        log.info("%s", describe_choice(eng, executor, why))
        pipe: "Pipeline"
        if multi:
            log.info("%d source(s) batched into one engine call at batch %d%s", len(srcs), batch,
                     " (dynamic)" if dynamic else "")
            pipe = MultiPipeline(eng, b.spec, srcs, sinks, executor, options=opts, inputs=ins, outputs=outs,
                                 labels=b.labels, bindings=bindings)
        else:
            pipe = Pipeline(eng, b.spec, srcs[0], sinks, executor, options=opts, inputs=ins, outputs=outs,
                            labels=b.labels)
        summary = pipe.run(max_frames=opts.max_frames)
        ok = True
    finally:
        for s in sinks:
            if ok:
                s.close()
            else:
                s.abort()
        if executor is not None:
            executor.close()
        eng.deactivate()
        for src in srcs:
            src.close()
    summary.bundle = str(b.source)
    if summary.frames == 0 and summary.end_reason:
        log.warning("no frames processed: %s", summary.end_reason)
    return summary


def bind_sinks(sink: Any, sources: int) -> "Tuple[List[Any], List[Optional[int]]]":
    """(sinks, source index each is bound to or None): ``"K=URI"`` binds URI to source K."""
    import re

    items = [x for x in (list(sink) if isinstance(sink, (list, tuple)) else [sink]) if x is not None]
    out: "List[Any]" = []
    bound: "List[Optional[int]]" = []
    for item in items:
        m = re.match(r"^(\d+)=(.+)$", item) if isinstance(item, str) else None
        if m is None:
            out.append(item)
            bound.append(None)
            continue
        k = int(m.group(1))
        if k >= sources:
            raise BadInput("--sink {}: source {} does not exist ({} source(s), numbered from 0)".format(item, k, sources))
        out.append(m.group(2))
        bound.append(k)
    return out, bound
