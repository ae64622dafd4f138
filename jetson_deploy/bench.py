"""Engine-only vs full-pipeline throughput and latency, side by side in one process.

* **engine-only**: the engine on inputs that are already where it reads them (device buffers for GPU
  executors: the same CUDA graph, no copies; a preprocessed host array for CPU engines), back to
  back.  Measured before *and* after the pipeline run; the better of the two is the reference, so
  the ratio is never flattered by a cold or throttled engine run.
* **pipeline**: the real loop -- source (unpaced ``synthetic://1280x720`` by default) -> capture
  thread -> copies/preprocessing -> engine -> postprocess -> ``null://`` sink.

``ratio = pipeline_fps / engine_fps``.
"""
import time
from typing import Any, Dict, List, Optional

import numpy as np

from .runtime.metrics import percentiles


def _sync_fn(executor: Any) -> Any:
    cs = getattr(executor, "compute_stream", None)
    if cs is None:
        return lambda: None
    return cs.synchronize


def engine_only(executor: Any, engine: Any, spec: Any, iterations: int, warmup: int = 10,
                latency_iterations: "Optional[int]" = None) -> "Dict[str, Any]":
    """Throughput (back-to-back, one sync at the end) and per-call latency (sync after each)."""
    step = getattr(executor, "engine_only_step", None)
    if step is None:  # CPU engine: synchronous host inference on a preprocessed input
        from .preprocess import preprocess

        frame = np.random.RandomState(0).randint(0, 256, size=(spec.height, spec.width, 3), dtype=np.uint8)
        x = preprocess(frame, spec)[None]
        if engine.inputs and np.dtype(engine.inputs[0].dtype) != x.dtype:
            x = x.astype(engine.inputs[0].dtype)
        feeds = {engine.inputs[0].name if engine.inputs else spec.input_name: x}

        def step() -> None:
            engine.infer(feeds)

    sync = _sync_fn(executor)
    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(iterations):
        step()
    sync()
    dt = time.perf_counter() - t0
    lats: "List[float]" = []
    for _ in range(latency_iterations or max(iterations // 2, 10)):
        t1 = time.perf_counter()
        step()
        sync()
        lats.append((time.perf_counter() - t1) * 1000.0)
    return {"fps": round(iterations / dt, 3), "seconds": round(dt, 4), "latency_ms": percentiles(lats)}


def run_bench(bundle: Any, backend: str = "auto", device: "Optional[str]" = None, memory: str = "auto",
              iterations: int = 300, warmup: int = 30, source: str = "synthetic://1280x720", depth: int = 3,
              cuda_graph: bool = True, sync_debug: "Optional[str]" = None, engine: Any = None,
              source_options: "Optional[Dict[str, Any]]" = None, engine_options: "Optional[Dict[str, Any]]" = None,
              output_thread: "Optional[bool]" = None, mapped_out: bool = True) -> "Dict[str, Any]":
    """Both measurements on one engine and executor; returns the ``bench --json`` object."""
    from .media import open_sink, open_source
    from .runtime.backends import create_engine
    from .runtime.pipeline import Pipeline, load_bundle, make_executor

    b = load_bundle(bundle, verify=True)
    spec = b.spec
    eng = engine if engine is not None else create_engine(b, backend=backend, device=device, **(engine_options or {}))
    eng.activate()
    ex = None
    try:
        ex = make_executor(eng, spec, memory=memory, depth=depth, graph=cuda_graph, mapped_out=mapped_out)

        def pipeline_run(n: int, debug: "Optional[str]") -> Any:
            src = open_source(source, **(source_options or {}))
            pipe = Pipeline(eng, spec, src, [open_sink("null://")], executor=ex, metrics_interval=0, printer=None,
                            sync_debug=debug, labels=b.labels, output_thread=output_thread)
            try:
                return pipe.run(max_frames=n)
            finally:
                src.close()

        # the warm-up pipeline run also sets the executor up for the source's frame size
        pipeline_run(max(warmup, 2 * depth), None)
        e1 = engine_only(ex, eng, spec, iterations, warmup=warmup)
        p = pipeline_run(iterations, sync_debug)
        e2 = engine_only(ex, eng, spec, iterations, warmup=warmup)
    finally:
        if ex is not None:
            ex.close()
        eng.deactivate()
    e_best = e1 if e1["fps"] >= e2["fps"] else e2
    engine_fps = e_best["fps"]
    res: "Dict[str, Any]" = {
        "backend": getattr(eng, "backend", backend),
        "executor": ex.describe() if ex is not None else {},
        "source": source,
        "iterations": iterations,
        "engine_fps": engine_fps,
        "pipeline_fps": round(p.fps, 3),
        "ratio": round(p.fps / engine_fps, 4) if engine_fps else 0.0,
        "latency_ms": p.latency_ms,
        "engine": {"fps": engine_fps, "runs_fps": [e1["fps"], e2["fps"]], "latency_ms": e_best["latency_ms"]},
        "pipeline": {"fps": round(p.fps, 3), "frames": p.frames, "latency_ms": p.latency_ms, "dropped": p.dropped,
                     "host_ms_per_frame": round(p.host_ms_per_frame, 4), "seconds": round(p.seconds, 4),
                     "wait_ms_per_frame": p.wait_ms_per_frame},
        "bundle": str(getattr(b, "source", bundle)),
    }
    if p.syncs is not None:
        res["syncs"] = p.syncs
    if sync_debug:
        res["sync_debug"] = sync_debug
    return res
