#!/usr/bin/env python3
"""What torch.compile buys the torch path, and what a cached build costs to load (issue #30 probe).

Runs in one process per step so "cold" and "warm" are honest: a fresh inductor cache directory,
a compile, ``torch.compiler.save_cache_artifacts()`` written to a file; then a second process
with another fresh cache directory that loads those artifacts first and compiles again.

    python scripts/bench_torch_compile.py --out DIR [--model resnet18|demo] [--precision fp16|fp32]
                                          [--batch 1] [--dynamic] [--iterations 1000]

Prints one JSON line per step (eager and compiled FPS in CUDA graphs, first-call seconds, output
difference, recompiles).  Needs a CUDA GPU and torch >= 2.6.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _model(name: str):  # type: ignore[no-untyped-def]
    if name == "demo":
        from jetson_deploy.demo import load_model

        return load_model(), (1, 3, 64, 64)
    sys.path.insert(0, str(ROOT / "scripts"))
    from resnet18_plain import resnet18  # type: ignore

    return resnet18(), (1, 3, 224, 224)


def _graph_fps(torch, fn, x, iterations: int) -> float:  # type: ignore[no-untyped-def]
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        for _ in range(5):
            fn(x)
    s.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=s, capture_error_mode="thread_local"):
        fn(x)
    with torch.cuda.stream(s):
        for _ in range(20):
            g.replay()
        s.synchronize()
        t0 = time.perf_counter()
        for _ in range(iterations):
            g.replay()
        s.synchronize()
    return iterations * x.shape[0] / (time.perf_counter() - t0)


def _aoti_step(torch, args, model, x, out: dict) -> dict:  # type: ignore[no-untyped-def]
    """AOTInductor: export + compile into a package (cold), then load it (cold and warm) and run."""
    pkg = args.artifacts + ".aoti.pt2"
    with torch.inference_mode():
        eager = model(x)
        if args.step == "cold":
            out["eager_fps"] = round(_graph_fps(torch, model, x, args.iterations), 1)
            t0 = time.perf_counter()
            dyn = ({0: torch.export.Dim("batch", min=1, max=8)},) if args.dynamic else None
            ep = torch.export.export(model, (x,), dynamic_shapes=dyn)
            torch._inductor.aoti_compile_and_package(ep, package_path=pkg)
            out["compile_s"] = round(time.perf_counter() - t0, 3)
            out["package_bytes"] = os.path.getsize(pkg)
        t0 = time.perf_counter()
        runner = torch._inductor.aoti_load_package(pkg)
        out["load_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        y = runner(x)
        torch.cuda.synchronize()
        out["first_call_s"] = round(time.perf_counter() - t0, 3)
        y = y[0] if isinstance(y, (list, tuple)) else y
        out["max_abs_diff_vs_eager"] = float((y.float() - eager.float()).abs().max())
        try:
            out["compiled_fps"] = round(_graph_fps(torch, runner, x, args.iterations), 1)
        except Exception as exc:  # noqa: BLE001
            out["graph_error"] = str(exc).splitlines()[0][:200]
    return out


def step(args: argparse.Namespace) -> dict:
    import torch

    model, shape = _model(args.model)
    shape = (args.batch,) + shape[1:]
    half = args.precision == "fp16"
    model = model.eval().cuda()
    dtype = torch.float16 if half else torch.float32
    model = model.to(dtype=dtype, memory_format=torch.channels_last)
    x = torch.randn(shape, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    import torch._dynamo as dynamo
    import torch._inductor.config as icfg

    icfg.freezing = args.mode == "compile-freeze"
    out: dict = {"step": args.step, "mode": args.mode, "model": args.model, "precision": args.precision,
                 "batch": args.batch, "torch": torch.__version__, "gpu": torch.cuda.get_device_name()}
    if args.mode == "aoti":
        return _aoti_step(torch, args, model, x, out)
    if args.step == "warm" and args.artifacts and os.path.exists(args.artifacts):
        t0 = time.perf_counter()
        torch.compiler.load_cache_artifacts(Path(args.artifacts).read_bytes())
        out["load_artifacts_s"] = round(time.perf_counter() - t0, 3)
    with torch.inference_mode():
        eager = model(x)
        if args.step == "cold":
            out["eager_fps"] = round(_graph_fps(torch, model, x, args.iterations), 1)
        dynamo.reset()
        compiled = torch.compile(model, fullgraph=True, dynamic=True if args.dynamic else None)
        if args.dynamic:
            torch._dynamo.mark_dynamic(x, 0, min=1, max=8)
        t0 = time.perf_counter()
        y = compiled(x)
        torch.cuda.synchronize()
        out["first_call_s"] = round(time.perf_counter() - t0, 3)
        out["max_abs_diff_vs_eager"] = float((y.float() - eager.float()).abs().max())
        out["compiled_fps"] = round(_graph_fps(torch, compiled, x, args.iterations), 1)
        if args.dynamic:
            for n in (1, 3, 8):
                compiled(torch.randn((n,) + shape[1:], device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last))
        counters = dict(torch._dynamo.utils.counters.get("stats", {}))
        out["dynamo_stats"] = {k: v for k, v in counters.items() if isinstance(v, int)}
    if args.step == "cold" and args.artifacts:
        t0 = time.perf_counter()
        saved = torch.compiler.save_cache_artifacts()
        if saved is not None:
            blob, info = saved
            Path(args.artifacts).write_bytes(blob)
            out["artifacts_bytes"] = len(blob)
        out["save_artifacts_s"] = round(time.perf_counter() - t0, 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--model", default="resnet18", choices=["resnet18", "demo"])
    ap.add_argument("--precision", default="fp16", choices=["fp16", "fp32"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dynamic", action="store_true")
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--mode", default="compile", choices=["compile", "compile-freeze", "aoti"],
                    help="torch.compile (portable cache artifacts), the same with inductor freezing, or AOTInductor")
    ap.add_argument("--step", choices=["cold", "warm"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--artifacts", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        print(json.dumps(step(args)), flush=True)
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        art = os.path.join(tmp, "artifacts.bin")
        for name in ("cold", "warm"):
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=os.path.join(tmp, "inductor-" + name))
            cmd = [sys.executable, __file__, "--step", name, "--artifacts", art, "--model", args.model,
                   "--precision", args.precision, "--batch", str(args.batch), "--iterations", str(args.iterations),
                   "--mode", args.mode]
            if args.dynamic:
                cmd.append("--dynamic")
            t0 = time.perf_counter()
            r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, universal_newlines=True)
            line = (r.stdout.strip().splitlines() or ["{}"])[-1]
            row = json.loads(line) if r.returncode == 0 else {"step": name, "error": r.returncode}
            row["process_s"] = round(time.perf_counter() - t0, 2)
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out:
        Path(args.out).write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
