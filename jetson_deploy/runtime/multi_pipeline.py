"""Several sources through one engine: :class:`MultiPipeline` (batches formed by
:class:`~jetson_deploy.runtime.batching.BatchFormer`, rows routed back to their source)."""
import logging
import time
from typing import Any, Optional, Sequence

from .batching import BatchFormer, SourceState, default_batch_timeout
from .engine import Engine
from .executors import Executor
from .options import OutputOptions, RunOptions, SourceOptions
from .pipeline import Pipeline, _Loop, _OutputWorker, not_the_engine
from .summary import RunSummary

log = logging.getLogger(__name__)


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
                    raise not_the_engine(cap.error)
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
