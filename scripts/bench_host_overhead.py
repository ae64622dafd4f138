"""The frame loop's host cost per frame, with a GPU that costs nothing.

On a fast GPU (or a small model) the pycuda/TensorRT frame path is bound by Python, not by the
device: every frame costs the loop thread its calls (copy, kernel launch, graph launch, event,
postprocess, sinks) and the capture thread its share of the interpreter.  This script runs the real
:class:`~jetson_deploy.runtime.pipeline.Pipeline` and :class:`PycudaGpuExecutor` over a
``synthetic://`` source with a no-op CUDA stand-in (every copy, launch and event returns at once),
so the figure is the interpreter's alone: the ceiling the pycuda path can reach on this CPU.  On a
Jetson's ARM cores the same ceiling is several times lower, so it is worth keeping small.

    python scripts/bench_host_overhead.py [--frames 20000] [--source synthetic://1280x720] [--sources N]
                                          [--classes C] [--profile]

No GPU, no pycuda, no TensorRT needed.  Prints frames/s, loop-thread and capture-thread CPU per
frame; ``--profile`` adds the loop thread's top functions (cProfile, cumulative).
"""
import argparse
import json
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jetson_deploy.runtime.engine import Engine, TensorInfo  # noqa: E402


def free_cuda() -> "types.ModuleType":
    """A pycuda.driver-shaped module whose every call returns at once (host cost only)."""
    m = types.ModuleType("free_cuda")

    class _Ptr(int):
        def free(self) -> None:
            pass

    class Stream:
        handle = 1

        def wait_for_event(self, event: object) -> None:
            pass

        def synchronize(self) -> None:
            pass

    class Event:
        def record(self, stream: object = None) -> "Event":
            return self

        def query(self) -> bool:
            return True

        def synchronize(self) -> "Event":
            return self

    class Context:
        @staticmethod
        def get_current() -> "Context":
            return Context()

    class host_alloc_flags:
        DEVICEMAP = 2

    def pagelocked_empty(shape, dtype, mem_flags=0):  # type: ignore[no-untyped-def]
        return np.empty(shape, dtype)

    counter = iter(range(1 << 20, 1 << 40, 1 << 24))
    m.Stream, m.Event, m.Context, m.host_alloc_flags = Stream, Event, Context, host_alloc_flags
    m.pagelocked_empty = pagelocked_empty
    m.init = lambda: None
    m.mem_alloc = lambda nbytes: _Ptr(next(counter))
    m.memcpy_htod_async = lambda dest, src, stream=None: None
    m.memcpy_dtoh_async = lambda dest, src, stream=None: None
    return m


class _FreeKernel:
    arg_format = None

    def prepare(self, fmt: str) -> None:
        self.arg_format = fmt

    def prepared_async_call(self, grid, block, stream, *args):  # type: ignore[no-untyped-def]
        pass


class _FreeGraph:
    def replay(self) -> None:
        pass

    def launcher(self):  # type: ignore[no-untyped-def]
        return self.replay


class FreeEngine(Engine):
    """The spec's input at ``batch`` and a (batch, classes) output; enqueue and graphs cost nothing."""

    backend = "tensorrt"
    is_gpu = True

    def __init__(self, spec: object, classes: int, batch: int = 1) -> None:
        super().__init__()
        shape = (batch,) + tuple(spec.shape)[1:]  # type: ignore[attr-defined]
        self.inputs = [TensorInfo(spec.input_name, shape, np.dtype(spec.dtype))]  # type: ignore[attr-defined]
        self.outputs = [TensorInfo("logits", (batch, classes), np.dtype("float32"))]

    def activate_impl(self) -> None:
        pass

    def deactivate_impl(self) -> None:
        pass

    def enqueue_impl(self, buffers, stream):  # type: ignore[no-untyped-def]
        pass

    def capture_graph(self, buffers, stream=None, prologue=None, epilogue=None):  # type: ignore[no-untyped-def]
        for step in (prologue, epilogue):  # queued once at capture, as a real capture does
            if step is not None:
                step()
        return _FreeGraph()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--source", default="synthetic://1280x720")
    ap.add_argument("--sources", type=int, default=1, help="this many copies of --source, batched into one engine")
    ap.add_argument("--classes", type=int, default=0, help="logits per frame (default: the spec's labels)")
    ap.add_argument("--spec", default=str(Path(__file__).resolve().parents[1] / "jetson_deploy" / "demo" / "spec.json"))
    ap.add_argument("--mapped", action="store_true", help="the integrated-GPU (zero-copy) path")
    ap.add_argument("--profile", action="store_true", help="cProfile the loop thread")
    args = ap.parse_args()

    import tempfile

    from jetson_deploy.bundle import BundleWriter
    from jetson_deploy.runtime.executors import pycuda_kernel as gpu_executors
    from jetson_deploy.runtime.options import OutputOptions, RunOptions
    from jetson_deploy.runtime.session import open_io, open_session
    from jetson_deploy.spec import load_spec

    spec = load_spec(args.spec)
    classes = args.classes or max(len(spec.labels), 1)
    gpu_executors.pycuda_kernel = lambda kspec, cuda=None: _FreeKernel()
    eng = FreeEngine(spec, classes, batch=args.sources)
    sources = ["{}{}seed={}".format(args.source, "&" if "?" in args.source else "?", i) for i in range(args.sources)]
    memory = "pycuda-mapped" if args.mapped else "pycuda-pinned"
    with tempfile.TemporaryDirectory() as tmp:
        with BundleWriter(Path(tmp) / "b", name="free", version="1.0.0") as w:  # what a session opens
            w.add_bytes(b"unused", "model.onnx", kind="onnx")
            w.manifest["spec"] = spec.to_dict()
        options = RunOptions(backend="tensorrt", memory=memory, gpu_preprocess="kernel")
        with open_session(Path(tmp) / "b", options, sources=args.sources, engine=eng, cuda=free_cuda()) as session:
            def run(n: int):  # type: ignore[no-untyped-def]
                with open_io(sources, ["null://"]) as io:
                    return session.run(*io, outputs=OutputOptions(metrics_interval=0), max_frames=n)

            run(200)  # warm-up: pools, plans
            prof = None
            if args.profile:
                import cProfile

                prof = cProfile.Profile()
                prof.enable()
            t0 = time.process_time()
            s = run(args.frames)
            cpu = time.process_time() - t0
            if prof is not None:
                prof.disable()
    out = {
        "frames": s.frames, "fps": round(s.fps, 1), "us_per_frame": round(1e6 / s.fps, 2) if s.fps else None,
        "loop_host_us_per_frame": round(1000.0 * s.host_ms_per_frame, 2),
        "capture_cpu_us_per_frame": round(1000.0 * (s.capture_cpu_ms_per_frame or 0.0), 2),
        "process_cpu_us_per_frame": round(1e6 * cpu / max(s.frames, 1), 2),
        "source": args.source, "sources": args.sources, "classes": classes, "mapped": args.mapped,
        "python": sys.version.split()[0],
    }
    print(json.dumps(out))
    if prof is not None:
        import pstats

        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
