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

Several sources (``source=[...]``): the engine runs at batch N; ``model_fps`` / ``engine_fps`` are
frames per second of the batched network / engine (calls per second x N), ``pipeline_fps`` the
total of the batched pipeline, ``sources`` its per-source figures, and ``single_stream_fps`` one
batch-1 pipeline of the same model on the first source, measured in the same call
(``ratio_single = pipeline_fps / single_stream_fps``).
"""
import time
from typing import Any, Dict, List, Optional, Tuple

from .runtime.metrics import percentiles
from .runtime.options import OutputOptions, RunOptions, SourceOptions
from .runtime.session import open_io, open_session, opened_bundle


def engine_only(executor: Any, iterations: int, warmup: int = 10,
                latency_iterations: "Optional[int]" = None, model_only: bool = False,
                step: Any = None) -> "Dict[str, Any]":
    """Throughput (back-to-back, one sync at the end) and per-call latency (sync after each).

    ``model_only``: the bare network (``executor.model_only_step``) instead of the engine step;
    ``step``: another zero-argument step (the uncompiled network)."""
    if step is None:
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


def _side_by_side(session: Any, sources: "List[str]", inputs: "Optional[SourceOptions]", iterations: int, warmup: int,
                  warm_frames: int, frames: int) -> "Tuple[Any, Any, Any, Any, Any]":
    """Engine-only and bare-model runs before and after the pipeline run, in one session, so a
    ratio compares like with like (the better of the two engine/model runs is the reference).
    The warm-up pipeline run also sets the executor up for the source's frame size."""
    ex = session.executor
    _pipeline_run(session, sources, inputs, warm_frames)
    e1 = engine_only(ex, iterations, warmup=warmup)
    m1 = engine_only(ex, iterations, warmup=warmup, model_only=True)
    p = _pipeline_run(session, sources, inputs, frames)
    e2 = engine_only(ex, iterations, warmup=warmup)
    m2 = engine_only(ex, iterations, warmup=warmup, model_only=True)
    return e1, e2, m1, m2, p


def run_bench(bundle: Any, iterations: int = 300, warmup: int = 30, source: Any = "synthetic://1280x720", *,
              options: "Optional[RunOptions]" = None, inputs: "Optional[SourceOptions]" = None,
              engine: Any = None, load_times: bool = False) -> "Dict[str, Any]":
    """Both measurements on one session (engine and executor); returns the ``bench --json`` object.

    ``bundle``: an opened Bundle (``open_trusted``) or a path; ``options`` / ``inputs``: as for
    :func:`~jetson_deploy.runtime.session.run_pipeline`.  ``source``: a URI, or a list of several
    (batched: :func:`run_multi_bench`).  ``load_times``: also time a compiled torch engine's first load
    cold and warm, each in a fresh process (:func:`~jetson_deploy.runtime.torch_compile.measure_loads`).
    """
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    if len(sources) > 1:
        res = run_multi_bench(bundle, sources, iterations, warmup, options=options, inputs=inputs, engine=engine)
    else:
        opts = options or RunOptions()
        with open_session(bundle, opts, sources=1, engine=engine) as session:
            e1, e2, m1, m2, p = _side_by_side(session, sources, inputs, iterations, warmup,
                                              max(warmup, 2 * opts.depth), iterations)
            res = _report(session, sources[0], iterations, opts.sync_debug, (e1, e2), p)
            _add_eager(res, session, iterations, warmup, 1)
        _add_model(res, m1, m2, p)
    if load_times:
        res["load_times"] = _load_times(bundle, options or RunOptions(), len(sources))
    return res


def _add_eager(res: "Dict[str, Any]", session: Any, iterations: int, warmup: int, rows: int) -> None:
    """A compiled torch engine: the same network uncompiled (``model_fps_eager``) and the compile record."""
    ex, eng = session.executor, session.engine
    compiled = getattr(eng, "compiled", None)
    res["engine_info"] = eng.describe() if hasattr(eng, "describe") else {}
    if compiled is None or compiled.how == "eager" or not hasattr(ex, "eager_model_step"):
        return
    r = engine_only(ex, iterations, warmup=warmup, step=ex.eager_model_step)
    res["model_fps_eager"] = round(r["fps"] * rows, 3)


def _load_times(bundle: Any, opts: "RunOptions", sources: int) -> "Dict[str, Any]":
    from .runtime.torch_compile import measure_loads

    path = getattr(bundle, "source", bundle)
    return measure_loads(str(path), opts, sources)


def _pipeline_run(session: Any, sources: "List[str]", inputs: "Optional[SourceOptions]", frames: int) -> Any:
    """One pipeline run of ``frames`` on fresh sources into ``null://``, on the session's executor."""
    with open_io(sources, ["null://"]) as (srcs, sinks, bindings):
        return session.run(srcs, sinks, bindings, inputs=inputs, outputs=OutputOptions(metrics_interval=0),
                           max_frames=frames)


def _add_model(res: "Dict[str, Any]", m1: Any, m2: Any, p: Any) -> None:
    """The bare-model figures (the better of the two runs) and the pipeline's ratio to them."""
    m_best = m1 if m1["fps"] >= m2["fps"] else m2
    res["model_fps"] = m_best["fps"]
    res["ratio_model"] = round(p.fps / m_best["fps"], 4) if m_best["fps"] else 0.0
    res["model_only"] = {"fps": m_best["fps"], "runs_fps": [m1["fps"], m2["fps"]], "latency_ms": m_best["latency_ms"]}


def _report(session: Any, source: Any, iterations: int, sync_debug: "Optional[str]", engine_runs: "Any",
            p: Any) -> "Dict[str, Any]":
    """The ``bench --json`` object; the better engine-only run is the reference."""
    e1, e2 = engine_runs
    e_best = e1 if e1["fps"] >= e2["fps"] else e2
    engine_fps = e_best["fps"]
    res: "Dict[str, Any]" = {
        "backend": session.backend,
        "backend_reason": session.why,
        "executor": p.executor or session.executor.describe(),  # as the pipeline ran it (close() releases graphs)
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
        "bundle": str(session.bundle.source),
    }
    if p.syncs is not None:
        res["syncs"] = p.syncs
    if sync_debug:
        res["sync_debug"] = sync_debug
    return res


def run_multi_bench(bundle: Any, sources: "List[str]", iterations: int = 300, warmup: int = 30, *,
                    options: "Optional[RunOptions]" = None, inputs: "Optional[SourceOptions]" = None,
                    engine: Any = None) -> "Dict[str, Any]":
    """N sources through one session (batch N, or chunks of a smaller fixed batch): the batched
    model, engine and pipeline side by side, then one batch-1 pipeline of the same model (a second
    session, after the first is released) for the ratio."""
    opts = options or RunOptions()
    with opened_bundle(bundle, opts.verify) as b:
        return _multi_bench(b, sources, iterations, warmup, opts, inputs, engine)


def _multi_bench(bundle: Any, sources: "List[str]", iterations: int, warmup: int, opts: "RunOptions",
                 inputs: "Optional[SourceOptions]", engine: Any) -> "Dict[str, Any]":
    from .runtime.backends import bundle_dynamic_batch

    n = len(sources)
    with open_session(bundle, opts, sources=n, engine=engine) as session:
        e1, e2, m1, m2, p = _side_by_side(session, sources, inputs, iterations, warmup,
                                          max(warmup, 2 * opts.depth) * n, iterations * n)
        rows = session.executor.batch
        e1, e2, m1, m2 = (_per_frame(r, rows) for r in (e1, e2, m1, m2))
        res = _report(session, ", ".join(sources), iterations, opts.sync_debug, (e1, e2), p)
        _add_eager(res, session, iterations, warmup, rows)
        res.update(batch=session.batch, dynamic_batch=session.dynamic, chunks=session.chunks, sources=p.sources,
                   source=list(sources))
        dynamic = session.dynamic or bundle_dynamic_batch(bundle)
        fixed = session.batch
    _add_model(res, m1, m2, p)
    if not dynamic:
        res["single_stream_note"] = ("{} has a fixed batch {}: no batch-1 engine to compare with (convert with "
                                     "--dynamic-batch)".format(bundle.source, fixed))
        return res
    single = run_bench(bundle, iterations=iterations * n, warmup=warmup, source=sources[0], options=opts,
                       inputs=inputs)
    res["single_stream_fps"] = single["pipeline_fps"]
    res["ratio_single"] = round(p.fps / single["pipeline_fps"], 4) if single["pipeline_fps"] else 0.0
    res["single_stream"] = {k: single.get(k) for k in ("model_fps", "engine_fps", "pipeline_fps", "latency_ms", "executor")}
    return res


def _per_frame(run: "Dict[str, Any]", rows: int) -> "Dict[str, Any]":
    """An engine-only run in frames per second (``rows`` frames per call); latency stays per call."""
    out = dict(run)
    out["fps"] = round(run["fps"] * rows, 3)
    return out
