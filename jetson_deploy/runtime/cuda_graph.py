"""A captured per-frame enqueue, replayed with one launch (batch-1 latency is launch-bound)."""
import ctypes
from typing import Any, Callable, List, Optional

_DRIVER: "List[Any]" = []  # [cuGraphLaunch or None], looked up once


def _cu_graph_launch() -> Any:
    """libcuda's ``cuGraphLaunch`` (None where the driver library cannot be loaded).

    Loaded with ``PyDLL``: the call only queues work, so it keeps the GIL -- releasing it would let
    the capture thread take the interpreter for up to a switch interval (5 ms) mid-frame.
    """
    if not _DRIVER:
        fn = None
        try:
            fn = ctypes.PyDLL("libcuda.so.1").cuGraphLaunch
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
            fn.restype = ctypes.c_int
        except (OSError, AttributeError):
            fn = None
        _DRIVER.append(fn)
    return _DRIVER[0]


class CudaGraph:
    """``replay()`` launches the captured work on its stream; it never synchronises the host."""

    def __init__(self, graph: Any, stream: Any) -> None:
        self.graph = graph
        self.stream = stream
        self.context: Any = None  # the TensorRT execution context captured (one per graph)

    def replay(self) -> None:
        import torch  # graphs are captured through torch.cuda; only reached when torch made one

        with torch.cuda.stream(self.stream):
            self.graph.replay()

    def launcher(self) -> "Callable[[], None]":
        """A zero-argument launch of this graph on its stream, for the frame loop.

        ``replay`` makes the stream current first (``torch.cuda.stream``: 16 us of Python per call
        on an H200 host, for a graph launch of 4 us; ``scripts/bench_cuda_calls.py``).  Where torch
        exposes the instantiated graph (``CUDAGraph.raw_cuda_graph_exec``) it is launched with the
        driver's ``cuGraphLaunch`` instead (2.7 us).  The caller's thread must have the graph's CUDA
        context current (the pycuda path pushes the primary context, which is torch's).  torch's
        replay also advances captured RNG offsets; inference graphs draw no random numbers.
        """
        raw = getattr(self.graph, "raw_cuda_graph_exec", None)
        fn = _cu_graph_launch() if raw is not None else None
        handle = getattr(self.stream, "cuda_stream", None)
        if fn is None or handle is None:
            return self.replay
        try:
            exec_handle = int(raw())
        except Exception:  # not instantiated (keep_graph) or an older torch: the plain replay
            return self.replay
        if not exec_handle:
            return self.replay
        gexec, stream = ctypes.c_void_p(exec_handle), ctypes.c_void_p(int(handle))

        def launch() -> None:
            rc = fn(gexec, stream)
            if rc:
                raise RuntimeError("cuGraphLaunch failed: CUDA driver error {}".format(rc))

        # the launcher owns the graph: torch destroys the instantiated graph with its CUDAGraph, and
        # launching a destroyed one is a segfault
        launch.graph = self  # type: ignore[attr-defined]
        return launch



def run_step(step: "Optional[Callable[[], None]]") -> None:
    """A caller's ``prologue``/``epilogue`` (work it queues on the capture stream), if any."""
    if step is not None:
        step()
