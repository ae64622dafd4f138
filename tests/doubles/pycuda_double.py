"""A test double of ``pycuda`` / ``pycuda.driver`` -- NOT pycuda, no GPU.

"Device" memory is host memory (so the TensorRT double can read/write it through
integer pointers); streams and events complete immediately.  It mirrors the
pycuda calls the project uses: ``init``, ``Device`` (``count``, ``name``,
``compute_capability``, ``get_attribute``, ``make_context``,
``retain_primary_context``), ``Context.get_current``/``push``/``pop``,
``mem_alloc`` (``DeviceAllocation``: ``int()``, ``free``), ``memcpy_htod(_async)``,
``memcpy_dtoh(_async)``, ``Stream`` (``handle``, ``synchronize``), ``Event``,
``pagelocked_empty(..., mem_flags=host_alloc_flags.DEVICEMAP)`` whose array's
``.base.get_device_pointer()`` gives the mapped pointer, ``ctx_flags.MAP_HOST``.

``driver._double`` counts synchronisations (``syncs``) so tests can prove a code
path never blocks the host.
"""
import ctypes
import importlib.machinery
import sys
import types
from typing import Any, Optional

import numpy as np


def make_pycuda(sm: tuple = (8, 7), integrated: bool = True, name: str = "Orin (double)", memory_mb: int = 8192) -> "types.ModuleType":
    drv = types.ModuleType("pycuda.driver")
    pkg = types.ModuleType("pycuda")
    pkg.__version__ = "2024.1 (double)"
    pkg.VERSION = (2024, 1)
    pkg.driver = drv
    pkg.__path__ = []  # a package, so "import pycuda.driver" resolves through sys.modules
    pkg.__spec__ = importlib.machinery.ModuleSpec("pycuda", None, is_package=True)
    drv.__spec__ = importlib.machinery.ModuleSpec("pycuda.driver", None)
    state = types.SimpleNamespace(syncs=0, allocations=[], contexts=[], current=[], initialised=False)
    drv._double = state

    class LogicError(RuntimeError):
        pass

    drv.LogicError = LogicError
    drv.Error = RuntimeError

    def _need_init() -> None:
        if not state.initialised:
            raise LogicError("cuInit failed: not initialized (call pycuda.driver.init())")

    drv.init = lambda flags=0: setattr(state, "initialised", True)
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

    class Context:
        def __init__(self, flags: int = 0, primary: bool = False) -> None:
            self.flags = flags
            self.primary = primary

        @staticmethod
        def get_current() -> "Optional['Context']":
            return state.current[-1] if state.current else None

        def push(self) -> None:
            state.current.append(self)

        @staticmethod
        def pop() -> None:
            if not state.current:
                raise LogicError("cuCtxPopCurrent failed: invalid context")
            state.current.pop()

        def detach(self) -> None:
            if self in state.current:
                state.current.remove(self)

        @staticmethod
        def synchronize() -> None:
            state.syncs += 1

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
            ctx = Context(flags)
            state.contexts.append(ctx)
            ctx.push()
            return ctx

        def retain_primary_context(self) -> "Context":
            ctx = Context(ctx_flags.MAP_HOST, primary=True)
            state.contexts.append(ctx)
            return ctx

    drv.Device = Device

    def _need_ctx() -> None:
        _need_init()
        if not state.current:
            raise LogicError("explicit_context_dependent failed: invalid device context - no currently active context?")

    class DeviceAllocation:
        def __init__(self, nbytes: int) -> None:
            self._buf = (ctypes.c_char * max(int(nbytes), 1))()
            self.nbytes = int(nbytes)
            self.freed = False

        def __int__(self) -> int:
            if self.freed:
                raise LogicError("cannot use a freed allocation")
            return ctypes.addressof(self._buf)

        __index__ = __int__

        def free(self) -> None:
            self.freed = True

    def mem_alloc(nbytes: int) -> "DeviceAllocation":
        _need_ctx()
        a = DeviceAllocation(nbytes)
        state.allocations.append(a)
        return a

    drv.mem_alloc = mem_alloc
    drv.DeviceAllocation = DeviceAllocation
    drv.mem_get_info = lambda: ((memory_mb // 2) << 20, memory_mb << 20)

    def _addr(x: Any) -> int:
        return int(x)

    def memcpy_htod(dest: Any, src: Any) -> None:
        _need_ctx()
        a = np.ascontiguousarray(src)
        ctypes.memmove(_addr(dest), a.ctypes.data, a.nbytes)

    def memcpy_dtoh(dest: Any, src: Any) -> None:
        _need_ctx()
        if not dest.flags["C_CONTIGUOUS"]:
            raise ValueError("dest must be contiguous")
        ctypes.memmove(dest.ctypes.data, _addr(src), dest.nbytes)

    drv.memcpy_htod = memcpy_htod
    drv.memcpy_dtoh = memcpy_dtoh
    drv.memcpy_htod_async = lambda dest, src, stream=None: memcpy_htod(dest, src)
    drv.memcpy_dtoh_async = lambda dest, src, stream=None: memcpy_dtoh(dest, src)
    drv.memcpy_dtod_async = lambda dest, src, size, stream=None: ctypes.memmove(_addr(dest), _addr(src), size)

    class Stream:
        _next = [0x1000]

        def __init__(self, flags: int = 0) -> None:
            _need_ctx()
            Stream._next[0] += 16
            self.handle = Stream._next[0]

        def synchronize(self) -> None:
            state.syncs += 1

        def is_done(self) -> bool:
            return True

        def wait_for_event(self, event: Any) -> None:
            pass  # device-side wait: no host sync

    class Event:
        def __init__(self, flags: int = 0) -> None:
            self.recorded = False

        def record(self, stream: "Optional[Stream]" = None) -> "Event":
            self.recorded = True
            return self

        def synchronize(self) -> "Event":
            state.syncs += 1
            return self

        def query(self) -> bool:
            return True

        def time_since(self, other: "Event") -> float:
            return 0.0

    drv.Stream = Stream
    drv.Event = Event

    class HostAllocation(bytearray):
        """Backs pagelocked arrays: ``arr.base.get_device_pointer()`` like pycuda's."""

        mapped = False

        def get_device_pointer(self) -> int:
            if not self.mapped:
                raise LogicError("cuMemHostGetDevicePointer failed: invalid value (allocate with DEVICEMAP)")
            return ctypes.addressof(ctypes.c_char.from_buffer(self))

    def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> "np.ndarray":
        _need_ctx()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        buf = HostAllocation(max(n, 1))
        buf.mapped = bool(mem_flags & host_alloc_flags.DEVICEMAP)
        return np.ndarray(shape, dtype=dtype, buffer=buf, order=order)

    drv.pagelocked_empty = pagelocked_empty
    drv.pagelocked_zeros = lambda shape, dtype, order="C", mem_flags=0: _zero(pagelocked_empty(shape, dtype, order, mem_flags))
    drv.HostAllocation = HostAllocation
    return pkg


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
