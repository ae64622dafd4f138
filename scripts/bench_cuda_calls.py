"""Host cost of each CUDA call the pycuda frame path makes per frame (GPU machine; pycuda + torch).

The pycuda path with a small model is bound by the host, not the GPU: this prints, per call, the
microseconds the *host* spends issuing it (the GPU work is tiny and synchronised only every few
hundred calls, outside the timing), so the loop's budget can be spent where it pays.

    python scripts/bench_cuda_calls.py [--n 20000] [--json out.json]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timeit(fn, n, sync=None, every=256):  # type: ignore[no-untyped-def]
    """Mean host microseconds per call; ``sync`` (untimed) every ``every`` calls keeps queues short."""
    for _ in range(64):
        fn()
    if sync:
        sync()
    total = 0.0
    done = 0
    while done < n:
        k = min(every, n - done)
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        total += time.perf_counter() - t0
        done += k
        if sync:
            sync()
    return round(1e6 * total / n, 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    n = args.n

    import torch

    from jetson_deploy.runtime.cuda_graph import CudaGraph
    from jetson_deploy.runtime.gpu_preprocess import kernel_spec, launch_pycuda, make_plan, pycuda_kernel
    from jetson_deploy.runtime.memory import make_context
    from jetson_deploy.spec import load_spec

    torch.zeros(1, device="cuda")  # torch's primary context first; pycuda retains the same one
    ctx = make_context()
    import pycuda.driver as cuda

    res = {}
    try:
        s_copy, s_comp = cuda.Stream(), cuda.Stream()
        host = cuda.pagelocked_empty((720, 1280, 3), np.uint8)
        small = cuda.pagelocked_empty((16,), np.float32)
        dev = cuda.mem_alloc(host.nbytes)
        dsmall = cuda.mem_alloc(64)
        ev = cuda.Event()
        sync = s_comp.synchronize

        def sync_all() -> None:
            s_copy.synchronize()
            s_comp.synchronize()

        res["memcpy_htod_async 720p"] = timeit(lambda: cuda.memcpy_htod_async(dev, host, s_copy), n // 10, sync_all, 16)
        res["memcpy_htod_async 64 B"] = timeit(lambda: cuda.memcpy_htod_async(dsmall, small, s_copy), n, sync_all)
        res["memcpy_dtoh_async 64 B"] = timeit(lambda: cuda.memcpy_dtoh_async(small, dsmall, s_comp), n, sync)
        res["event.record"] = timeit(lambda: ev.record(s_comp), n, sync)
        res["stream.wait_for_event"] = timeit(lambda: s_comp.wait_for_event(ev), n, sync)
        res["event.query"] = timeit(ev.query, n)
        spec = load_spec(str(Path(__file__).resolve().parents[1] / "jetson_deploy" / "demo" / "spec.json"))
        ks = kernel_spec(spec, "float32")
        fn = pycuda_kernel(ks, cuda=cuda)
        plan = make_plan(spec, (720, 1280, 3), ks)
        din = cuda.mem_alloc(4 * 3 * 64 * 64)
        res["kernel prepared_async_call"] = timeit(lambda: launch_pycuda(fn, plan, int(dev), int(din), s_comp), n, sync)
        res["int(DeviceAllocation)"] = timeit(lambda: int(dev), n)

        # a tiny torch CUDA graph on pycuda's stream, as the engine stand-in captures it
        ts = torch.cuda.ExternalStream(s_comp.handle)
        x = torch.zeros(16, device="cuda")
        with torch.cuda.stream(ts):
            x.add_(1)
        ts.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=ts, capture_error_mode="thread_local"):
            x.add_(1)
        cg = CudaGraph(g, ts)
        res["CudaGraph.replay (stream context + replay)"] = timeit(cg.replay, n, sync)

        def ctx_only() -> None:
            with torch.cuda.stream(ts):
                pass

        res["torch.cuda.stream context alone"] = timeit(ctx_only, n)
        torch.cuda.set_stream(ts)
        res["CUDAGraph.replay, current stream already set"] = timeit(g.replay, n, sync)
        torch.cuda.set_stream(torch.cuda.default_stream())
        res["capabilities"] = {
            "pycuda Stream.begin_capture": hasattr(cuda.Stream, "begin_capture"),
            "pycuda GraphExec": hasattr(cuda, "GraphExec"),
            "torch CUDAGraph.raw_cuda_graph_exec": hasattr(g, "raw_cuda_graph_exec"),
            "torch CUDAGraph.raw_cuda_graph": hasattr(g, "raw_cuda_graph"),
        }
        if hasattr(g, "raw_cuda_graph_exec"):
            import ctypes

            libcuda = ctypes.CDLL("libcuda.so.1")
            launch = libcuda.cuGraphLaunch
            launch.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
            launch.restype = ctypes.c_int
            gexec = int(g.raw_cuda_graph_exec())
            h = int(s_comp.handle)
            res["cuGraphLaunch via ctypes"] = timeit(lambda: launch(gexec, h), n, sync)
        sync_all()
    finally:
        ctx.pop()
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
