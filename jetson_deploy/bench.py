"""Engine-only vs full-pipeline throughput and latency, side by side in one process.

* **engine-only**: the engine on inputs that are already where it reads them (device buffers for GPU
  executors: the same CUDA graph, no copies; a preprocessed host array for CPU engines), back to
  back.  Measured before and after every pipeline run; the best run is the reference, so the ratio
  is never flattered by a cold or throttled engine run.
* **pipeline**: the real loop -- source (unpaced ``synthetic://1280x720`` by default) -> capture
  thread -> copies/preprocessing -> engine -> postprocess -> ``null://`` sink.

* **model-only**: the network alone at its input shape -- no preprocessing, no reduction, no copies
  (``model_fps``); ``ratio_model = pipeline_fps / model_fps`` is what the frame path costs against
  the bare network.  On CPU engines the engine-only step already is the bare model.

``ratio = pipeline_fps / engine_fps``.  The pipeline runs ``repeat`` times (default 3); the median run
is reported with every run's FPS and the spread ``(max - min) / median``, warned about above 10%
(three identical runs on a busy 2-core machine once gave ratios of 1.20, 0.64 and 0.94).

Several sources (``source=[...]``): the engine runs at batch N; ``model_fps`` / ``engine_fps`` are
frames per second of the batched network / engine (calls per second x N), ``pipeline_fps`` the
total of the batched pipeline, ``sources`` its per-source figures, and ``single_stream_fps`` one
batch-1 pipeline of the same model on the first source, measured in the same call
(``ratio_single = pipeline_fps / single_stream_fps``).
"""
import logging
import time
from typing import Any, Dict, List, Optional

from .runtime.metrics import percentiles
from .runtime.options import OutputOptions, RunOptions, SourceOptions
from .runtime.session import open_io, open_session, opened_bundle

log = logging.getLogger(__name__)

#: pipeline runs that differ by more than this fraction of their median are warned about
SPREAD_WARN = 0.10


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


class Runs:
    """One bench session's measurements: engine-only and bare-model runs around every pipeline run."""

    def __init__(self) -> None:
        self.engine: "List[Dict[str, Any]]" = []
        self.model: "List[Dict[str, Any]]" = []
        self.pipeline: "List[Any]" = []

    def per_frame(self, rows: int) -> "Runs":
        """Engine and model runs in frames per second (``rows`` frames per call)."""
        self.engine = [_per_frame(r, rows) for r in self.engine]
        self.model = [_per_frame(r, rows) for r in self.model]
        return self

    @property
    def median_pipeline(self) -> Any:
        """The median pipeline run (by FPS): what the report shows."""
        return sorted(self.pipeline, key=lambda p: p.fps)[(len(self.pipeline) - 1) // 2]


def _side_by_side(session: Any, sources: "List[str]", inputs: "Optional[SourceOptions]", iterations: int, warmup: int,
                  warm_frames: int, frames: int, repeat: int = 1) -> "Runs":
    """Engine-only and bare-model runs before and after each of ``repeat`` pipeline runs, in one
    session, so a ratio compares like with like (the best engine/model run is the reference) and
    the spread of the pipeline runs shows how much one figure can be trusted.  The warm-up pipeline
    run also sets the executor up for the source's frame size."""
    ex = session.executor
    runs = Runs()
    _pipeline_run(session, sources, inputs, warm_frames)
    for k in range(max(1, int(repeat)) + 1):
        runs.engine.append(engine_only(ex, iterations, warmup=warmup))
        runs.model.append(engine_only(ex, iterations, warmup=warmup, model_only=True))
        if k < max(1, int(repeat)):
            runs.pipeline.append(_pipeline_run(session, sources, inputs, frames))
    return runs


def run_bench(bundle: Any, iterations: int = 300, warmup: int = 30, source: Any = "synthetic://1280x720", *,
              options: "Optional[RunOptions]" = None, inputs: "Optional[SourceOptions]" = None,
              engine: Any = None, load_times: bool = False, repeat: int = 3) -> "Dict[str, Any]":
    """Both measurements on one session (engine and executor); returns the ``bench --json`` object.

    ``bundle``: an opened Bundle (``open_trusted``) or a path; ``options`` / ``inputs``: as for
    :func:`~jetson_deploy.runtime.session.run_pipeline`.  ``source``: a URI, or a list of several
    (batched: :func:`run_multi_bench`).  ``repeat``: pipeline runs (the median is reported, with the
    spread; more than 10% is warned about).  ``load_times``: also time a compiled torch engine's first
    load cold and warm, each in a fresh process (:func:`~jetson_deploy.runtime.torch_compile.measure_loads`).
    """
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    if len(sources) > 1:
        res = run_multi_bench(bundle, sources, iterations, warmup, options=options, inputs=inputs, engine=engine,
                              repeat=repeat)
    else:
        opts = options or RunOptions()
        with open_session(bundle, opts, sources=1, engine=engine) as session:
            runs = _side_by_side(session, sources, inputs, iterations, warmup, max(warmup, 2 * opts.depth), iterations,
                                 repeat)
            res = _report(session, sources[0], iterations, opts.sync_debug, runs)
            _add_eager(res, session, iterations, warmup, 1)
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


def _best(runs: "List[Dict[str, Any]]") -> "Dict[str, Any]":
    return max(runs, key=lambda r: r["fps"])


def spread(values: "List[float]") -> float:
    """(max - min) / median: 0.10 means the runs disagree by 10% of the figure reported."""
    vals = sorted(values)
    mid = vals[(len(vals) - 1) // 2] if vals else 0.0
    return round((vals[-1] - vals[0]) / mid, 4) if mid else 0.0


def _report(session: Any, source: Any, iterations: int, sync_debug: "Optional[str]", runs: "Runs") -> "Dict[str, Any]":
    """The ``bench --json`` object: the median pipeline run against the best engine and model runs,
    with every run's FPS and the spread."""
    e_best, m_best, p = _best(runs.engine), _best(runs.model), runs.median_pipeline
    engine_fps, model_fps = e_best["fps"], m_best["fps"]
    ratios = [q.fps / engine_fps for q in runs.pipeline] if engine_fps else [0.0]
    res: "Dict[str, Any]" = {
        "backend": session.backend,
        "backend_reason": session.why,
        "executor": p.executor or session.executor.describe(),  # as the pipeline ran it (close() releases graphs)
        "source": source,
        "iterations": iterations,
        "repeat": len(runs.pipeline),
        "engine_fps": engine_fps,
        "pipeline_fps": round(p.fps, 3),
        "ratio": round(p.fps / engine_fps, 4) if engine_fps else 0.0,
        "model_fps": model_fps,
        "ratio_model": round(p.fps / model_fps, 4) if model_fps else 0.0,
        "spread": {"pipeline_fps": spread([q.fps for q in runs.pipeline]), "ratio": spread(ratios)},
        "latency_ms": p.latency_ms,
        "engine": {"fps": engine_fps, "runs_fps": [r["fps"] for r in runs.engine], "latency_ms": e_best["latency_ms"]},
        "model_only": {"fps": model_fps, "runs_fps": [r["fps"] for r in runs.model], "latency_ms": m_best["latency_ms"]},
        "pipeline": {"fps": round(p.fps, 3), "runs_fps": [round(q.fps, 3) for q in runs.pipeline], "frames": p.frames,
                     "latency_ms": p.latency_ms, "dropped": p.dropped,
                     "host_ms_per_frame": round(p.host_ms_per_frame, 4), "seconds": round(p.seconds, 4),
                     "wait_ms_per_frame": p.wait_ms_per_frame,
                     "capture_cpu_ms_per_frame": p.capture_cpu_ms_per_frame},
        "bundle": str(session.bundle.source),
    }
    if res["spread"]["pipeline_fps"] > SPREAD_WARN and len(runs.pipeline) > 1:
        res["spread_warning"] = ("the {} pipeline runs differ by {:.0%} of the median: the machine is busy or "
                                 "throttling; close other work or raise --iterations/--repeat".format(
                                     len(runs.pipeline), res["spread"]["pipeline_fps"]))
        log.warning("%s", res["spread_warning"])
    if p.syncs is not None:
        res["syncs"] = p.syncs
    if sync_debug:
        res["sync_debug"] = sync_debug
    return res


def run_multi_bench(bundle: Any, sources: "List[str]", iterations: int = 300, warmup: int = 30, *,
                    options: "Optional[RunOptions]" = None, inputs: "Optional[SourceOptions]" = None,
                    engine: Any = None, repeat: int = 3) -> "Dict[str, Any]":
    """N sources through one session (batch N, or chunks of a smaller fixed batch): the batched
    model, engine and pipeline side by side, then one batch-1 pipeline of the same model (a second
    session, after the first is released) for the ratio."""
    opts = options or RunOptions()
    with opened_bundle(bundle, opts.verify) as b:
        return _multi_bench(b, sources, iterations, warmup, opts, inputs, engine, repeat)


def _multi_bench(bundle: Any, sources: "List[str]", iterations: int, warmup: int, opts: "RunOptions",
                 inputs: "Optional[SourceOptions]", engine: Any, repeat: int) -> "Dict[str, Any]":
    from .runtime.backends import bundle_dynamic_batch

    n = len(sources)
    with open_session(bundle, opts, sources=n, engine=engine) as session:
        runs = _side_by_side(session, sources, inputs, iterations, warmup, max(warmup, 2 * opts.depth) * n,
                             iterations * n, repeat).per_frame(session.executor.batch)
        res = _report(session, ", ".join(sources), iterations, opts.sync_debug, runs)
        _add_eager(res, session, iterations, warmup, session.executor.batch)
        p = runs.median_pipeline
        res.update(batch=session.batch, dynamic_batch=session.dynamic, chunks=session.chunks, sources=p.sources,
                   source=list(sources))
        dynamic = session.dynamic or bundle_dynamic_batch(bundle)
        fixed = session.batch
    if not dynamic:
        res["single_stream_note"] = ("{} has a fixed batch {}: no batch-1 engine to compare with (convert with "
                                     "--dynamic-batch)".format(bundle.source, fixed))
        return res
    single = run_bench(bundle, iterations=iterations * n, warmup=warmup, source=sources[0], options=opts,
                       inputs=inputs, repeat=repeat)
    res["single_stream_fps"] = single["pipeline_fps"]
    res["ratio_single"] = round(p.fps / single["pipeline_fps"], 4) if single["pipeline_fps"] else 0.0
    res["single_stream"] = {k: single.get(k) for k in ("model_fps", "engine_fps", "pipeline_fps", "latency_ms", "executor")}
    return res


def _per_frame(run: "Dict[str, Any]", rows: int) -> "Dict[str, Any]":
    """An engine-only run in frames per second (``rows`` frames per call); latency stays per call."""
    out = dict(run)
    out["fps"] = round(run["fps"] * rows, 3)
    return out
