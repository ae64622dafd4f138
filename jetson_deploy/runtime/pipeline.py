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
cleanly with a summary.
"""
import logging
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from ..errors import BadInput
from .metrics import Metrics, stderr_printer
from .postprocess import Postprocessor, Result

log = logging.getLogger("jetson_deploy.runtime")


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
        if self.results is not None:
            d["results"] = self.results
        return d


def load_bundle(bundle: Any, verify: bool = True) -> Any:
    """An opened, verified :class:`~jetson_deploy.bundle.Bundle` (checksums checked before loading)."""
    from ..bundle import open_bundle

    return open_bundle(bundle, verify=verify)


def make_executor(engine: Any, spec: Any, memory: str = "auto", depth: int = 3, graph: bool = True,
                  topk: int = 5, mapped_out: bool = True, **kw: Any) -> Any:
    """The executor for an activated engine.

    ``memory``: ``auto`` (torch CUDA engines -> torch pinned + GPU preprocessing; TensorRT -> pycuda;
    CPU engines -> numpy), ``numpy``, ``torch`` / ``torch-pinned``, ``pycuda`` (pinned, or mapped on an
    integrated GPU), ``pycuda-pinned``, ``pycuda-mapped``.
    """
    from .executors import HostExecutor, PycudaExecutor, TorchCudaExecutor

    backend = getattr(engine, "backend", "")
    gpu = bool(getattr(engine, "is_gpu", False))
    if memory == "auto":
        if backend == "torch" and gpu:
            memory = "torch"
        elif backend == "tensorrt":
            memory = "pycuda"
        else:
            memory = "numpy"
    if memory == "numpy":
        return HostExecutor(engine, spec)
    if memory in ("torch", "torch-pinned"):
        if not (backend == "torch" and gpu):
            raise BadInput("--memory torch needs the torch backend on a CUDA GPU")
        return TorchCudaExecutor(engine, spec, depth=depth, graph=graph, topk=topk, mapped_out=mapped_out)
    if memory in ("pycuda", "pycuda-pinned", "pycuda-mapped"):
        mapped = None if memory == "pycuda" else memory == "pycuda-mapped"
        return PycudaExecutor(engine, spec, depth=depth, mapped=mapped, graph=graph, **kw)
    raise BadInput("--memory {!r}: use auto, numpy, torch, pycuda, pycuda-pinned or pycuda-mapped".format(memory))


class Pipeline:
    """Source -> engine -> sinks with a ring of in-flight frames.  Use :func:`run_pipeline`."""

    def __init__(self, engine: Any, spec: Any, source: Any, sinks: "Sequence[Any]", executor: Any = None,
                 queue_size: int = 4, metrics_interval: float = 5.0, printer: "Optional[Callable[[str], None]]" = None,
                 topk: int = 5, stall_timeout: float = 10.0, keep_results: bool = False,
                 on_result: "Optional[Callable[[Any, Result], None]]" = None, sync_debug: "Optional[str]" = None,
                 labels: "Optional[Sequence[str]]" = None, output_thread: "Optional[bool]" = None) -> None:
        self.engine = engine
        self.spec = spec
        self.source = source
        self.sinks = list(sinks)
        self.executor = executor
        self.queue_size = queue_size
        self.metrics = Metrics(interval=metrics_interval, printer=printer)
        self.post = Postprocessor(spec, topk=topk)
        if labels:
            self.post.labels = list(labels)
        self.stall_timeout = stall_timeout
        self.keep_results = keep_results
        self.on_result = on_result
        self.sync_debug = sync_debug
        self.results: "List[Dict[str, Any]]" = []
        self.correct = 0
        self.with_truth = 0
        self.host_seconds = 0.0
        self.stop_requested = False
        self.output_thread = output_thread
        self._worker: "Optional[_OutputWorker]" = None
        self._wait_sink = 0.0

    def _finish(self, slot: int, frame: Any, wait: bool) -> None:
        ex = self.executor
        if wait:
            ex.wait(slot)
        outs = ex.outputs(slot)
        if self._worker is not None:
            if not getattr(ex, "outputs_owned", False):  # slot buffers are reused: hand over copies (small)
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
        if res.truth is not None and res.label is not None:
            self.with_truth += 1
            self.correct += int(res.truth == res.label)
        fps = self.metrics.live_fps()
        for s in self.sinks:
            s.render(frame, res, fps)
            if getattr(s, "closed_by_user", False):
                self.stop_requested = True
        if self.keep_results:
            self.results.append(res.to_json())
        if self.on_result is not None:
            self.on_result(frame, res)
        from .executors import release_frame

        release_frame(frame)

    def _truth_label(self, truth: Any) -> Any:
        if truth is None:
            return None
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
        from ..media.capture import CaptureThread

        ex = self.executor
        src = self.source
        depth = max(1, int(getattr(ex, "depth", 1)))
        use_worker = self.output_thread
        if use_worker is None:
            # CPU engines block this thread, and drawing/encoding/showing frames is slow: run
            # postprocess + sinks on their own thread so they overlap inference
            use_worker = bool(getattr(ex, "outputs_owned", False)) or any(
                getattr(s, "needs_image", True) for s in self.sinks)
        # open in this thread: errors surface here, and the source allocates its pinned pool here
        if ex.frame_allocator is not None:
            held = self.queue_size + depth + 3 + (_OutputWorker.MAXSIZE if use_worker else 0)
            src.use_allocator(ex.frame_allocator, pool_size=held)
        src.open()
        if src.width and src.height:
            ex.setup((src.height, src.width, 3))
        if src.fps:
            for s in self.sinks:
                s.fps = src.fps
        cap = CaptureThread(src, maxsize=self.queue_size, prepare=ex.prepare)
        self.metrics.dropped_fn = lambda: cap.dropped
        ring: "Deque[Tuple[int, Any]]" = deque()
        free = list(range(depth))[::-1]
        end_reason = ""
        sync_mode = None
        torch = None
        wait_src = wait_dev = 0.0
        submitted = 0
        counter = getattr(ex, "sync_counter", None)
        self._worker = _OutputWorker(self._deliver) if use_worker else None
        self.metrics.start()
        cap.start()
        t_loop = time.perf_counter()
        if counter is not None:
            counter.inside_loop = True
        try:
            if self.sync_debug and getattr(self.engine, "is_gpu", False):
                from .._lazy import require

                torch = require("torch", "--sync-debug")
                sync_mode = torch.cuda.get_sync_debug_mode()
                torch.cuda.set_sync_debug_mode(self.sync_debug)
            elif self.sync_debug:
                log.warning("--sync-debug applies to GPU engines; %s runs on the CPU", getattr(self.engine, "backend", "?"))
            last_frame = time.monotonic()
            while True:
                if max_frames is not None and submitted >= max_frames:
                    end_reason = "max frames reached ({})".format(max_frames)
                    break
                if self.stop_requested:
                    end_reason = "stopped by the display window"
                    break
                t0 = time.perf_counter()
                # frames in flight: poll briefly so finished results go out promptly (latency on
                # paced cameras) without blocking on the GPU; nothing in flight: wait longer
                frame = cap.get(timeout=0.00025 if ring else 0.1)
                wait_src += time.perf_counter() - t0
                if frame is None:
                    # nothing new: hand over results that are already done (non-blocking)
                    while ring and ex.query(ring[0][0]):
                        slot, f = ring.popleft()
                        self._finish(slot, f, wait=False)
                        free.append(slot)
                    if cap.finished:
                        if cap.error is not None:
                            raise cap.error
                        end_reason = cap.end_reason or "end of stream"
                        break
                    if getattr(src, "recovering", False):  # reconnecting with backoff: it ends itself if it must
                        last_frame = time.monotonic()
                    elif not ring and time.monotonic() - last_frame > self.stall_timeout:
                        end_reason = "source stalled: no frame for {:.0f} s ({})".format(self.stall_timeout, src.uri)
                        break
                    continue
                last_frame = time.monotonic()
                if not free:  # ring full: the one allowed wait, on the oldest in-flight frame
                    slot, f = ring.popleft()
                    t0 = time.perf_counter()
                    ex.wait(slot)
                    wait_dev += time.perf_counter() - t0
                    self._finish(slot, f, wait=False)
                    free.append(slot)
                slot = free.pop()
                ex.submit(slot, frame)
                submitted += 1
                ring.append((slot, frame))
                while len(ring) > 1 and ex.query(ring[0][0]):
                    s0, f0 = ring.popleft()
                    self._finish(s0, f0, wait=False)
                    free.append(s0)
        except KeyboardInterrupt:
            end_reason = "interrupted"
        finally:
            loop_s = time.perf_counter() - t_loop
            if torch is not None and sync_mode is not None:
                torch.cuda.set_sync_debug_mode(sync_mode)
            self.host_seconds = max(loop_s - wait_src - wait_dev - self._wait_sink, 0.0)
            if counter is not None:
                counter.inside_loop = False
            loop_syncs = dict(counter.loop_counts) if counter is not None else None
            cap.stop()
            if sys.exc_info()[0] is not None and self._worker is not None:
                try:  # an error is on its way out: stop the output thread, keep the original error
                    self._worker.close(timeout=5.0)
                except BaseException:
                    pass
                self._worker = None
        # drain (outside the loop: blocking is fine here)
        try:
            while ring:
                slot, f = ring.popleft()
                self._finish(slot, f, wait=True)
        finally:
            if self._worker is not None:
                self._worker.close()
                self._worker = None
        self.metrics.dropped = cap.dropped
        m = self.metrics.summary()
        summary = RunSummary(
            frames=m["frames"], fps=m["fps"], seconds=m["seconds"], latency_ms=m["latency_ms"], dropped=cap.dropped,
            captured=cap.captured, backend=getattr(self.engine, "backend", ""), source=str(src.uri),
            sinks=[s.uri for s in self.sinks], end_reason=end_reason or cap.end_reason, executor=ex.describe(),
            host_ms_per_frame=1000.0 * self.host_seconds / max(submitted, 1),
            wait_ms_per_frame={"source": round(1000.0 * wait_src / max(submitted, 1), 4),
                               "device": round(1000.0 * wait_dev / max(submitted, 1), 4),
                               "sink": round(1000.0 * self._wait_sink / max(submitted, 1), 4)},
            accuracy=(self.correct / float(self.with_truth)) if self.with_truth else None,
            results=self.results if self.keep_results else None,
        )
        if counter is not None:
            summary.syncs = {"in_loop": loop_syncs, "total": counter.total}
        return summary


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
                    from .executors import release_frame

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


def run_pipeline(
    bundle_or_path: Any,
    source: Any,
    sink: Any = "null://",
    backend: str = "auto",
    max_frames: "Optional[int]" = None,
    *,
    jsonl: "Optional[str]" = None,
    device: "Optional[str]" = None,
    memory: str = "auto",
    depth: int = 3,
    cuda_graph: bool = True,
    queue_size: int = 4,
    topk: int = 5,
    metrics_interval: float = 5.0,
    printer: "Optional[Callable[[str], None]]" = None,
    stall_timeout: float = 10.0,
    keep_results: bool = False,
    on_result: "Optional[Callable[[Any, Result], None]]" = None,
    sync_debug: "Optional[str]" = None,
    verify: bool = True,
    source_options: "Optional[Dict[str, Any]]" = None,
    engine: Any = None,
    output_thread: "Optional[bool]" = None,
    engine_options: "Optional[Dict[str, Any]]" = None,
    executor_options: "Optional[Dict[str, Any]]" = None,
) -> "RunSummary":
    """Run a bundle on a source into one or more sinks; return a :class:`RunSummary`.

    ``bundle_or_path``: a bundle directory / packed file (checksums verified before loading) or an
    opened Bundle.  ``source``: a URI or a :class:`~jetson_deploy.media.Source`.  ``sink``: a URI, a Sink,
    or a list of them; ``jsonl`` adds a ``.jsonl`` sink.  ``printer`` gets a metrics line every
    ``metrics_interval`` seconds (default: stderr).  ``sync_debug="error"`` runs the loop under
    ``torch.cuda.set_sync_debug_mode`` (torch CUDA path).  ``engine`` overrides the bundle's engine
    (tests, benchmarks).
    """
    from ..media import open_sink, open_source
    from .backends import create_engine

    b = load_bundle(bundle_or_path, verify=verify)
    spec = b.spec
    labels = b.labels
    src = open_source(source, **(source_options or {}))
    sink_list = list(sink) if isinstance(sink, (list, tuple)) else [sink]
    if jsonl:
        sink_list.append(jsonl)
    fps_hint = src.fps or 30.0
    sinks = [open_sink(s, fps=fps_hint) for s in sink_list if s is not None]
    eng = engine if engine is not None else create_engine(b, backend=backend, device=device, **(engine_options or {}))
    printer = printer if printer is not None else stderr_printer
    eng.activate()
    executor = None
    ok = False
    try:
        executor = make_executor(eng, spec, memory=memory, depth=depth, graph=cuda_graph, topk=topk,
                                 **(executor_options or {}))
        pipe = Pipeline(eng, spec, src, sinks, executor=executor, queue_size=queue_size,
                        metrics_interval=metrics_interval, printer=printer, topk=topk, stall_timeout=stall_timeout,
                        keep_results=keep_results, on_result=on_result, sync_debug=sync_debug, labels=labels,
                        output_thread=output_thread)
        summary = pipe.run(max_frames=max_frames)
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
        src.close()
    summary.bundle = str(getattr(b, "source", bundle_or_path))
    if summary.frames == 0 and summary.end_reason:
        log.warning("no frames processed: %s", summary.end_reason)
    return summary
