#!/usr/bin/env python3
"""Runtime benchmarks: engine-only vs full pipeline, side by side in one process.

Builds two bundles in a work directory -- the embedded demo model (64x64 shapes classifier) and
a ResNet-18-sized plain-torch model (torchvision ``resnet18``, 224x224, random seeded weights) --
each with ``model.pt2`` (torch.export) and ``model.onnx``, then measures on a 1280x720 synthetic
source:

* torch CUDA (if a GPU is there): CUDA graph on/off; the loop under
  ``torch.cuda.set_sync_debug_mode("error")``; Python host time per frame; GPU vs host
  preprocessing agreement on the same frames;
* torch CUDA on an fp16 bundle (half + channels-last), and the preprocessing implementation in use
  (the fused kernel through cupy when importable, else torch ops);
* the pycuda memory path (if pycuda imports): pinned and mapped, with the sync counter, GPU
  preprocessing (the fused kernel through SourceModule) against host preprocessing;
* ONNX Runtime on the CPU.

Every run reports ``engine_fps``, ``pipeline_fps``, ``model_fps`` (the network alone) and the ratios
pipeline/engine and pipeline/model.  One command for a GPU session (docs/runtime.md)::

    python scripts/bench_runtime.py --out $OUT --iterations 2000

Several cameras, one engine (``--sources N``, default 4): a dynamic-batch bundle of the same model
(``model.pt2`` exported with a dynamic batch axis, ``conversion.dynamic_batch``) through
``run_bench(source=[N synthetic 1280x720 sources])`` -- the batched model, the batched engine and
the pipeline at batch N, per-source fps, and one batch-1 pipeline of the same model measured in the
same call (``single_stream_fps``, ``ratio_single``).  Only those rows::

    python scripts/bench_runtime.py --out $OUT --models resnet18 --runs multi-source --iterations 1000

Usage: ``python scripts/bench_runtime.py [--out DIR] [--iterations N] [--models demo,resnet18] [--skip-ort]``.
Writes ``bench_runtime.json`` in ``--out`` (default ``$OUT`` or ``./out``) and prints a table last.
"""
import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from jetson_deploy.runtime.options import OutputOptions, RunOptions  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = {"env": {}, "runs": []}


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def build_bundle(work: Path, name: str, onnx: bool = True, precision: str = "fp32", dynamic_batch: bool = False) -> Path:
    import torch

    from jetson_deploy.bundle import BundleWriter
    from jetson_deploy.spec import ModelSpec

    torch.manual_seed(0)
    if name == "demo":
        from jetson_deploy import demo

        model = demo.load_model().eval()
        spec = demo.load_spec()
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from resnet18_plain import resnet18  # plain torch: torchvision is not always importable

        model = resnet18(num_classes=1000).eval()
        spec = ModelSpec.from_dict({
            "task": "classify",
            "input": {"name": "input", "shape": [1, 3, 224, 224], "dtype": "float32", "color": "rgb"},
            "preprocess": {"resize": [224, 224], "keep_aspect": False, "scale": 1 / 255.0,
                           "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "outputs": ["logits"],
            "labels": ["class{}".format(i) for i in range(1000)],
        })
    x = torch.zeros(spec.shape)
    tmp = work / (name + ("-dyn" if dynamic_batch else "") + "-src")
    tmp.mkdir(parents=True, exist_ok=True)
    if dynamic_batch:  # one program for every batch: batch N for N sources, batch 1 for the comparison
        xb = torch.zeros([2] + list(spec.shape[1:]))
        ep = torch.export.export(model, (xb,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    else:
        ep = torch.export.export(model, (x,))
    torch.export.save(ep, str(tmp / "model.pt2"))
    if onnx:
        torch.onnx.export(model, (x,), str(tmp / "model.onnx"), input_names=["input"], output_names=["logits"],
                          opset_version=17, dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None)
    dest = work / ((name if precision == "fp32" else "{}-{}".format(name, precision)) + ("-dynbatch" if dynamic_batch else ""))
    with BundleWriter(dest, name=name, version="1.0.0") as w:
        w.add_file(tmp / "model.pt2", "model.pt2", kind="exported-program")
        if onnx:
            w.add_file(tmp / "model.onnx", "model.onnx", kind="onnx")
        w.manifest["spec"] = spec.to_dict()
        w.manifest["precision"] = precision
        if dynamic_batch:
            w.manifest["conversion"] = {"dynamic_batch": True}
    return dest


def record(model, what, res):
    row = {"model": model, "what": what}
    row.update(res)
    RESULTS["runs"].append(row)
    log("[{}] {}: {}".format(model, what, json.dumps({k: res.get(k) for k in (
        "engine_fps", "pipeline_fps", "model_fps", "ratio", "ratio_model", "latency_ms", "syncs") if k in res})))
    return row


ONLY = [""]


def attempt(model, what, fn):
    if ONLY[0] and ONLY[0] not in what:
        return None
    t0 = time.perf_counter()
    try:
        res = fn()
        res["wall_s"] = round(time.perf_counter() - t0, 2)
        return record(model, what, res)
    except Exception as exc:  # keep going: one failure must not lose the other figures
        log("[{}] {} FAILED: {}".format(model, what, exc))
        traceback.print_exc()
        return record(model, what, {"error": "{}: {}".format(type(exc).__name__, exc)})


def agreement(bundle, n=64):
    """Torch CUDA (GPU preprocessing) vs ONNX Runtime (host preprocessing) on the same frames."""
    from jetson_deploy.runtime.session import run_pipeline

    src = "synthetic://1280x720?seed=11&pool=32&frames={}".format(n)
    a = run_pipeline(bundle, src, "null://", options=RunOptions(backend="torch", device="cuda"), outputs=OutputOptions(keep_results=True, metrics_interval=0))
    b = run_pipeline(bundle, src, "null://", options=RunOptions(backend="onnxruntime"), outputs=OutputOptions(keep_results=True, metrics_interval=0))
    same = sum(1 for x, y in zip(a.results, b.results) if x["label"] == y["label"])
    dscore = max(abs(x["score"] - y["score"]) for x, y in zip(a.results, b.results))
    return {"frames": len(a.results), "top1_agreement": same / float(len(a.results)), "max_score_diff": round(dscore, 5),
            "accuracy_torch_cuda": a.accuracy, "accuracy_onnxruntime": b.accuracy}


def multi_agreement(bundle, sources, n=48):
    """Per-source results of the batched run against each source run alone (same labels frame by frame)."""
    from jetson_deploy.runtime.session import run_pipeline

    srcs = [s + "&frames={}".format(n) for s in sources]
    multi = run_pipeline(bundle, srcs, "null://", options=RunOptions(backend="torch", device="cuda"), outputs=OutputOptions(keep_results=True, metrics_interval=0))
    same, total = 0, 0
    for k, src in enumerate(srcs):
        alone = run_pipeline(bundle, src, "null://", options=RunOptions(backend="torch", device="cuda"), outputs=OutputOptions(keep_results=True, metrics_interval=0))
        mine = [r for r in multi.results if r.get("stream") == k]
        total += len(alone.results)
        same += sum(1 for a, b in zip(mine, alone.results) if a["label"] == b["label"] and a["index"] == b["index"])
    return {"frames": total, "same_labels_frame_by_frame": same, "identical": same == total and
            len(multi.results) == total}


def live(bundle, n=300):
    """A camera-like paced source: end-to-end latency (capture -> result) and drops at 60 FPS."""
    from jetson_deploy.runtime.session import run_pipeline

    s = run_pipeline(bundle, "synthetic://1280x720@60", "null://", options=RunOptions(backend="torch", device="cuda", max_frames=n), outputs=OutputOptions(metrics_interval=0))
    return {"frames": s.frames, "fps": round(s.fps, 2), "latency_ms": s.latency_ms, "dropped": s.dropped,
            "host_ms_per_frame": round(s.host_ms_per_frame, 4)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "out"))
    ap.add_argument("--work", default="/tmp/jd-bench")
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--models", default="demo,resnet18")
    ap.add_argument("--source", default="synthetic://1280x720")
    ap.add_argument("--skip-ort", action="store_true")
    ap.add_argument("--skip-pycuda", action="store_true")
    ap.add_argument("--runs", default="", help="only runs whose name contains this text")
    ap.add_argument("--sources", type=int, default=4, help="sources of the multi-source rows (batch N)")
    args = ap.parse_args()
    ONLY[0] = args.runs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    import torch

    from jetson_deploy.bench import run_bench

    cuda = torch.cuda.is_available()
    env = RESULTS["env"]
    env.update(python=platform.python_version(), torch=torch.__version__, cuda=cuda, cpus=os.cpu_count(),
               gpu=torch.cuda.get_device_name(0) if cuda else None, source=args.source, iterations=args.iterations)
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        env["onnxruntime"] = None
    try:
        import pycuda

        env["pycuda"] = getattr(pycuda, "VERSION_TEXT", str(getattr(pycuda, "VERSION", "?")))
    except ImportError:
        env["pycuda"] = None
    log("env: " + json.dumps(env))

    for model in [m for m in args.models.split(",") if m]:
        t0 = time.perf_counter()
        bundle = build_bundle(work, model, onnx=not args.skip_ort or cuda)
        log("[{}] bundle built in {:.1f}s".format(model, time.perf_counter() - t0))
        n = args.iterations
        if cuda:
            attempt(model, "torch-cuda graph", lambda: run_bench(bundle, iterations=n, source=args.source, options=RunOptions(backend="torch", device="cuda", memory="torch", cuda_graph=True)))
            attempt(model, "torch-cuda graph, D2H copy-out", lambda: run_bench(bundle, iterations=n, source=args.source, options=RunOptions(backend="torch", device="cuda", memory="torch", cuda_graph=True, mapped_out=False)))
            attempt(model, "torch-cuda graph sync_debug=error", lambda: run_bench(bundle, iterations=n, source=args.source, options=RunOptions(backend="torch", device="cuda", memory="torch", cuda_graph=True, sync_debug="error")))
            attempt(model, "torch-cuda eager", lambda: run_bench(bundle, iterations=n, source=args.source, options=RunOptions(backend="torch", device="cuda", memory="torch", cuda_graph=False)))
            attempt(model, "live synthetic://1280x720@60, 300 frames", lambda: live(bundle))
            attempt(model, "torch-cuda graph, torch-ops preprocessing", lambda: run_bench(bundle, iterations=n, source=args.source, options=RunOptions(backend="torch", device="cuda", memory="torch", cuda_graph=True, gpu_preprocess="torch-ops")))
            attempt(model, "torch-cuda graph, mapped input (zero copy)", lambda: run_bench(bundle, iterations=n, source=args.source, options=RunOptions(backend="torch", device="cuda", memory="torch", cuda_graph=True, mapped_in=True)))
            if not ONLY[0] or ONLY[0] in "multi-source":
                dyn = build_bundle(work, model, onnx=False, dynamic_batch=True)
                srcs = ["synthetic://1280x720?seed={}".format(k + 1) for k in range(args.sources)]
                attempt(model, "multi-source torch-cuda graph x{}".format(args.sources), lambda: run_bench(dyn, iterations=n, source=srcs, options=RunOptions(backend="torch", device="cuda", memory="torch", cuda_graph=True)))
                attempt(model, "multi-source agreement x{}".format(args.sources), lambda: multi_agreement(dyn, srcs))
            fp16 = build_bundle(work, model, onnx=False, precision="fp16")
            attempt(model, "torch-cuda graph fp16 bundle", lambda: run_bench(fp16, iterations=n, source=args.source, options=RunOptions(backend="torch", device="cuda", memory="torch", cuda_graph=True)))
            if env["onnxruntime"]:
                attempt(model, "agreement torch-cuda vs onnxruntime", lambda: agreement(bundle))
            if env["pycuda"] and not args.skip_pycuda:
                from jetson_deploy.runtime.memory import make_context

                ctx = make_context()
                try:
                    for mem, g, gp in (("pycuda-pinned", True, "kernel"), ("pycuda-pinned", True, "host"),
                                       ("pycuda-pinned", False, "kernel"), ("pycuda-mapped", True, "kernel"),
                                       ("pycuda-mapped", False, "host")):
                        attempt(model, "torch engine via {}{} {}".format(
                            mem, " graph" if g else " eager", "gpu-pre" if gp == "kernel" else "host-pre"),
                            lambda: run_bench(bundle, iterations=max(n // 4, 100), source=args.source, options=RunOptions(backend="torch", device="cuda", memory=mem, cuda_graph=g, gpu_preprocess=gp)))
                finally:
                    ctx.pop()
        if env["onnxruntime"] and not args.skip_ort:
            n_ort = max(n // (10 if model == "resnet18" else 2), 100)
            attempt(model, "onnxruntime-cpu", lambda: run_bench(bundle, iterations=n_ort, source=args.source, options=RunOptions(backend="onnxruntime")))
            attempt(model, "onnxruntime-cpu no output thread", lambda: run_bench(bundle, iterations=n_ort, source=args.source, options=RunOptions(backend="onnxruntime", output_thread=False)))
            attempt(model, "onnxruntime-cpu ORT default threads", lambda: run_bench(bundle, iterations=n_ort, source=args.source, options=RunOptions(backend="onnxruntime", threads=0)))

    (out / "bench_runtime.json").write_text(json.dumps(RESULTS, indent=2, sort_keys=True))
    print("\n{:<9} {:<44} {:>11} {:>11} {:>11} {:>7} {:>7} {:>9} {:>9} {:>10}".format(
        "model", "run", "model_fps", "engine_fps", "pipe_fps", "ratio", "r_model", "p50_ms", "host_ms", "loop_syncs"))
    for r in RESULTS["runs"]:
        if "error" in r:
            print("{:<9} {:<44} ERROR {}".format(r["model"], r["what"], r["error"][:80]))
            continue
        if "single_stream_fps" in r:
            print("{:<9} {:<44} batch {} | model {:.1f} engine {:.1f} pipeline {:.1f} FPS (x{:.3f} model) | one batch-1 "
                  "pipeline {:.1f} FPS | total/single {:.3f} | per source {}".format(
                      r["model"], r["what"], r["batch"], r["model_fps"], r["engine_fps"], r["pipeline_fps"],
                      r["ratio_model"], r["single_stream_fps"], r["ratio_single"],
                      [round(x["fps"], 1) for x in r["sources"]]))
            continue
        if "engine_fps" not in r:
            print("{:<9} {:<44} {}".format(r["model"], r["what"], json.dumps({k: v for k, v in r.items() if k not in ("model", "what")})))
            continue
        syncs = r.get("syncs", {}).get("in_loop") if r.get("syncs") else None
        print("{:<9} {:<44} {:>11.1f} {:>11.1f} {:>11.1f} {:>7.3f} {:>7.3f} {:>9.3f} {:>9.4f} {:>10}".format(
            r["model"], r["what"], r.get("model_fps", 0.0), r["engine_fps"], r["pipeline_fps"], r["ratio"],
            r.get("ratio_model", 0.0), r["latency_ms"]["p50"],
            r["pipeline"]["host_ms_per_frame"], json.dumps(syncs) if syncs is not None else "-"))
    print("env: " + json.dumps(env))


if __name__ == "__main__":
    main()
