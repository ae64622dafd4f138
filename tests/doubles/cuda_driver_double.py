"""A test double of libcuda's stream-capture and graph calls -- NOT the CUDA driver, no GPU.

It stands in for ``jetson_deploy.runtime.cuda_graph.driver()`` over the pycuda double's streams
(``doubles.pycuda_double``): work queued on a capturing stream is recorded, not run; an
instantiated graph queues that work again at each launch, with the pointers and host buffers it was
captured with.  As strict as the driver where the driver fails (CUDA Driver API reference, "Stream
Management" / "Graph Management", CUDA 11.4-12.x; error codes from cuda.h):

* ``cuStreamBeginCapture_v2`` on a stream already capturing: CUDA_ERROR_ILLEGAL_STATE (401);
* ``cuStreamEndCapture`` on a stream not capturing: CUDA_ERROR_ILLEGAL_STATE;
* a synchronising call on a capturing stream fails (the pycuda double raises; here
  ``cuStreamSynchronize`` returns CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, 900) and invalidates the
  capture: ``cuStreamEndCapture`` then returns CUDA_ERROR_STREAM_CAPTURE_INVALIDATED (901);
* an unknown or destroyed handle: CUDA_ERROR_INVALID_HANDLE (400) -- except ``cuGraphLaunch`` of a
  destroyed instantiated graph, which on a real driver reads freed memory (a crash, not an error
  code): the double raises ``IllegalAddress``.
"""
from typing import Any, Dict, List, Tuple

from doubles import pycuda_double

SUCCESS = 0
INVALID_HANDLE = 400
ILLEGAL_STATE = 401
CAPTURE_UNSUPPORTED = 900
CAPTURE_INVALIDATED = 901
NAMES = {INVALID_HANDLE: "CUDA_ERROR_INVALID_HANDLE", ILLEGAL_STATE: "CUDA_ERROR_ILLEGAL_STATE",
         CAPTURE_UNSUPPORTED: "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
         CAPTURE_INVALIDATED: "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"}


def _value(x: Any) -> int:
    """An int from a ctypes value, a ``byref`` of one, or an int."""
    x = getattr(x, "_obj", x)
    return int(getattr(x, "value", x) or 0)


def _out(ref: Any, value: Any) -> None:
    ref._obj.value = value  # ctypes.byref(c_void_p / c_char_p)


class DriverDouble:
    """The calls ``runtime.cuda_graph`` makes; counters for tests."""

    def __init__(self) -> None:
        self.graphs: "Dict[int, List[Any]]" = {}
        self.execs: "Dict[int, Tuple[List[Any], int]]" = {}
        self.modes: "List[int]" = []
        self.launches = 0
        self.captures = 0
        self._next = 0x7000

    def _stream(self, handle: Any) -> Any:
        return pycuda_double.STREAMS.get(_value(handle))

    def _id(self) -> int:
        self._next += 16
        return self._next

    def cuStreamBeginCapture_v2(self, stream: Any, mode: int) -> int:
        st = self._stream(stream)
        if st is None:
            return INVALID_HANDLE
        if getattr(st, "_capturing", False):
            return ILLEGAL_STATE
        st._saved_queue, st._queue = st._queue, []
        st._capturing, st._invalidated = True, False
        self.modes.append(int(mode))
        return SUCCESS

    def cuStreamEndCapture(self, stream: Any, pgraph: Any) -> int:
        st = self._stream(stream)
        if st is None:
            return INVALID_HANDLE
        if not getattr(st, "_capturing", False):
            return ILLEGAL_STATE
        ops, st._queue = st._queue, st._saved_queue
        st._capturing = False
        if st._invalidated:
            return CAPTURE_INVALIDATED
        gid = self._id()
        self.graphs[gid] = ops
        self.captures += 1
        _out(pgraph, gid)
        return SUCCESS

    def cuGraphInstantiateWithFlags(self, pexec: Any, graph: Any, flags: int) -> int:
        ops = self.graphs.get(_value(graph))
        if ops is None:
            return INVALID_HANDLE
        eid = self._id()
        self.execs[eid] = (list(ops), _value(graph))
        _out(pexec, eid)
        return SUCCESS

    def cuGraphLaunch(self, gexec: Any, stream: Any) -> int:
        e = self.execs.get(_value(gexec))
        if e is None:
            raise pycuda_double.IllegalAddress("cuGraphLaunch of a destroyed or unknown graph (a crash on a real driver)")
        st = self._stream(stream)
        if st is None:
            return INVALID_HANDLE
        st._queue.extend(e[0])
        self.launches += 1
        return SUCCESS

    def cuGraphExecDestroy(self, gexec: Any) -> int:
        return SUCCESS if self.execs.pop(_value(gexec), None) is not None else INVALID_HANDLE

    def cuGraphDestroy(self, graph: Any) -> int:
        return SUCCESS if self.graphs.pop(_value(graph), None) is not None else INVALID_HANDLE

    def cuStreamSynchronize(self, stream: Any) -> int:
        st = self._stream(stream)
        if st is None:
            return INVALID_HANDLE
        if getattr(st, "_capturing", False):
            st._invalidated = True
            return CAPTURE_UNSUPPORTED
        st.synchronize()
        return SUCCESS

    def cuGetErrorName(self, rc: int, pname: Any) -> int:
        _out(pname, NAMES.get(int(rc), "CUDA_ERROR_UNKNOWN").encode())
        return SUCCESS


def install(monkeypatch: Any) -> "DriverDouble":
    """Make ``runtime.cuda_graph.driver()`` return a fresh double for this test."""
    from jetson_deploy.runtime import cuda_graph

    d = DriverDouble()
    monkeypatch.setattr(cuda_graph, "_DRIVER", [d])
    return d


def absent(monkeypatch: Any) -> None:
    """No libcuda (CI): ``driver()`` returns None, so captures go through torch."""
    from jetson_deploy.runtime import cuda_graph

    monkeypatch.setattr(cuda_graph, "_DRIVER", [None])
