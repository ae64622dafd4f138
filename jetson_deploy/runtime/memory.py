"""Host (and host-visible device) buffers for the frame loop.

Three implementations of one small interface, :class:`HostAllocator`:

* :class:`NumpyAllocator` -- plain numpy arrays, for CPU backends (ONNX Runtime, torch CPU).
* :class:`TorchPinnedAllocator` -- page-locked memory from torch (``pin_memory=True``), so
  ``copy_(non_blocking=True)`` is a true async DMA on the engine's copy stream.
* :class:`PycudaAllocator` -- the design default on a Jetson: ``pagelocked_empty``; with
  ``mapped=True`` the buffer is allocated ``DEVICEMAP`` and ``device_ptr`` is the GPU's view of
  it (zero copy on integrated GPUs, where host and device share DRAM).

Every buffer is a :class:`HostBuffer`: ``array`` (numpy view the CPU writes), plus ``tensor``
(torch) and ``device_ptr`` (pycuda mapped pointer) when the allocator provides them.

:class:`SyncCounter` counts host synchronisations on the pycuda path (event/stream/context
``synchronize`` and blocking copies); the pipeline proves with it that nothing inside the loop
blocks on the GPU except waiting for the oldest in-flight frame.
"""
import threading
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .._lazy import require


class HostBuffer:
    """One host buffer: ``array`` always; ``tensor``/``device_ptr`` when pinned/mapped."""

    __slots__ = ("array", "tensor", "device_ptr", "pinned", "mapped", "_owner")

    def __init__(self, array: "np.ndarray", tensor: Any = None, device_ptr: "Optional[int]" = None,
                 pinned: bool = False, mapped: bool = False, owner: Any = None) -> None:
        self.array = array
        self.tensor = tensor
        self.device_ptr = device_ptr
        self.pinned = pinned
        self.mapped = mapped
        self._owner = owner  # keeps the underlying allocation alive

    @property
    def shape(self) -> "Tuple[int, ...]":
        return tuple(self.array.shape)

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)


class HostAllocator:
    """Makes :class:`HostBuffer` objects.  ``kind`` names the memory for reports."""

    kind = "numpy"
    pinned = False
    mapped = False

    def empty(self, shape: "Sequence[int]", dtype: Any = np.uint8) -> "HostBuffer":
        raise NotImplementedError

    def describe(self) -> "Dict[str, Any]":
        return {"kind": self.kind, "pinned": self.pinned, "mapped": self.mapped}


class NumpyAllocator(HostAllocator):
    kind = "numpy"

    def empty(self, shape: "Sequence[int]", dtype: Any = np.uint8) -> "HostBuffer":
        return HostBuffer(np.empty(tuple(int(s) for s in shape), dtype=dtype))


_TORCH_DTYPES = {
    np.dtype(np.uint8): "uint8",
    np.dtype(np.int8): "int8",
    np.dtype(np.float32): "float32",
    np.dtype(np.float16): "float16",
    np.dtype(np.int32): "int32",
    np.dtype(np.int64): "int64",
    np.dtype(np.bool_): "bool",
}


def torch_dtype(dtype: Any) -> Any:
    torch = require("torch", "torch buffers")
    return getattr(torch, _TORCH_DTYPES[np.dtype(dtype)])


class TorchPinnedAllocator(HostAllocator):
    """Page-locked host memory from torch's caching host allocator."""

    kind = "torch-pinned"
    pinned = True

    def empty(self, shape: "Sequence[int]", dtype: Any = np.uint8) -> "HostBuffer":
        torch = require("torch", "pinned host buffers")
        t = torch.empty(tuple(int(s) for s in shape), dtype=torch_dtype(dtype), pin_memory=True)
        return HostBuffer(t.numpy(), tensor=t, pinned=True, owner=t)


class PycudaAllocator(HostAllocator):
    """pycuda page-locked memory; ``mapped=True`` for zero copy (integrated GPUs).

    Call with a current pycuda context.  Mapped buffers need a context created with
    ``ctx_flags.MAP_HOST`` (or any context on a 64-bit UVA system, where every pinned
    allocation is mapped); :func:`make_context` does that.
    """

    kind = "pycuda-pinned"
    pinned = True

    def __init__(self, mapped: bool = False, cuda: Any = None) -> None:
        self.cuda = cuda if cuda is not None else require("pycuda.driver", "pycuda buffers")
        self.mapped = bool(mapped)
        self.kind = "pycuda-mapped" if mapped else "pycuda-pinned"
        # pycuda contexts are current per thread; capture threads allocate their frame pools
        # lazily, so remember the context of the thread that made the allocator.
        self._ctx = self._current()

    def _current(self) -> Any:
        try:
            return self.cuda.Context.get_current()
        except Exception:  # pragma: no cover - no context API (old doubles)
            return None

    def empty(self, shape: "Sequence[int]", dtype: Any = np.uint8) -> "HostBuffer":
        pushed = self._ctx is not None and self._current() is None
        if pushed:
            self._ctx.push()
        try:
            return self._empty(shape, dtype)
        finally:
            if pushed:
                self.cuda.Context.pop()

    def _empty(self, shape: "Sequence[int]", dtype: Any) -> "HostBuffer":
        cuda = self.cuda
        shape = tuple(int(s) for s in shape)
        if self.mapped:
            arr = cuda.pagelocked_empty(shape, dtype, mem_flags=cuda.host_alloc_flags.DEVICEMAP)
            ptr = int(arr.base.get_device_pointer())
            return HostBuffer(arr, device_ptr=ptr, pinned=True, mapped=True, owner=arr.base)
        arr = cuda.pagelocked_empty(shape, dtype)
        return HostBuffer(arr, pinned=True, owner=arr.base)


#: CU_STREAM_NON_BLOCKING (cuda.h; pycuda's ``Stream(flags)`` is ``cuStreamCreate(&s, flags)``,
#: src/cpp/cuda.hpp L1009-1010, and 0 makes a blocking stream)
CU_STREAM_NON_BLOCKING = 0x1


def frame_stream(cuda: Any) -> Any:
    """A pycuda stream for the frame path, non-blocking: it never synchronises with the legacy
    default stream, so a legacy-stream call on another thread (a synchronous ``memcpy_htod``) does
    not wait on it -- and cannot invalidate a CUDA graph being captured on it, which on a blocking
    stream fails with CUDA_ERROR_STREAM_CAPTURE_IMPLICIT (CUDA Programming Guide, "Stream Capture")."""
    return cuda.Stream(flags=CU_STREAM_NON_BLOCKING)


def make_context(device: int = 0, cuda: Any = None, primary: bool = True) -> Any:
    """A pycuda context for the runtime; pushes it and returns it (caller pops).

    ``primary=True`` retains the device's primary context so torch (which also uses the
    primary context) and pycuda share buffers and streams.  Otherwise a fresh context with
    ``MAP_HOST | SCHED_SPIN`` is created (the Jetson default: mapped pinned frames).
    """
    cuda = cuda if cuda is not None else require("pycuda.driver", "the pycuda runtime path")
    cuda.init()
    dev = cuda.Device(device)
    if primary:
        ctx = dev.retain_primary_context()
        ctx.push()
        return ctx
    return dev.make_context(flags=cuda.ctx_flags.MAP_HOST | cuda.ctx_flags.SCHED_SPIN)


def is_integrated(device: int = 0, cuda: Any = None) -> bool:
    """True on Jetson-style integrated GPUs (host and device share DRAM)."""
    try:
        cuda = cuda if cuda is not None else require("pycuda.driver")
        cuda.init()
        return bool(cuda.Device(device).get_attribute(cuda.device_attribute.INTEGRATED))
    except Exception:
        pass
    torch_mod = None
    try:
        import importlib

        torch_mod = importlib.import_module("torch")
    except ImportError:
        return False
    try:
        return bool(torch_mod.cuda.is_available() and torch_mod.cuda.get_device_properties(device).is_integrated)
    except Exception:
        return False


class SyncCounter:
    """Counts host synchronisations, by name (thread-safe).  ``inside_loop`` marks the window."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: "Dict[str, int]" = {}
        self.inside_loop = False
        self.loop_counts: "Dict[str, int]" = {}

    def hit(self, what: str) -> None:
        with self._lock:
            self.counts[what] = self.counts.get(what, 0) + 1
            if self.inside_loop:
                self.loop_counts[what] = self.loop_counts.get(what, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def loop_total(self) -> int:
        return sum(self.loop_counts.values())

    def to_dict(self) -> "Dict[str, Any]":
        return {"total": self.total, "in_loop": dict(self.loop_counts), "all": dict(self.counts)}


def allocator_for(kind: str, **kw: Any) -> "HostAllocator":
    """'numpy' | 'torch-pinned' | 'pycuda-pinned' | 'pycuda-mapped'."""
    if kind == "numpy":
        return NumpyAllocator()
    if kind in ("torch", "torch-pinned"):
        return TorchPinnedAllocator()
    if kind == "pycuda-pinned":
        return PycudaAllocator(mapped=False, **kw)
    if kind == "pycuda-mapped":
        return PycudaAllocator(mapped=True, **kw)
    from ..errors import BadInput

    raise BadInput("memory kind {!r}: use numpy, torch-pinned, pycuda-pinned or pycuda-mapped".format(kind))
