"""Engine-only vs full-pipeline throughput and latency, side by side in one process.

* **engine-only**: the engine on inputs that are already where it reads them (device buffers for GPU
  executors: the same CUDA graph, no copies; a preprocessed host array for CPU engines), back to
  back.  Measured before *and* after the pipeline run; the better of the two is the reference, so
  the ratio is never flattered by a cold or throttled engine run.
* **pipeline**: the real loop -- source (unpaced ``synthetic://1280x720`` by default) -> capture
  thread -> copies/preprocessing -> engine -> postprocess -> ``null://`` sink.

* **model-only**: the network alone at its input shape -- no preprocessing, no reduction, no copies
  (``model_fps``); ``ratio_model = pipeline_fps / model_fps`` is what the frame path costs against
  the bare network.  On CPU engines the engine-only step already is the bare model.

``ratio = pipeline_fps / engine_fps``.
"""
import time
from dataclasses import replace
from typing import Any, Dict, List, Optional

from .runtime.metrics import percentiles
from .runtime.options import OutputOptions, RunOptions, SourceOptions, split_options


def engine_only(executor: Any, iterations: int, warmup: int = 10,
                latency_iterations: "Optional[int]" = None, model_only: bool = False) -> "Dict[str, Any]":
    """Throughput (back-to-back, one sync at the end) and per-call latency (sync after each).

    ``model_only``: the bare network (``executor.model_only_step``) instead of the engine step."""
    step = executor.model_only_step if model_only else executor.engine_only_step
    sync = executor.synchronize
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


def run_bench(bundle: Any, iterations: int = 300, warmup: int = 30, source: str = "synthetic://1280x720", *,
              options: "Optional[RunOptions]" = None, inputs: "Optional[SourceOptions]" = None, engine: Any = None,
              **flat: Any) -> "Dict[str, Any]":
    """Both measurements on one engine and executor; returns the ``bench --json`` object.

    ``options`` / ``inputs``: as for :func:`~jetson_deploy.runtime.pipeline.run_pipeline`, and flat
    keywords named after their fields override them (``backend=``, ``memory=``, ``sync_debug=``...).
    """
    from .media import open_sink, open_source
    from .runtime.backends import create_engine
    from .runtime.pipeline import Pipeline, load_bundle, make_executor

    opts, ins, _ = split_options(options, inputs, **flat)
    b = load_bundle(bundle, verify=opts.verify)
    spec = b.spec
    eng = engine if engine is not None else create_engine(b, backend=opts.backend, device=opts.device,
                                                          **opts.engine_options)
    eng.activate()
    ex = None
    try:
        ex = make_executor(eng, spec, memory=opts.memory, depth=opts.depth, graph=opts.cuda_graph, topk=opts.topk,
                           **opts.executor_options)

        def pipeline_run(n: int, debug: "Optional[str]") -> Any:
            src = open_source(source, **ins.options)
            pipe = Pipeline(eng, spec, src, [open_sink("null://")], ex, options=replace(opts, sync_debug=debug),
                            inputs=ins, outputs=OutputOptions(metrics_interval=0), labels=b.labels)
            try:
                return pipe.run(max_frames=n)
            finally:
                src.close()

        # the warm-up pipeline run also sets the executor up for the source's frame size
        pipeline_run(max(warmup, 2 * opts.depth), None)
        e1 = engine_only(ex, iterations, warmup=warmup)
        m1 = engine_only(ex, iterations, warmup=warmup, model_only=True)
        p = pipeline_run(iterations, opts.sync_debug)
        e2 = engine_only(ex, iterations, warmup=warmup)
        m2 = engine_only(ex, iterations, warmup=warmup, model_only=True)
    finally:
        if ex is not None:
            ex.close()
        eng.deactivate()
    res = _report(b, bundle, eng, ex, source, iterations, opts.sync_debug, (e1, e2), p)
    m_best = m1 if m1["fps"] >= m2["fps"] else m2
    res["model_fps"] = m_best["fps"]
    res["ratio_model"] = round(p.fps / m_best["fps"], 4) if m_best["fps"] else 0.0
    res["model_only"] = {"fps": m_best["fps"], "runs_fps": [m1["fps"], m2["fps"]], "latency_ms": m_best["latency_ms"]}
    return res


def _report(b: Any, bundle: Any, eng: Any, ex: Any, source: str, iterations: int, sync_debug: "Optional[str]",
            engine_runs: "Any", p: Any) -> "Dict[str, Any]":
    """The ``bench --json`` object; the better engine-only run is the reference."""
    e1, e2 = engine_runs
    e_best = e1 if e1["fps"] >= e2["fps"] else e2
    engine_fps = e_best["fps"]
    res: "Dict[str, Any]" = {
        "backend": eng.backend,
        "executor": ex.describe(),
        "source": source,
        "iterations": iterations,
        "engine_fps": engine_fps,
        "pipeline_fps": round(p.fps, 3),
        "ratio": round(p.fps / engine_fps, 4) if engine_fps else 0.0,
        "latency_ms": p.latency_ms,
        "engine": {"fps": engine_fps, "runs_fps": [e1["fps"], e2["fps"]], "latency_ms": e_best["latency_ms"]},
        "pipeline": {"fps": round(p.fps, 3), "frames": p.frames, "latency_ms": p.latency_ms, "dropped": p.dropped,
                     "host_ms_per_frame": round(p.host_ms_per_frame, 4), "seconds": round(p.seconds, 4),
                     "wait_ms_per_frame": p.wait_ms_per_frame,
                     "capture_cpu_ms_per_frame": p.capture_cpu_ms_per_frame},
        "bundle": str(b.source),
    }
    if p.syncs is not None:
        res["syncs"] = p.syncs
    if sync_debug:
        res["sync_debug"] = sync_debug
    return res
