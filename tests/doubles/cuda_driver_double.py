"""A test double of libcuda's stream-capture and graph calls -- NOT the CUDA driver, no GPU.

It stands in for the shared library ``jetson_deploy.runtime.cuda_graph`` opens (``_open``), over
the pycuda double's streams (``doubles.pycuda_double``): the code under test looks its functions
up by name in the double's symbol table and sets ``argtypes``/``restype`` on them exactly as on
the real ``libcuda.so.1``, so a misspelt name is the AttributeError ctypes raises, a call with
the wrong number or types of arguments is ctypes' ArgumentError, and a call on a function whose
``argtypes`` were never set is refused (ctypes would pass a 64-bit handle as a C int).  Each call
records whether it came through a handle that releases the GIL (``ctypes.CDLL``) or one that holds
it (``ctypes.PyDLL``).  A symbol can be removed (``missing=``) as on an older driver: CUDA 10.2
(JetPack 4.6) has no ``cuGraphInstantiateWithFlags`` (added in 11.4).

Work queued on a capturing stream is recorded, not run; an instantiated graph queues that work
again at each launch, with the pointers and host buffers it was captured with.  As strict as the
driver where the driver fails (CUDA Driver API reference, "Stream Management" / "Graph
Management", CUDA 11.4-12.x; CUDA Programming Guide "Stream Capture"; error codes from cuda.h):

* ``cuStreamBeginCapture_v2`` with a mode other than GLOBAL (0), THREAD_LOCAL (1), RELAXED (2):
  CUDA_ERROR_INVALID_VALUE (1); on a stream already capturing: CUDA_ERROR_ILLEGAL_STATE (401);
* ``cuStreamEndCapture`` on a stream not capturing: CUDA_ERROR_ILLEGAL_STATE; from another thread
  than the one that began a non-relaxed capture: CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD (908), the
  capture going on;
* a synchronising call on a capturing stream fails (the pycuda double raises; here
  ``cuStreamSynchronize`` returns CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, 900) and invalidates the
  capture, as do the pycuda double's legacy-stream and unsafe calls: ``cuStreamEndCapture`` then
  returns CUDA_ERROR_STREAM_CAPTURE_INVALIDATED (901) and no graph;
* ``cuGraphInstantiateWithFlags`` can fail (``fail_instantiate = rc``, e.g. out of memory);
* an unknown or destroyed handle: CUDA_ERROR_INVALID_HANDLE (400) -- except ``cuGraphLaunch`` of a
  destroyed instantiated graph, which on a real driver reads freed memory (a crash, not an error
  code): the double raises ``IllegalAddress``.
"""
import ctypes
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

from doubles import pycuda_double

SUCCESS = 0
INVALID_VALUE = 1
OUT_OF_MEMORY = 2
INVALID_HANDLE = 400
ILLEGAL_STATE = 401
CAPTURE_UNSUPPORTED = 900
CAPTURE_INVALIDATED = 901
CAPTURE_WRONG_THREAD = 908
NAMES = {INVALID_VALUE: "CUDA_ERROR_INVALID_VALUE", OUT_OF_MEMORY: "CUDA_ERROR_OUT_OF_MEMORY",
         INVALID_HANDLE: "CUDA_ERROR_INVALID_HANDLE", ILLEGAL_STATE: "CUDA_ERROR_ILLEGAL_STATE",
         CAPTURE_UNSUPPORTED: "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
         CAPTURE_INVALIDATED: "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
         CAPTURE_WRONG_THREAD: "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD"}
#: what libcuda.so.1 exports among the calls the runtime makes (names as in cuda.h's ABI: the
#: ``_v2`` capture entry point is the one with a mode argument, CUDA 10.1+)
SYMBOLS = ("cuStreamBeginCapture_v2", "cuStreamEndCapture", "cuGraphInstantiateWithFlags", "cuGraphLaunch",
           "cuGraphExecDestroy", "cuGraphDestroy", "cuStreamSynchronize", "cuGetErrorName")


def _value(x: Any) -> int:
    """An int from a ctypes value, a ``byref`` of one, or an int."""
    x = getattr(x, "_obj", x)
    return int(getattr(x, "value", x) or 0)


def _out(ref: Any, value: Any) -> None:
    ref._obj.value = value  # ctypes.byref(c_void_p / c_char_p)


class _Symbol:
    """One exported function: ``argtypes``/``restype`` set by the caller, arguments converted as
    ctypes converts them before the call reaches the double's implementation."""

    def __init__(self, double: "DriverDouble", name: str, releases_gil: bool) -> None:
        self._double, self.__name__, self._releases_gil = double, name, releases_gil
        self.argtypes: "Optional[Sequence[Any]]" = None
        self.restype: Any = ctypes.c_int

    def __call__(self, *args: Any) -> int:
        name = self.__name__
        if self.argtypes is None:
            raise TypeError("{}: argtypes not set (ctypes would pass a 64-bit handle as a C int)".format(name))
        if len(args) != len(self.argtypes):
            raise TypeError("this function takes {} arguments ({} given)".format(len(self.argtypes), len(args)))
        for i, (t, a) in enumerate(zip(self.argtypes, args)):
            try:
                t.from_param(a)
            except TypeError as exc:
                raise ctypes.ArgumentError("argument {}: {}: {}".format(i + 1, type(exc).__name__, exc))
        if self.restype is not ctypes.c_int:
            raise TypeError("{}: restype must be c_int (CUresult)".format(name))
        self._double.calls.append((name, self._releases_gil))
        return int(getattr(self._double, name)(*args))


class _Library:
    """What ``ctypes.CDLL("libcuda.so.1")`` (``releases_gil``) or ``ctypes.PyDLL(...)`` returns."""

    def __init__(self, double: "DriverDouble", releases_gil: bool) -> None:
        self._double, self._releases_gil = double, releases_gil
        self._symbols: "Dict[str, _Symbol]" = {}

    def __getattr__(self, name: str) -> "_Symbol":
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._double.exported:
            raise AttributeError("libcuda.so.1: undefined symbol: {}".format(name))
        if name not in self._symbols:  # ctypes caches the function object per name, argtypes and all
            self._symbols[name] = _Symbol(self._double, name, self._releases_gil)
        return self._symbols[name]


class DriverDouble:
    """The calls ``runtime.cuda_graph`` makes; counters for tests."""

    def __init__(self, missing: "Sequence[str]" = ()) -> None:
        self.exported = set(SYMBOLS) - set(missing)
        self.graphs: "Dict[int, List[Any]]" = {}
        self.execs: "Dict[int, Tuple[List[Any], int]]" = {}
        self.modes: "List[int]" = []
        self.calls: "List[Tuple[str, bool]]" = []
        self.opened: "List[Tuple[str, bool]]" = []
        self.launches = 0
        self.captures = 0
        self.fail_instantiate = SUCCESS
        self._next = 0x7000

    def library(self, name: str, releases_gil: bool) -> "_Library":
        self.opened.append((name, releases_gil))
        return _Library(self, releases_gil)

    def _stream(self, handle: Any) -> Any:
        return pycuda_double.STREAMS.get(_value(handle))

    def _id(self) -> int:
        self._next += 16
        return self._next

    def cuStreamBeginCapture_v2(self, stream: Any, mode: int) -> int:
        st = self._stream(stream)
        if st is None:
            return INVALID_HANDLE
        if int(mode) not in (pycuda_double.CAPTURE_GLOBAL, pycuda_double.CAPTURE_THREAD_LOCAL,
                             pycuda_double.CAPTURE_RELAXED):
            return INVALID_VALUE
        if getattr(st, "_capturing", False):
            return ILLEGAL_STATE
        pycuda_double.begin_capture(st, int(mode))
        self.modes.append(int(mode))
        return SUCCESS

    def cuStreamEndCapture(self, stream: Any, pgraph: Any) -> int:
        st = self._stream(stream)
        if st is None:
            return INVALID_HANDLE
        if not getattr(st, "_capturing", False):
            return ILLEGAL_STATE
        if st._capture_mode != pycuda_double.CAPTURE_RELAXED and st._capture_thread != threading.get_ident():
            return CAPTURE_WRONG_THREAD
        ops = pycuda_double.end_capture(st)
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
        if self.fail_instantiate:
            return self.fail_instantiate
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


def install(monkeypatch: Any, missing: "Sequence[str]" = ()) -> "DriverDouble":
    """Make ``runtime.cuda_graph.driver()`` load this double for this test, through its own symbol
    table and prototypes (``missing``: symbols an older driver lacks)."""
    from jetson_deploy.runtime import cuda_graph

    d = DriverDouble(missing)
    monkeypatch.setattr(cuda_graph, "_DRIVER", [])
    monkeypatch.setattr(cuda_graph, "_open", d.library)
    return d


def absent(monkeypatch: Any) -> None:
    """No libcuda (CI): ``driver()`` returns None, so captures go through torch."""
    from jetson_deploy.runtime import cuda_graph

    monkeypatch.setattr(cuda_graph, "_DRIVER", [None])
