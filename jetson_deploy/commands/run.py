"""``jetson-deploy run`` and ``jetson-deploy bench``: thin wrappers over the runtime API."""
import json

import click

from ..vocab import GPU_PREPROCESS, MEMORY
from ._options import FiniteFloat, backend_option, device_option, global_quiet, json_option, key_option, nonempty, warn_renamed


def _sources(ctx, param, value):
    for v in value:
        nonempty(ctx, param, v)
    return list(value)


def _unique_sinks(ctx, param, value):
    if len(set(value)) != len(value):
        raise click.BadParameter("the same sink is given twice: {}".format(", ".join(sorted(set(v for v in value if value.count(v) > 1)))), ctx, param)
    for v in value:
        nonempty(ctx, param, v)
    return value


def _threads_option():
    return click.option("--threads", type=click.IntRange(1, 512), default=None,
                        help="ONNX Runtime intra-op threads (default: all CPUs but two, for capture and output).")


def _batch_timeout_option():
    return click.option("--batch-timeout", type=FiniteFloat(0.0, 10.0), default=None,
                        help="Several sources: the longest a batch waits (seconds) for sources without a frame ready "
                             "[default: one frame interval of the slowest live source, else 0.03].")


def _memory_option():
    return click.option("--memory", type=click.Choice(MEMORY), default="auto", show_default=True,
                        help="Frame/IO memory: auto (mapped zero-copy on Jetson, pinned on discrete GPUs, numpy on CPU), "
                             "numpy, torch (pinned, torch CUDA backend), pycuda[-pinned|-mapped].")


def _compile_option():
    return click.option("--compile/--no-compile", "compile_", default=None,
                        help="torch backend: torch.compile the program at load (first load compiles, about 10 s for a "
                             "ResNet-18; later loads read the engine cache) [default: on CUDA, off on the CPU].")


def _preprocess_option():
    return click.option("--gpu-preprocess", type=click.Choice(GPU_PREPROCESS), default="auto", show_default=True,
                        help="GPU paths: the fused preprocessing kernel where it compiles (auto), the kernel or an "
                             "error (kernel), torch operators (torch-ops, torch path), numpy on the capture thread "
                             "(host, pycuda path).")


@click.command()
@click.argument("bundle", type=click.Path(exists=True))
@click.option("--source", "source", required=True, multiple=True, callback=_sources,
              help="csi://0, v4l2:///dev/video0, rtsp://..., gst://<pipeline>, a video file, an image folder, or synthetic://WxH[@fps]; "
                   "repeatable: several sources are batched into one engine call (a bundle with batch >= N or --dynamic-batch).")
@click.option("--sink", "sinks", multiple=True, default=["null://"], show_default=True, callback=_unique_sinks,
              help="display://0, a video file (.mp4/.avi, annotated), a .jsonl file (one object a frame), "
                   "http://HOST:PORT/ (browser live view; a token beyond loopback), rtsp://@:PORT/NAME (H.264 RTSP server) "
                   "or null://; repeatable; K=URI receives source K only (e.g. --sink 0=cam0.mp4), a plain URI every source.")
@backend_option()
@device_option()
@_memory_option()
@_preprocess_option()
@_compile_option()
@_threads_option()
@click.option("--max-frames", type=click.IntRange(1, None), default=None, help="Stop after N processed frames.")
@click.option("--depth", type=click.IntRange(1, 16), default=3, show_default=True, help="Frames in flight on the GPU (ring size).")
@click.option("--cuda-graph/--no-cuda-graph", default=True, show_default=True, help="Capture the per-frame GPU work in a CUDA graph where the backend allows.")
@click.option("--queue", "queue_size", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Capture queue length; live sources drop the oldest frame when it is full.")
@click.option("--top-k", "topk", type=click.IntRange(1, 100), default=None, help="Classes reported per frame (classify)  [default: 5]")
@click.option("--topk", "topk_old", type=click.IntRange(1, 100), default=None, hidden=True, help="Old spelling of --top-k (goes in 0.3.0).")
@click.option("--interval", type=FiniteFloat(0.0, 86400.0), default=5.0, show_default=True, help="Seconds between metrics lines on stderr (0: none).")
@click.option("--stall-timeout", type=FiniteFloat(0.001, 86400.0), default=10.0, show_default=True,
              help="End the run when the source delivers nothing for this many seconds.")
@click.option("--sync-debug", type=click.Choice(["warn", "error"]), default=None,
              help="torch CUDA path: run the loop under torch.cuda.set_sync_debug_mode (error: any host sync raises).")
@_batch_timeout_option()
@click.option("--stop-on-first-end", is_flag=True, default=False,
              help="Several sources: end the run when the first source ends (default: each ends alone, the others go on).")
@key_option()
@json_option()
def run(bundle, source, sinks, backend, device, memory, gpu_preprocess, compile_, threads, max_frames, depth, cuda_graph,
        queue_size, topk, topk_old, interval, stall_timeout, sync_debug, batch_timeout, stop_on_first_end, key, as_json):
    """Run BUNDLE on a live source (camera, RTSP, video, images, synthetic) into sinks.

    The bundle's checksums are verified before anything is loaded.  Metrics (FPS, latency
    p50/p95/p99, dropped frames) go to stderr every --interval seconds, and a summary at the end
    (one JSON object on stdout with --json).

    \b
    Sources: csi://N, v4l2:///dev/videoN, rtsp://HOST/PATH, gst://PIPELINE...appsink, a video file,
    an image folder or file, synthetic://WxH[@fps].
    Sinks: display://0, a video file, a .jsonl file, http://HOST:PORT/, rtsp://@:PORT/NAME, null://.
    \b
    Examples:
      jetson-deploy run shapes-1.0.0 --source synthetic://1280x720@30 --sink annotated.mp4 --max-frames 300
      jetson-deploy run shapes-1.0.0 --source csi://0 --sink out.jsonl --sink http://@:8080/
      jetson-deploy run shapes-1.0.0 --source csi://0 --source csi://1 --sink 0=cam0.jsonl --sink 1=cam1.jsonl
    """
    from ..bundle.sign import open_trusted
    from ..runtime.options import OutputOptions, RunOptions, SourceOptions
    from ..runtime.session import run_pipeline

    if topk_old is not None:
        warn_renamed("run", "--topk", "--top-k")
        topk = topk if topk is not None else topk_old
    topk = 5 if topk is None else topk
    options = RunOptions(backend=backend, device=device, memory=memory, gpu_preprocess=gpu_preprocess, depth=depth,
                         cuda_graph=cuda_graph, topk=topk, max_frames=max_frames, sync_debug=sync_debug, threads=threads,
                         compile=compile_)
    inputs = SourceOptions(queue_size=queue_size, stall_timeout=stall_timeout, batch_timeout=batch_timeout,
                           stop_on_first_end=stop_on_first_end)
    with open_trusted(bundle, key) as b:  # verified (and signature-checked) once; the run uses this object
        summary = run_pipeline(b, source, list(sinks), options=options, inputs=inputs,
                               outputs=OutputOptions(metrics_interval=interval))
    d = summary.to_dict()
    if as_json:
        click.echo(json.dumps(d, sort_keys=True))
        return
    lat = d["latency_ms"]
    click.echo("{} frames in {:.2f} s: {:.1f} FPS | latency p50 {} ms p95 {} ms p99 {} ms | dropped {} | backend {} ({})".format(
        d["frames"], d["seconds"], d["fps"], lat.get("p50"), lat.get("p95"), lat.get("p99"), d["dropped"], d["backend"],
        d["executor"].get("executor")))
    for row in d.get("sources") or []:
        click.echo("  source {} ({}): {} frames, {:.1f} FPS | latency p50 {} ms | dropped {} | ended: {}".format(
            row["index"], row["source"], row["frames"], row["fps"], row["latency_ms"].get("p50"), row["dropped"],
            row["end_reason"] or "-"))
    if d.get("accuracy") is not None:
        click.echo("accuracy against the source's ground truth: {:.3f}".format(d["accuracy"]))
    if d["end_reason"] and not global_quiet():
        click.echo("ended: {}".format(d["end_reason"]), err=True)


@click.command()
@click.argument("bundle", type=click.Path(exists=True))
@backend_option()
@device_option()
@_memory_option()
@_preprocess_option()
@_compile_option()
@_threads_option()
@click.option("--iterations", type=click.IntRange(10, None), default=300, show_default=True,
              help="Timed iterations for each of the engine-only and pipeline runs.")
@click.option("--warmup", type=click.IntRange(0, None), default=30, show_default=True, help="Untimed iterations first.")
@click.option("--source", "source", multiple=True, default=["synthetic://1280x720"], show_default=True, callback=_sources,
              help="Source for the pipeline run (unpaced synthetic frames by default); repeatable: N sources are "
                   "batched (batched model, engine and pipeline, against one batch-1 pipeline of the same model).")
@click.option("--depth", type=click.IntRange(1, 16), default=3, show_default=True, help="Frames in flight (ring size).")
@click.option("--cuda-graph/--no-cuda-graph", default=True, show_default=True, help="Use CUDA graphs where the backend allows.")
@_batch_timeout_option()
@click.option("--repeat", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Pipeline runs; the median is reported with the spread (warned about above 10%).")
@click.option("--load-times", is_flag=True, default=False,
              help="torch backend with --compile: also time the first load cold (empty caches), warm (the "
                   "engine cache filled by it) and from its portable artifacts alone, each in a fresh process.")
@key_option()
@json_option()
def bench(bundle, backend, device, memory, gpu_preprocess, compile_, threads, iterations, warmup, source, depth,
          cuda_graph, batch_timeout, repeat, load_times, key, as_json):
    """Benchmark BUNDLE: engine-only (device buffers, no copies) and the full pipeline
    (source -> preprocess -> copies -> engine -> postprocess -> null sink) side by side in one run,
    with their ratio (pipeline / engine); the pipeline runs --repeat times (median and spread).

    \b
    Sources: synthetic://WxH[@fps] (default, unpaced), csi://N, v4l2:///dev/videoN, rtsp://HOST/PATH,
    gst://PIPELINE...appsink, a video file, an image folder.
    \b
    Examples:
      jetson-deploy bench shapes-1.0.0
      jetson-deploy bench r18-dyn16 --source synthetic://1280x720 --source synthetic://1280x720?seed=2 --json
      jetson-deploy bench r18-fp16 --memory pycuda-pinned --iterations 1000 --load-times
    """
    from ..bench import run_bench
    from ..bundle.sign import open_trusted
    from ..runtime.options import RunOptions, SourceOptions

    options = RunOptions(backend=backend, device=device, memory=memory, gpu_preprocess=gpu_preprocess, depth=depth,
                         cuda_graph=cuda_graph, threads=threads, compile=compile_)
    with open_trusted(bundle, key) as b:
        res = run_bench(b, iterations=iterations, warmup=warmup, source=source, options=options,
                        inputs=SourceOptions(batch_timeout=batch_timeout), load_times=load_times, repeat=repeat)
    if as_json:
        click.echo(json.dumps(res, sort_keys=True))
        return
    e, p = res["engine"], res["pipeline"]
    click.echo("backend {} ({}), {} iterations".format(res["backend"], res["executor"].get("executor"), iterations))
    click.echo("engine-only : {:9.1f} FPS | latency p50 {} ms p95 {} ms p99 {} ms".format(
        res["engine_fps"], e["latency_ms"]["p50"], e["latency_ms"]["p95"], e["latency_ms"]["p99"]))
    click.echo("pipeline    : {:9.1f} FPS | latency p50 {} ms p95 {} ms p99 {} ms | host {:.3f} ms/frame".format(
        res["pipeline_fps"], p["latency_ms"]["p50"], p["latency_ms"]["p95"], p["latency_ms"]["p99"], p["host_ms_per_frame"]))
    if "model_fps" in res:
        click.echo("model-only  : {:9.1f} FPS | latency p50 {} ms (the network alone: no preprocessing, no copies)".format(
            res["model_fps"], res["model_only"]["latency_ms"]["p50"]))
    if "model_fps_eager" in res:
        click.echo("model eager : {:9.1f} FPS (the same network uncompiled; compiled / eager {:.2f})".format(
            res["model_fps_eager"], res["model_fps"] / res["model_fps_eager"] if res["model_fps_eager"] else 0.0))
    if res.get("load_times"):
        lt = res["load_times"]
        click.echo("first load  : cold {} s, warm {} s (engine cache hit), {} s from the portable artifacts alone".format(
            lt.get("cold_s"), lt.get("warm_s"), lt.get("artifacts_s")))
    click.echo("ratio (pipeline / engine): {:.3f} (median of {} pipeline runs: {}; spread {:.1%})".format(
        res["ratio"], res["repeat"], ", ".join("{:.1f}".format(f) for f in res["pipeline"]["runs_fps"]),
        res["spread"]["pipeline_fps"]))
    if res.get("ratio_model"):
        click.echo("ratio (pipeline / model) : {:.3f}".format(res["ratio_model"]))
    if "single_stream_fps" in res:
        click.echo("per source  : {}".format(", ".join("{:.1f}".format(r["fps"]) for r in res["sources"])))
        click.echo("one batch-1 pipeline: {:9.1f} FPS | total / single: {:.3f}".format(
            res["single_stream_fps"], res["ratio_single"]))
