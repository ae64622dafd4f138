"""A captured per-frame enqueue, replayed with one launch (batch-1 latency is launch-bound).

Two ways to hold one:

* :class:`CudaGraph` -- captured by torch (``torch.cuda.graph``): the torch backend, whose forward
  allocates from torch's caching allocator and so must be captured by torch;
* :class:`DriverGraph` -- captured and launched through the CUDA driver (``libcuda`` via ctypes:
  ``cuStreamBeginCapture_v2`` .. ``cuStreamEndCapture``, ``cuGraphInstantiateWithFlags``,
  ``cuGraphLaunch``): the TensorRT backend, so a board without torch (JetPack 5/6 with TensorRT
  and pycuda only) gets graphs too.

Both hand the frame loop a zero-argument ``launcher()``.
"""
import ctypes
import types
from typing import Any, Callable, Dict, List, Optional

#: CUstreamCaptureMode (cuda.h): other threads' unsafe calls (a capture thread allocating pinned
#: frames) stay legal while this thread captures
CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1
LIBCUDA = "libcuda.so.1"
_DRIVER: "List[Any]" = []  # [the libcuda functions with prototypes set, or None], loaded once
#: calls that only queue work (microseconds): through a PyDLL handle, which keeps the GIL -- releasing
#: it would let the capture thread take the interpreter for up to a switch interval (5 ms) mid-frame
_QUEUE_CALLS = {
    "cuGraphLaunch": [ctypes.c_void_p, ctypes.c_void_p],
    "cuStreamBeginCapture_v2": [ctypes.c_void_p, ctypes.c_int],
    "cuStreamEndCapture": [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)],
    "cuGraphInstantiateWithFlags": [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_ulonglong],
    "cuGraphExecDestroy": [ctypes.c_void_p],
    "cuGraphDestroy": [ctypes.c_void_p],
    "cuGetErrorName": [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
}
#: calls that wait for the GPU: through a CDLL handle, which releases the GIL for the wait, so the
#: capture and output threads run meanwhile (a capture's warm-up, a re-capture at a size change)
_WAIT_CALLS = {
    "cuStreamSynchronize": [ctypes.c_void_p],
}


def _open(name: str, releases_gil: bool) -> Any:
    """The shared library ``name``: ``ctypes.CDLL`` (calls release the GIL) or ``ctypes.PyDLL`` (they keep it)."""
    return (ctypes.CDLL if releases_gil else ctypes.PyDLL)(name)


def _prototyped(handle: Any, calls: "Dict[str, List[Any]]", into: Any) -> None:
    for name, args in calls.items():
        fn = getattr(handle, name)
        fn.argtypes = args
        fn.restype = ctypes.c_int
        setattr(into, name, fn)


def driver() -> Any:
    """libcuda's graph functions with their prototypes set (an object with one attribute per call),
    or None: no driver, or one older than CUDA 11.4, which has no ``cuGraphInstantiateWithFlags``
    (JetPack 4.6's CUDA 10.2).  Queueing calls keep the GIL, waiting calls release it (see above)."""
    if not _DRIVER:
        lib: Any = types.SimpleNamespace()
        try:
            _prototyped(_open(LIBCUDA, False), _QUEUE_CALLS, lib)
            _prototyped(_open(LIBCUDA, True), _WAIT_CALLS, lib)
        except (OSError, AttributeError):
            lib = None
        _DRIVER.append(lib)
    return _DRIVER[0]


def synchronize_stream(lib: Any, stream_handle: int, what: str) -> None:
    """Wait for ``stream_handle`` with the GIL released (``cuStreamSynchronize`` on the CDLL handle)."""
    _check(lib, lib.cuStreamSynchronize(ctypes.c_void_p(int(stream_handle))), what)


def torch_capture(torch: Any, graph: Any, stream: Any, pool: Any = None) -> Any:
    """``torch.cuda.graph`` capturing in thread-local mode (torch's default is global: any other
    thread's cudaMalloc / pinned allocation during the capture would fail and invalidate it); torch
    < 2.1 (JetPack 5 wheels) has only global mode."""
    kw: "Dict[str, Any]" = {"stream": stream}
    if pool is not None:
        kw["pool"] = pool
    try:
        return torch.cuda.graph(graph, capture_error_mode="thread_local", **kw)
    except TypeError:
        return torch.cuda.graph(graph, **kw)


def _check(lib: Any, rc: int, what: str) -> None:
    if rc:
        name = ctypes.c_char_p()
        try:
            lib.cuGetErrorName(rc, ctypes.byref(name))
        except Exception:  # pragma: no cover - a driver without it
            pass
        raise RuntimeError("{} failed: {} ({})".format(what, (name.value or b"CUDA error").decode(), rc))


def _launcher(lib: Any, exec_handle: int, stream_handle: int, owner: Any) -> "Callable[[], None]":
    gexec, stream = ctypes.c_void_p(exec_handle), ctypes.c_void_p(stream_handle)
    fn = lib.cuGraphLaunch

    def launch() -> None:
        rc = fn(gexec, stream)
        if rc:
            _check(lib, rc, "cuGraphLaunch")

    # the launcher owns the graph: launching a destroyed instantiated graph is a segfault
    launch.graph = owner  # type: ignore[attr-defined]
    return launch


class CudaGraph:
    """A graph captured by torch; ``replay()`` launches it on its stream, never synchronising."""

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
        lib = driver() if raw is not None else None
        handle = getattr(self.stream, "cuda_stream", None)
        if lib is None or handle is None:
            return self.replay
        try:
            exec_handle = int(raw())
        except Exception:  # not instantiated (keep_graph) or an older torch: the plain replay
            return self.replay
        if not exec_handle:
            return self.replay
        return _launcher(lib, exec_handle, int(handle), self)


class DriverGraph:
    """A graph captured and instantiated through the CUDA driver; destroyed with this object."""

    def __init__(self, lib: Any, graph: int, exec_handle: int, stream_handle: int) -> None:
        self._lib = lib
        self._graph = graph
        self._exec = exec_handle
        self.stream = stream_handle
        self.context: Any = None  # the TensorRT execution context captured (one per graph)

    def replay(self) -> None:
        _check(self._lib, self._lib.cuGraphLaunch(ctypes.c_void_p(self._exec), ctypes.c_void_p(self.stream)),
               "cuGraphLaunch")

    def launcher(self) -> "Callable[[], None]":
        return _launcher(self._lib, self._exec, self.stream, self)

    def close(self) -> None:
        """Destroy the graph (it must not be running: callers drain their streams first)."""
        lib, self._lib = self._lib, None
        if lib is not None:
            lib.cuGraphExecDestroy(ctypes.c_void_p(self._exec))
            lib.cuGraphDestroy(ctypes.c_void_p(self._graph))

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def capture_on_stream(stream_handle: int, body: "Callable[[], None]", lib: Any = None) -> "DriverGraph":
    """Capture the work ``body()`` queues on ``stream_handle`` into an instantiated graph.

    The capture always ends, also when ``body`` raises (a stream left capturing is unusable);
    a capture the body invalidated (a synchronising call, a legacy-stream copy) raises with the
    driver's error name.  Needs the stream's context current on this thread.
    """
    lib = lib if lib is not None else driver()
    if lib is None:
        raise RuntimeError("CUDA graphs through the driver need libcuda.so.1 from CUDA 11.4+ (JetPack 5+)")
    stream = ctypes.c_void_p(int(stream_handle))
    _check(lib, lib.cuStreamBeginCapture_v2(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), "cuStreamBeginCapture")
    graph = ctypes.c_void_p()
    try:
        body()
    except BaseException:
        if lib.cuStreamEndCapture(stream, ctypes.byref(graph)) == 0 and graph.value:
            lib.cuGraphDestroy(graph)
        raise
    _check(lib, lib.cuStreamEndCapture(stream, ctypes.byref(graph)), "cuStreamEndCapture")
    exec_ = ctypes.c_void_p()
    rc = lib.cuGraphInstantiateWithFlags(ctypes.byref(exec_), graph, 0)
    if rc:
        lib.cuGraphDestroy(graph)
        _check(lib, rc, "cuGraphInstantiateWithFlags")
    return DriverGraph(lib, int(graph.value or 0), int(exec_.value or 0), int(stream_handle))


def run_step(step: "Optional[Callable[[], None]]") -> None:
    """A caller's ``prologue``/``epilogue`` (work it queues on the capture stream), if any."""
    if step is not None:
        step()
