"""A test double of ``pycuda`` / ``pycuda.driver`` -- NOT pycuda, no GPU.

"Device" memory is host memory (so the TensorRT double can read/write it through
integer pointers).  Stricter than pycuda where pycuda corrupts memory silently:

* every ``mem_alloc`` is registered with its size; a copy or a TensorRT-double kernel that
  reads or writes past the end of an allocation (or touches a freed one) raises
  :class:`IllegalAddress` at once.  Real pycuda never checks: ``memcpy_htod_async`` copies
  ``host.nbytes`` bytes to a bare ``CUdeviceptr`` (inducer/pycuda main 19bed90,
  ``src/wrapper/wrap_cudadrv.cpp`` L209-244; ``DeviceAllocation`` stores no size,
  ``src/cpp/cuda.hpp`` L1570-1581), so an overrun is silent corruption or a later
  ``CUDA_ERROR_ILLEGAL_ADDRESS``;
* async work (``memcpy_*_async`` on a ``Stream``, TensorRT-double kernels enqueued on a
  stream handle) is queued and runs only when the stream is *reached*: ``Stream.synchronize``,
  ``Event.synchronize``/``query`` of an event recorded after it, or a stream that waits on such
  an event.  Host buffers are read/written when the copy runs, not when it was issued, so a
  buffer reused or released too early shows up as wrong data -- as on a GPU.  It mirrors the
pycuda calls the project uses: ``init``, ``Device`` (``count``, ``name``,
``compute_capability``, ``get_attribute``, ``make_context``,
``retain_primary_context``), ``Context.get_current``/``push``/``pop``,
``mem_alloc`` (``DeviceAllocation``: ``int()``, ``free``), ``memcpy_htod(_async)``,
``memcpy_dtoh(_async)``, ``Stream`` (``handle``, ``synchronize``), ``Event``,
``pagelocked_empty(..., mem_flags=host_alloc_flags.DEVICEMAP)`` whose array's
``.base.get_device_pointer()`` gives the mapped pointer, ``ctx_flags.MAP_HOST``.

``driver._double`` counts synchronisations (``syncs``) so tests can prove a code
path never blocks the host.

As strict as the driver about stream capture (CUDA Programming Guide, "CUDA Graphs: Stream
Capture" -- "Prohibited and Unhandled Operations", "Invalidation"; Driver API reference,
``cuStreamBeginCapture`` / ``cuThreadExchangeStreamCaptureMode``; error codes from cuda.h):

* a legacy-stream call (``memcpy_htod``/``memcpy_dtoh``, an async copy with ``stream=None``,
  ``Context.synchronize``) while a *blocking* stream (``Stream()``, flags 0 = ``cuStreamCreate``'s
  default) captures fails with CUDA_ERROR_STREAM_CAPTURE_IMPLICIT and invalidates that capture,
  from any thread; non-blocking streams (``Stream(flags=1)``, CU_STREAM_NON_BLOCKING) are not
  synchronised with the legacy stream at all (``Context.synchronize`` still may not run during any
  capture: CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
* "potentially unsafe" calls (``mem_alloc``, ``pagelocked_empty``) fail with
  CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidate the capture on a thread that is capturing in
  global or thread-local mode, and on every thread while any thread captures in global mode;
* synchronising a capturing stream fails and invalidates the capture;
* ``Event.query()`` / ``Stream.is_done()`` report not-ready while the work before them is still
  queued (the double's GPU then gets on with it: the next look finds it done), as ``cuEventQuery``
  / ``cuStreamQuery`` return CUDA_ERROR_NOT_READY (pycuda ``src/cpp/cuda.hpp`` L1035-1050, L2161-2176);
* ``Context.get_current()`` hands out a new wrapper each call, equal (``==``) to the others of the
  same context but not the same object; its hash mixes in the C++ object's address, as pycuda's
  ``context::hash`` does (``hash(m_context) ^ hash(this)``, ``src/cpp/cuda.hpp`` L622-635): only
  wrappers pushed from Python keep their identity (Boost.Python ``shared_ptr`` conversion), so code
  must key contexts by ``handle``;
* ``mem_alloc`` is 256-byte aligned and page-locked host memory page aligned, as ``cuMemAlloc`` /
  ``cuMemHostAlloc`` return them (TensorRT requires 256-byte aligned tensor addresses).
"""
import ctypes
import importlib.machinery
import itertools
import weakref
import sys
import threading
import types
from typing import Any, Dict, List, Optional

import numpy as np


class IllegalAddress(RuntimeError):
    """What a real GPU reports late (CUDA_ERROR_ILLEGAL_ADDRESS) the double raises at the access."""


# Process-wide registries (like the driver's): the TensorRT double checks its pointer accesses
# against ALLOCATIONS and queues kernels on STREAMS by handle.
ALLOCATIONS: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()
STREAMS: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()


def check_access(ptr: int, nbytes: int, what: str = "access") -> None:
    """Raise IllegalAddress when [ptr, ptr+nbytes) starts inside a registered allocation but does not
    fit in it (or the allocation was freed).  Addresses outside every allocation (numpy arrays
    used as "device" memory by tests) are not checked."""
    ptr, nbytes = int(ptr), int(nbytes)
    for start, alloc in list(ALLOCATIONS.items()):
        if start <= ptr < start + max(alloc.nbytes, 1):
            if alloc.freed:
                raise IllegalAddress("{} at 0x{:x}: the allocation was freed".format(what, ptr))
            if ptr + nbytes > start + alloc.nbytes:
                raise IllegalAddress("{} of {} bytes at 0x{:x} overruns a {}-byte allocation (offset {})".format(
                    what, nbytes, ptr, alloc.nbytes, ptr - start))
            return


#: CUstreamCaptureMode (cuda.h)
CAPTURE_GLOBAL, CAPTURE_THREAD_LOCAL, CAPTURE_RELAXED = 0, 1, 2
#: CU_STREAM_NON_BLOCKING (cuda.h)
STREAM_NON_BLOCKING = 0x1
DEVICE_ALIGNMENT = 256
PAGE = 4096
_MESSAGES = {
    "implicit": "operation would make the legacy stream depend on a capturing blocking stream",
    "unsupported": "operation not permitted when stream is capturing",
}


class CaptureError(RuntimeError):
    """A capture rule broken: what pycuda raises (LogicError) is made from it by the driver module."""

    def __init__(self, what: str, kind: str) -> None:
        super().__init__("{} failed: {}".format(what, _MESSAGES[kind]))
        self.kind = kind


def capturing_streams() -> "List[Any]":
    return [st for st in list(STREAMS.values()) if getattr(st, "_capturing", False)]


def begin_capture(stream: Any, mode: int) -> None:
    """``cuStreamBeginCapture_v2``: ``stream`` records instead of running, in ``mode``, from this thread."""
    stream._saved_queue, stream._queue = stream._queue, []
    stream._capturing, stream._invalidated = True, False
    stream._capture_mode, stream._capture_thread = int(mode), threading.get_ident()


def end_capture(stream: Any) -> "List[Any]":
    """``cuStreamEndCapture``: the recorded work; the stream's earlier work stays queued."""
    ops, stream._queue = stream._queue, stream._saved_queue
    stream._capturing = False
    return ops


def invalidate(streams: "List[Any]") -> None:
    for st in streams:
        st._invalidated = True


def check_unsafe_call(what: str) -> None:
    """A "potentially unsafe" call (cuMemAlloc, cuMemHostAlloc, ...): refused, and the capture
    invalidated, while this thread captures in global/thread-local mode or any thread captures in
    global mode (cuThreadExchangeStreamCaptureMode's rules)."""
    me = threading.get_ident()
    blocking = [st for st in capturing_streams()
                if st._capture_mode == CAPTURE_GLOBAL
                or (st._capture_mode == CAPTURE_THREAD_LOCAL and st._capture_thread == me)]
    if blocking:
        invalidate(blocking)
        raise CaptureError(what, "unsupported")


def check_legacy_stream(what: str, whole_context: bool = False) -> None:
    """A call on the legacy default stream (or, ``whole_context``, a context-wide synchronise) while
    streams capture: refused, and those captures invalidated."""
    caps = capturing_streams()
    blocking = [st for st in caps if st._blocking]
    if blocking:
        invalidate(blocking)
        raise CaptureError(what, "implicit")
    if whole_context and caps:
        invalidate(caps)
        raise CaptureError(what, "unsupported")


def is_device_memory(ptr: int) -> bool:
    """True when ``ptr`` lies in a live ``mem_alloc`` allocation or in mapped page-locked host memory
    (its ``get_device_pointer()`` address): what a kernel may read."""
    ptr = int(ptr)
    for start, alloc in list(ALLOCATIONS.items()):
        if start <= ptr < start + max(alloc.nbytes, 1):
            return not alloc.freed and getattr(alloc, "device_visible", True)
    return False


class _DeviceBytes(bytearray):
    """Memory the doubles treat as device memory (see :func:`device_array`)."""

    freed = False
    nbytes = 0


def device_array(shape: Any, dtype: Any = np.float32) -> "np.ndarray":
    """A numpy view of 256-byte aligned memory the doubles treat as device memory: for tests that
    drive the TensorRT double with plain pointers (``arr.ctypes.data``), as another CUDA allocator's
    memory (torch's) would be.  Kept alive by the array."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    n = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
    buf = _DeviceBytes(n + DEVICE_ALIGNMENT)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    off = (-base) % DEVICE_ALIGNMENT
    buf.nbytes = n
    ALLOCATIONS[base + off] = buf
    return np.ndarray(shape, dtype=dtype, buffer=buf, offset=off)


def enqueue_on(handle: int, op: Any) -> bool:
    """Queue ``op`` on the pycuda-double stream with this handle; False when it is no such stream."""
    st = STREAMS.get(int(handle)) if handle else None
    if st is None:
        return False
    st._queue.append(op)
    return True


def capture(stream: Any, body: Any, mode: int = CAPTURE_THREAD_LOCAL) -> "List[Any]":
    """Stream capture, as ``cuStreamBeginCapture`` .. ``cuStreamEndCapture``: the work queued on
    ``stream`` while ``body()`` runs is recorded, not run, and returned (the graph's nodes, with
    the pointers and host buffers they were captured with); the stream's earlier work stays queued.
    A call the capture rules refuse raises; an invalidated capture raises at its end, as CUDA does."""
    begin_capture(stream, mode)
    try:
        body()
    finally:
        ops = end_capture(stream)
    if stream._invalidated:
        raise RuntimeError("cuStreamEndCapture failed: operation failed due to a previous error during capture")
    return ops


class Graph:
    """An instantiated graph double: each launch queues the captured work again on its stream
    (``cuGraphLaunch``: same nodes, same addresses, reading host memory when it runs)."""

    def __init__(self, stream: Any, ops: "List[Any]") -> None:
        self.stream = stream
        self.ops = list(ops)
        self.launches = 0

    def replay(self) -> None:
        self.launches += 1
        self.stream._queue.extend(self.ops)

    def launcher(self) -> Any:
        return self.replay


class _ThreadContexts(threading.local):
    """The context stack is per CPU thread: cuCtxPushCurrent/cuCtxGetCurrent act on the calling
    thread (CUDA Driver API reference, Context Management; pycuda's Context.push/get_current wrap
    them, inducer/pycuda src/cpp/cuda.hpp).  A thread that never pushed a context has none, so a
    capture thread allocating pinned memory gets pycuda's 'invalid device context' LogicError."""

    def __init__(self) -> None:
        self.stack: "List[Any]" = []


def make_pycuda(sm: tuple = (8, 7), integrated: bool = True, name: str = "Orin (double)", memory_mb: int = 8192) -> "types.ModuleType":
    drv = types.ModuleType("pycuda.driver")
    pkg = types.ModuleType("pycuda")
    pkg.__version__ = "2024.1 (double)"
    pkg.VERSION = (2024, 1)
    pkg.driver = drv
    pkg.__path__ = []  # a package, so "import pycuda.driver" resolves through sys.modules
    pkg.__spec__ = importlib.machinery.ModuleSpec("pycuda", None, is_package=True)
    drv.__spec__ = importlib.machinery.ModuleSpec("pycuda.driver", None)
    state = types.SimpleNamespace(syncs=0, allocations=[], contexts=[], threads=_ThreadContexts(), initialised=False)
    drv._double = state

    class LogicError(RuntimeError):
        pass

    drv.LogicError = LogicError
    drv.Error = RuntimeError

    def _need_init() -> None:
        if not state.initialised:
            raise LogicError("cuInit failed: not initialized (call pycuda.driver.init())")

    drv.init = lambda flags=0: setattr(state, "initialised", True)

    def _raise(exc: "CaptureError") -> None:
        raise LogicError(str(exc))

    def _legacy(what: str, whole_context: bool = False) -> None:
        try:
            check_legacy_stream(what, whole_context)
        except CaptureError as exc:
            _raise(exc)

    def _unsafe(what: str) -> None:
        try:
            check_unsafe_call(what)
        except CaptureError as exc:
            _raise(exc)
    drv.get_driver_version = lambda: 12020

    class ctx_flags:
        SCHED_AUTO = 0
        SCHED_SPIN = 1
        SCHED_YIELD = 2
        SCHED_BLOCKING_SYNC = 4
        MAP_HOST = 8
        LMEM_RESIZE_TO_MAX = 16

    class host_alloc_flags:
        PORTABLE = 1
        DEVICEMAP = 2
        WRITECOMBINED = 4

    class device_attribute:
        INTEGRATED = "INTEGRATED"
        CAN_MAP_HOST_MEMORY = "CAN_MAP_HOST_MEMORY"
        UNIFIED_ADDRESSING = "UNIFIED_ADDRESSING"
        MULTIPROCESSOR_COUNT = "MULTIPROCESSOR_COUNT"

    drv.ctx_flags = ctx_flags
    drv.host_alloc_flags = host_alloc_flags
    drv.device_attribute = device_attribute

    class _ContextObject:
        """pycuda's C++ ``context`` (one per make_context / retain_primary_context call)."""

        def __init__(self, handle: int, flags: int, primary: bool) -> None:
            self.handle, self.flags, self.primary = handle, flags, primary

    class Context:
        """A Python wrapper of a :class:`_ContextObject`: ``==`` by handle, hash by handle and
        object, a new wrapper from every ``get_current()`` (see the module docstring)."""

        def __init__(self, obj: "_ContextObject") -> None:
            self._obj = obj

        handle = property(lambda self: self._obj.handle)
        flags = property(lambda self: self._obj.flags)
        primary = property(lambda self: self._obj.primary)

        def __eq__(self, other: Any) -> bool:
            return isinstance(other, Context) and other.handle == self.handle

        def __ne__(self, other: Any) -> bool:
            return not self == other

        def __hash__(self) -> int:
            return hash(self._obj.handle) ^ id(self._obj)

        @staticmethod
        def get_current() -> "Optional['Context']":
            return Context(state.threads.stack[-1]) if state.threads.stack else None

        def push(self) -> None:
            state.threads.stack.append(self._obj)

        @staticmethod
        def pop() -> None:
            if not state.threads.stack:
                raise LogicError("cuCtxPopCurrent failed: invalid context")
            state.threads.stack.pop()

        def detach(self) -> None:
            if self._obj in state.threads.stack:
                state.threads.stack.remove(self._obj)

        @staticmethod
        def synchronize() -> None:
            _need_ctx()
            _legacy("cuCtxSynchronize", whole_context=True)
            state.syncs += 1
            for st in list(STREAMS.values()):
                st._run_until(None)

        def get_device(self) -> "Device":
            return Device(0)

    drv.Context = Context

    class Device:
        def __init__(self, ordinal: int = 0) -> None:
            _need_init()
            if ordinal != 0:
                raise LogicError("cuDeviceGet failed: invalid device ordinal")
            self.ordinal = ordinal

        @staticmethod
        def count() -> int:
            _need_init()
            return 1

        def name(self) -> str:
            return name

        def compute_capability(self) -> tuple:
            return tuple(sm)

        def total_memory(self) -> int:
            return memory_mb << 20

        def get_attribute(self, attr: Any) -> int:
            return {"INTEGRATED": int(integrated), "CAN_MAP_HOST_MEMORY": 1, "UNIFIED_ADDRESSING": 1,
                    "MULTIPROCESSOR_COUNT": 8}.get(attr, 0)

        def make_context(self, flags: int = 0) -> "Context":
            ctx = Context(_ContextObject(next(_handles), flags, False))
            state.contexts.append(ctx)
            ctx.push()
            return ctx

        def retain_primary_context(self) -> "Context":
            # one CUcontext per device, a new pycuda context object per call (cuda.hpp device::retain_primary_context)
            ctx = Context(_ContextObject(PRIMARY_HANDLE, ctx_flags.MAP_HOST, True))
            state.contexts.append(ctx)
            return ctx

    drv.Device = Device

    def _need_ctx() -> None:
        _need_init()
        if not state.threads.stack:
            raise LogicError("explicit_context_dependent failed: invalid device context - no currently active context?")

    class DeviceAllocation:
        def __init__(self, nbytes: int) -> None:
            self._buf = (ctypes.c_char * (max(int(nbytes), 1) + DEVICE_ALIGNMENT))()
            base = ctypes.addressof(self._buf)
            self._addr = base + (-base) % DEVICE_ALIGNMENT  # cuMemAlloc: 256-byte aligned
            self.nbytes = int(nbytes)
            self.freed = False

            ALLOCATIONS[self._addr] = self

        def __int__(self) -> int:
            if self.freed:
                raise LogicError("cannot use a freed allocation")
            return self._addr

        __index__ = __int__

        def free(self) -> None:
            self.freed = True  # stays registered: a later access through a stale pointer raises

    def mem_alloc(nbytes: int) -> "DeviceAllocation":
        _need_ctx()
        _unsafe("cuMemAlloc")
        a = DeviceAllocation(nbytes)
        state.allocations.append(a)
        return a

    drv.mem_alloc = mem_alloc
    drv.DeviceAllocation = DeviceAllocation
    drv.mem_get_info = lambda: ((memory_mb // 2) << 20, memory_mb << 20)

    def _addr(x: Any) -> int:
        return int(x)

    def _host(a: Any, writable: bool) -> "np.ndarray":
        # pycuda takes the host side with PyObject_GetBuffer(PyBUF_ANY_CONTIGUOUS[|PyBUF_WRITABLE])
        # (wrap_cudadrv.cpp L209-244): non-contiguous -> BufferError, read-only dtoh target -> error
        arr = np.asarray(a) if not isinstance(a, np.ndarray) else a
        if not (arr.flags["C_CONTIGUOUS"] or arr.flags["F_CONTIGUOUS"]):
            raise BufferError("ndarray is not contiguous")
        if writable and not arr.flags["WRITEABLE"]:
            raise BufferError("the host buffer of a device-to-host copy must be writable")
        return arr

    def _legacy_default_stream(what: str) -> None:
        # cuMemcpyHtoD/DtoH run on the legacy default stream, which waits for all work on blocking
        # streams (pycuda's Stream() is created with flags 0 = blocking) and none on non-blocking ones:
        # CUDA driver API docs, "Stream synchronization behavior"; refused while a blocking stream captures
        _legacy(what)
        for st in list(STREAMS.values()):
            if st._blocking:
                st._run_until(None)

    def memcpy_htod(dest: Any, src: Any) -> None:
        _need_ctx()
        _legacy_default_stream("cuMemcpyHtoD")
        a = _host(src, False)
        check_access(_addr(dest), a.nbytes, "memcpy_htod")
        ctypes.memmove(_addr(dest), a.ctypes.data, a.nbytes)

    def memcpy_dtoh(dest: Any, src: Any) -> None:
        _need_ctx()
        _legacy_default_stream("cuMemcpyDtoH")
        a = _host(dest, True)
        check_access(_addr(src), a.nbytes, "memcpy_dtoh")
        ctypes.memmove(a.ctypes.data, _addr(src), a.nbytes)

    def _stream_arg(stream: Any) -> "Optional[Stream]":
        # PYCUDA_PARSE_STREAM_PY (src/cpp/cuda.hpp L78-86): None or a pycuda Stream; an int is refused
        if stream is None:
            return None
        if not isinstance(stream, Stream):
            raise TypeError("stream must be a pycuda.driver.Stream or None, not {}".format(type(stream).__name__))
        return stream

    def _async(stream: Any, op: Any) -> None:
        st = _stream_arg(stream)
        if st is None:
            _legacy_default_stream("cuMemcpyAsync on the legacy stream")
            op()  # stream 0 (legacy default stream): ordered after the blocking streams' work; run now
        else:
            st._queue.append(op)

    def memcpy_htod_async(dest: Any, src: Any, stream: Any = None) -> None:
        _need_ctx()
        a = _host(src, False)
        check_access(_addr(dest), a.nbytes, "memcpy_htod_async")  # fail at the call, not later
        d = _addr(dest)
        _async(stream, lambda: ctypes.memmove(d, a.ctypes.data, a.nbytes))

    def memcpy_dtoh_async(dest: Any, src: Any, stream: Any = None) -> None:
        _need_ctx()
        a = _host(dest, True)
        check_access(_addr(src), a.nbytes, "memcpy_dtoh_async")
        s_ = _addr(src)
        _async(stream, lambda: ctypes.memmove(a.ctypes.data, s_, a.nbytes))

    def memcpy_dtod_async(dest: Any, src: Any, size: int, stream: Any = None) -> None:
        d, s_ = _addr(dest), _addr(src)
        check_access(d, size, "memcpy_dtod_async")
        check_access(s_, size, "memcpy_dtod_async")
        _async(stream, lambda: ctypes.memmove(d, s_, size))

    drv.memcpy_htod = memcpy_htod
    drv.memcpy_dtoh = memcpy_dtoh
    drv.memcpy_htod_async = memcpy_htod_async
    drv.memcpy_dtoh_async = memcpy_dtoh_async
    drv.memcpy_dtod_async = memcpy_dtod_async

    class Stream:
        """Work queued here runs when the stream is reached (synchronize, or an event after it)."""

        _next = [0x1000]

        def __init__(self, flags: int = 0) -> None:
            _need_ctx()
            Stream._next[0] += 16
            self.handle = Stream._next[0]
            self.flags = int(flags)
            #: cuStreamCreate(flags=0): synchronises with the legacy default stream
            self._blocking = not self.flags & STREAM_NON_BLOCKING
            self._queue: "list" = []
            self._capturing = False
            self._invalidated = False
            STREAMS[self.handle] = self

        def _run_until(self, marker: Any = None) -> None:
            while self._queue:
                op = self._queue.pop(0)
                if op is marker:
                    return
                if not isinstance(op, _Marker):
                    op()

        def synchronize(self) -> None:
            if getattr(self, "_capturing", False):
                # cudaStreamSynchronize on a capturing stream fails and invalidates the capture
                # (CUDA Runtime API docs, cudaStreamBeginCapture: "unsafe API calls ... are illegal")
                self._invalidated = True
                raise LogicError("cuStreamSynchronize failed: operation not permitted when stream is capturing")
            state.syncs += 1
            self._run_until(None)

        def is_done(self) -> bool:
            if self._capturing:  # cuStreamQuery of a capturing stream is illegal and invalidates it
                self._invalidated = True
                _raise(CaptureError("cuStreamQuery", "unsupported"))
            if not self._queue:
                return True
            self._run_until(None)  # cuStreamQuery: CUDA_ERROR_NOT_READY; the work finishes after the look
            return False

        def wait_for_event(self, event: Any) -> None:
            # device-side wait, no host sync: when this stream reaches it, the event's stream runs up to it
            st, m = event._stream, event._marker
            if st is not None and m is not None:
                self._queue.append(lambda: st._run_until(m) if m in st._queue else None)

    class _Marker:
        pass

    class Event:
        def __init__(self, flags: int = 0) -> None:
            self.recorded = False
            self._stream: "Optional[Stream]" = None
            self._marker: "Optional[_Marker]" = None

        def record(self, stream: "Optional[Stream]" = None) -> "Event":
            self.recorded = True
            st = _stream_arg(stream)
            self._stream, self._marker = st, None
            if st is not None:
                self._marker = _Marker()
                st._queue.append(self._marker)
            return self

        def _reach(self) -> None:
            st, m = self._stream, self._marker
            if st is not None and m is not None and m in st._queue:
                st._run_until(m)

        def synchronize(self) -> "Event":
            state.syncs += 1
            self._reach()
            return self

        def query(self) -> bool:
            st, m = self._stream, self._marker
            if st is not None and st._capturing:  # an event of a capture sequence: illegal, invalidates it
                st._invalidated = True
                _raise(CaptureError("cuEventQuery", "unsupported"))
            if st is None or m is None or m not in st._queue:
                return True
            st._run_until(m)  # cuEventQuery: CUDA_ERROR_NOT_READY; the work finishes after the look
            return False

        def time_since(self, other: "Event") -> float:
            return 0.0

    drv.Stream = Stream
    drv.Event = Event

    class HostAllocation(bytearray):
        """Backs pagelocked arrays: ``arr.base.get_device_pointer()`` like pycuda's."""

        mapped = False
        offset = 0

        def get_device_pointer(self) -> int:
            if not self.mapped:
                raise LogicError("cuMemHostGetDevicePointer failed: invalid value (allocate with DEVICEMAP)")
            return ctypes.addressof(ctypes.c_char.from_buffer(self)) + self.offset

    class _MappedRange:
        """A mapped host allocation in ALLOCATIONS: device-visible memory for the TensorRT double."""

        freed = False

        def __init__(self, owner: "HostAllocation", nbytes: int) -> None:
            self.owner, self.nbytes = owner, nbytes

    def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> "np.ndarray":
        _need_ctx()
        _unsafe("cuMemHostAlloc")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        buf = HostAllocation(max(n, 1) + PAGE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        buf.offset = (-base) % PAGE  # cuMemHostAlloc: page aligned
        buf.mapped = bool(mem_flags & host_alloc_flags.DEVICEMAP)
        if buf.mapped:
            buf._range = _MappedRange(buf, max(n, 1))
            ALLOCATIONS[base + buf.offset] = buf._range
        return np.ndarray(shape, dtype=dtype, buffer=buf, offset=buf.offset, order=order)

    drv.pagelocked_empty = pagelocked_empty
    drv.pagelocked_zeros = lambda shape, dtype, order="C", mem_flags=0: _zero(pagelocked_empty(shape, dtype, order, mem_flags))
    drv.HostAllocation = HostAllocation
    return pkg


_handles = itertools.count(0x5C000000, 0x1000)
#: the device's primary context (one CUcontext however many pycuda wrappers retain it)
PRIMARY_HANDLE = 0x5B000000


def _zero(a: "np.ndarray") -> "np.ndarray":
    a[...] = 0
    return a


def install(monkeypatch: Any, **kwargs: Any) -> "types.ModuleType":
    """Put a fresh pycuda double in ``sys.modules`` for one test; returns ``pycuda.driver``."""
    pkg = make_pycuda(**kwargs)
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", pkg.driver)
    return pkg.driver


def uninstall(monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
