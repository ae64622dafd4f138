"""Just enough CUDA for TensorRT work: a context, device buffers, a stream, copies.

pycuda first (the design default on Jetson), torch's CUDA allocator when pycuda is
missing.  Both are imported lazily.  This is the TensorRT layer's own small helper
(calibrator batches, the simple ``infer()`` path); the frame pipeline's zero-copy
memory lives in ``jetson_deploy.runtime``.
"""
import atexit
from typing import Any, List, Optional

import numpy as np

from .._lazy import has_module, require
from ..errors import MissingDependency

_pushed: "List[Any]" = []


def _pop_all() -> None:  # pragma: no cover - process exit
    while _pushed:
        try:
            _pushed.pop().pop()
        except Exception:  # noqa: BLE001
            pass


def ensure_pycuda_context(cuda: Any) -> Any:
    """Make a CUDA context current (the device's primary context, shared with TensorRT/torch)."""
    cuda.init()
    ctx = cuda.Context.get_current()
    if ctx is None:
        # With unified addressing (every Jetson, every 64-bit CUDA) mapped pinned memory
        # works in the primary context: CU_CTX_MAP_HOST is implied.
        ctx = cuda.Device(0).retain_primary_context()
        ctx.push()
        if not _pushed:
            atexit.register(_pop_all)
        _pushed.append(ctx)
    return ctx


class DeviceBuffer:
    """A device allocation: ``ptr`` (int) for TensorRT, ``nbytes``."""

    def __init__(self, ptr: int, nbytes: int, handle: Any) -> None:
        self.ptr = int(ptr)
        self.nbytes = int(nbytes)
        self._handle = handle

    def __int__(self) -> int:
        return self.ptr

    def free(self) -> None:
        h, self._handle = self._handle, None
        if h is not None and hasattr(h, "free"):
            h.free()


class PycudaAllocator:
    kind = "pycuda"

    def __init__(self) -> None:
        self.cuda = require("pycuda.driver", "CUDA device memory for TensorRT")
        ensure_pycuda_context(self.cuda)

    def alloc(self, nbytes: int) -> "DeviceBuffer":
        h = self.cuda.mem_alloc(max(int(nbytes), 1))
        return DeviceBuffer(int(h), nbytes, h)

    def stream(self) -> Any:
        return self.cuda.Stream()

    @staticmethod
    def handle(stream: Any) -> int:
        return int(stream.handle) if stream is not None else 0

    def htod(self, buf: "DeviceBuffer", arr: "np.ndarray", stream: Any = None) -> None:
        a = np.ascontiguousarray(arr)
        if stream is None:
            self.cuda.memcpy_htod(buf.ptr, a)
        else:
            self.cuda.memcpy_htod_async(buf.ptr, a, stream)

    def dtoh(self, arr: "np.ndarray", buf: "DeviceBuffer", stream: Any = None) -> None:
        if stream is None:
            self.cuda.memcpy_dtoh(arr, buf.ptr)
        else:
            self.cuda.memcpy_dtoh_async(arr, buf.ptr, stream)

    @staticmethod
    def synchronize(stream: Any) -> None:
        stream.synchronize()


class TorchAllocator:
    kind = "torch"

    def __init__(self) -> None:
        self.torch = require("torch", "CUDA device memory for TensorRT (pycuda is not installed)")
        if not self.torch.cuda.is_available():
            raise MissingDependency("TensorRT needs CUDA device memory: install pycuda, or a CUDA build of torch")

    def alloc(self, nbytes: int) -> "DeviceBuffer":
        t = self.torch.empty(max(int(nbytes), 1), dtype=self.torch.uint8, device="cuda")
        return DeviceBuffer(t.data_ptr(), nbytes, _TorchHandle(t))

    def stream(self) -> Any:
        return self.torch.cuda.Stream()

    @staticmethod
    def handle(stream: Any) -> int:
        return int(stream.cuda_stream) if stream is not None else 0

    def _view(self, buf: "DeviceBuffer", nbytes: int) -> Any:
        return buf._handle.tensor[:nbytes]

    def htod(self, buf: "DeviceBuffer", arr: "np.ndarray", stream: Any = None) -> None:
        a = np.ascontiguousarray(arr)
        src = self.torch.from_numpy(a.reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(stream) if stream is not None else _null():
            self._view(buf, a.nbytes).copy_(src, non_blocking=stream is not None)

    def dtoh(self, arr: "np.ndarray", buf: "DeviceBuffer", stream: Any = None) -> None:
        dst = self.torch.from_numpy(arr.reshape(-1).view(np.uint8))  # arr: a contiguous array we made
        with self.torch.cuda.stream(stream) if stream is not None else _null():
            dst.copy_(self._view(buf, arr.nbytes), non_blocking=stream is not None)

    @staticmethod
    def synchronize(stream: Any) -> None:
        stream.synchronize()


class _TorchHandle:
    def __init__(self, tensor: Any) -> None:
        self.tensor = tensor

    def free(self) -> None:
        self.tensor = None


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def default_allocator(prefer: "Optional[str]" = None) -> Any:
    """pycuda when installed (design default), else torch CUDA; MissingDependency otherwise."""
    order = [prefer] if prefer else []
    order += [k for k in ("pycuda", "torch") if k not in order]
    errors = []
    for kind in order:
        if kind == "pycuda" and has_module("pycuda"):
            return PycudaAllocator()
        if kind == "torch" and has_module("torch"):
            try:
                return TorchAllocator()
            except MissingDependency as exc:
                errors.append(str(exc))
    raise MissingDependency(
        "TensorRT needs CUDA device memory from pycuda (on a Jetson: pip install pycuda) or a CUDA build of torch{}".format(
            " ({})".format("; ".join(errors)) if errors else ""))
