"""TensorRT INT8 calibrator adapters (IInt8EntropyCalibrator2 / IInt8MinMaxCalibrator).

:func:`make_calibrator` defines its class *inside* the factory, subclassing the
TensorRT base class found at call time, so importing this module never touches
tensorrt (Polygraphy's pattern).  The calibrator:

* takes any iterable of batches -- ``{input_name: array}``, a bare array (one-input
  models), a tuple of arrays (in input order) -- or a calibration set object with
  ``iter_batches(batch_size)`` (``jetson_deploy.calibration.dataset``);
* checks every batch against the engine's inputs (names, shape; a missing batch
  axis is added, NHWC is transposed to NCHW when that is the only reading) and
  casts it to the engine's input dtype before copying it to device memory;
* returns device pointers from ``get_batch(names)`` and None when the data ends;
* reads/writes the calibration cache (a path, written atomically, or a file object).

TensorRT calls ``get_batch`` from C++: an exception there cannot be reported
cleanly, so a bad batch ends calibration (None) and the error is kept in
``calibrator.error``; :func:`jetson_deploy.trt.build.build_engine`
raises it.

``Torch2trtCalibDataset`` adapts a calibration set to torch2trt's
``int8_calib_dataset`` (indexable; item = list of tensors without batch axis).
"""
import io
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np

from .._files import atomic_write_bytes
from ..errors import BadInput

# "entropy" (IInt8EntropyCalibrator, v1) only serves caches with that header: TensorRT uses a cache
# only when its algorithm token matches the calibrator (NVIDIA/TensorRT release/8.2
# samples/sampleINT8/README.md L115-145)
KINDS = {"entropy2": "IInt8EntropyCalibrator2", "minmax": "IInt8MinMaxCalibrator", "entropy": "IInt8EntropyCalibrator"}


def _as_batches(batches: Any, batch_size: int) -> "Iterable[Any]":
    if hasattr(batches, "iter_batches") and callable(batches.iter_batches):
        return _Reiterable(lambda: batches.iter_batches(batch_size))
    return batches


class _Reiterable:
    def __init__(self, make: Any) -> None:
        self._make = make

    def __iter__(self) -> "Iterator[Any]":
        return iter(self._make())


def _conform(arr: Any, name: str, shape: "Optional[Sequence[int]]", dtype: "Optional[Any]") -> "np.ndarray":
    """The batch array in the engine's shape/layout/dtype, or BadInput saying why not."""
    a = np.asarray(arr)
    if shape is not None:
        want = [int(d) for d in shape]

        def fits(s: "Sequence[int]") -> bool:
            return len(s) == len(want) and all(w < 0 or w == d for w, d in zip(want, s))

        if not fits(a.shape) and a.ndim == len(want) - 1 and fits((1,) + a.shape):
            a = a[None]
        if not fits(a.shape) and a.ndim == 4 and len(want) == 4 and fits((a.shape[0], a.shape[3], a.shape[1], a.shape[2])):
            a = a.transpose(0, 3, 1, 2)  # NHWC -> NCHW
        if not fits(a.shape):
            raise BadInput("calibration batch for input '{}' has shape {}, the engine takes {} (-1 = any)".format(
                name, tuple(a.shape), tuple(want)))
    if dtype is not None and a.dtype != np.dtype(dtype):
        if np.dtype(dtype).kind in "iu" and a.dtype.kind == "f":
            info = np.iinfo(np.dtype(dtype))
            a = np.clip(np.rint(a), info.min, info.max)
        a = a.astype(dtype)
    return np.ascontiguousarray(a)


def make_calibrator(
    batches: Any,
    input_names: "Optional[Sequence[str]]" = None,
    input_shapes: "Optional[Sequence[Sequence[int]]]" = None,
    input_dtypes: "Optional[Sequence[Any]]" = None,
    cache_path: "Optional[Union[str, Path, Any]]" = None,
    kind: str = "entropy2",
    allocator: Any = None,
    *,
    trt: Any = None,
    read_only_cache: bool = False,
) -> Any:
    """A TensorRT INT8 calibrator over ``batches``.

    ``input_names/shapes/dtypes`` describe the engine's inputs (from the network;
    shapes may hold -1).  When names are not given they are taken from the first
    dict batch (or ``["input"]`` for bare arrays).  ``kind``: "entropy2" (TensorRT's
    default, ``IInt8EntropyCalibrator2``) or "minmax" (``IInt8MinMaxCalibrator``).
    ``allocator``: an object with ``alloc(nbytes) -> buffer (.ptr)`` and
    ``htod(buffer, array)``; default pycuda, else torch CUDA.
    ``read_only_cache``: never overwrite ``cache_path``.
    """
    if kind not in KINDS:
        raise BadInput("calibrator kind must be one of {}, got {!r}".format(sorted(KINDS), kind))
    if trt is None:
        from .compat import load_tensorrt

        trt = load_tensorrt("INT8 calibration")
    base = getattr(trt, KINDS[kind], None)
    if base is None:
        raise BadInput("TensorRT {} has no {}: use a Q/DQ model for INT8".format(getattr(trt, "__version__", "?"), KINDS[kind]))
    names = list(input_names) if input_names is not None else None
    shapes = [list(s) for s in input_shapes] if input_shapes is not None else None
    dtypes = [np.dtype(d) for d in input_dtypes] if input_dtypes is not None else None
    if names is not None:
        for what, seq in (("input_shapes", shapes), ("input_dtypes", dtypes)):
            if seq is not None and len(seq) != len(names):
                raise BadInput("{} has {} entries for {} inputs {}".format(what, len(seq), len(names), names))
    batch_size = int(shapes[0][0]) if shapes and shapes[0] and int(shapes[0][0]) > 0 else 1
    source = _as_batches(batches, batch_size)

    class JetsonDeployCalibrator(base):  # type: ignore[misc, valid-type]
        """Feeds calibration batches to TensorRT; see make_calibrator."""

        def __init__(self) -> None:
            base.__init__(self)  # pybind11 trampolines must be initialised explicitly
            self.kind = kind
            self.batch_size = batch_size  # samples per batch (the input's batch axis)
            self.cache_path = cache_path
            self.read_only_cache = read_only_cache
            self.input_names = names
            self.batches_served = 0
            self.skipped_partial = 0
            self.cache_bytes: "Optional[bytes]" = None
            self.cache_read = False
            self.error: "Optional[BaseException]" = None
            self._iter: "Optional[Iterator[Any]]" = None
            self._alloc = allocator
            self._buffers: "Dict[str, Any]" = {}

        # -- TensorRT interface --------------------------------------------------------------
        def get_batch_size(self) -> int:
            # Explicit-batch networks (all ONNX networks) take the batch from the input shape;
            # TensorRT warns ("Explicit batch network detected and batch size specified") and
            # mis-sizes batches when this is not 1 -- Polygraphy's calibrator returns 1 as well.
            return 1

        def get_batch(self, names_: "List[str]", *args: Any) -> "Optional[List[int]]":
            try:
                return self._next(list(names_))
            except BaseException as exc:  # noqa: BLE001 -- never let an exception reach C++
                self.error = exc
                self.free()
                return None

        # TensorRT 8.2 calls these from noexcept trampolines without try/catch (NVIDIA/TensorRT
        # release/8.2 python/src/infer/pyInt8.cpp L28-106): an exception escaping here is
        # std::terminate, i.e. the process aborts.  Keep it as self.error; the build reports it.
        def read_calibration_cache(self) -> "Optional[bytes]":
            try:
                data = self._read_cache()
            except BaseException as exc:  # noqa: BLE001 -- never let an exception reach C++
                self.error = exc
                return None
            self.cache_read = bool(data)
            return data or None

        def write_calibration_cache(self, cache: Any) -> None:
            try:
                self._write_cache(cache)
            except BaseException as exc:  # noqa: BLE001 -- never let an exception reach C++
                self.error = exc

        def _write_cache(self, cache: Any) -> None:
            data = bytes(cache)
            self.cache_bytes = data
            if self.cache_path is None or self.read_only_cache:
                return
            if hasattr(self.cache_path, "write"):
                if hasattr(self.cache_path, "seek"):
                    self.cache_path.seek(0)
                self.cache_path.write(data)
                if hasattr(self.cache_path, "truncate"):
                    self.cache_path.truncate()
            else:
                atomic_write_bytes(self.cache_path, data)

        # -- helpers ---------------------------------------------------------------------------
        def _read_cache(self) -> "Optional[bytes]":
            p = self.cache_path
            if p is None:
                return None
            if hasattr(p, "read"):
                if hasattr(p, "seek"):
                    p.seek(0)
                data = p.read()
                return data.encode() if isinstance(data, str) else bytes(data)
            path = Path(p)
            if path.is_file() and path.stat().st_size > 0:
                return path.read_bytes()
            return None

        def _device(self) -> Any:
            if self._alloc is None:
                from .cuda import default_allocator

                self._alloc = default_allocator()
            return self._alloc

        def _next(self, want: "List[str]") -> "Optional[List[int]]":
            if self._iter is None:
                self._iter = iter(source)
            while True:
                try:
                    item = next(self._iter)
                except StopIteration:
                    self.free()
                    return None
                feeds = self._feeds(item, want)
                if feeds is not None:
                    break
            ptrs = []
            dev = self._device()
            for n in want:
                a = feeds[n]
                buf = self._buffers.get(n)
                if buf is None or buf.nbytes < a.nbytes:
                    if buf is not None:
                        buf.free()
                    buf = self._buffers[n] = dev.alloc(a.nbytes)
                dev.htod(buf, a)
                ptrs.append(int(buf.ptr))
            self.batches_served += 1
            return ptrs

        def _feeds(self, item: Any, want: "List[str]") -> "Optional[Dict[str, np.ndarray]]":
            engine_names = self.input_names if self.input_names is not None else want
            if self.input_names is not None and sorted(want) != sorted(self.input_names):
                raise BadInput("TensorRT asks for inputs {}, the calibrator was made for {}".format(want, self.input_names))
            if isinstance(item, dict):
                missing = [n for n in want if n not in item]
                if missing:
                    raise BadInput("calibration batch has {}, missing engine input(s) {}".format(sorted(item), missing))
                raw = {n: item[n] for n in want}
            elif isinstance(item, (list, tuple)):
                if len(item) != len(engine_names):
                    raise BadInput("calibration batch has {} arrays for inputs {}".format(len(item), engine_names))
                raw = dict(zip(engine_names, item))
            else:
                if len(want) != 1:
                    raise BadInput("a bare array batch needs a one-input model; the engine takes {}".format(want))
                raw = {want[0]: item}
            out = {}
            for n in want:
                i = engine_names.index(n)
                shape = shapes[i] if shapes is not None else None
                dtype = dtypes[i] if dtypes is not None else np.float32
                a = np.asarray(raw[n])
                if shape is not None and shape and int(shape[0]) > 0 and a.ndim == len(shape) and a.shape[0] < int(shape[0]):
                    self.skipped_partial += 1  # a short last batch: TensorRT needs full static batches
                    return None
                out[n] = _conform(a, n, shape, dtype)
            return out

        def free(self) -> None:
            for buf in self._buffers.values():
                buf.free()
            self._buffers = {}

    return JetsonDeployCalibrator()


class Torch2trtCalibDataset:
    """A calibration set as torch2trt's ``int8_calib_dataset``.

    ``ds[i]`` is a list with one tensor (the i-th sample, no batch axis) on
    ``device``; ``len(ds)`` is the number of samples.  Sequential indexing (what
    torch2trt does) streams the set; random access restarts the stream.

    ``batch_axis``: torch2trt v0.5.0/master's ``DatasetCalibrator`` hands TensorRT each item's own
    ``data_ptr()`` (``torch2trt/dataset_calibrator.py``: no batch buffer, no copy, no dtype
    conversion), so there the item must already be the batch (1, C, H, W) in the engine's dtype,
    contiguous on the device, and alive after ``__getitem__`` returns: the last items are kept.
    v0.2-v0.4 copy items into their own batch buffers (``calibration.py``) and want no batch axis.
    """

    def __init__(self, calib_set: Any, device: str = "cuda", dtype: Any = np.float32) -> None:
        if not hasattr(calib_set, "iter_batches"):
            raise BadInput("Torch2trtCalibDataset needs a calibration set with iter_batches(batch_size), got {}".format(type(calib_set).__name__))
        self.calib_set = calib_set
        self.device = device
        self.dtype = np.dtype(dtype)
        self._n = len(calib_set)
        self._iter: "Optional[Iterator[np.ndarray]]" = None
        self._pos = 0
        self.batch_axis = False
        self._alive: "List[Any]" = []

    def __len__(self) -> int:
        return self._n

    def _sample(self, index: int) -> "np.ndarray":
        if self._iter is None or index < self._pos:
            self._iter = self.calib_set.iter_batches(1)
            self._pos = 0
        while True:
            try:
                batch = next(self._iter)
            except StopIteration:
                raise IndexError(index)
            self._pos += 1
            if self._pos - 1 == index:
                return np.asarray(batch)[0]

    def __getitem__(self, index: int) -> "List[Any]":
        from .._lazy import require

        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError(index)
        torch = require("torch", "torch2trt INT8 calibration")
        a = np.ascontiguousarray(self._sample(index), dtype=self.dtype)
        if self.batch_axis:
            a = a[None]
        t = torch.from_numpy(a).to(self.device).contiguous()
        self._alive = (self._alive + [t])[-2:]  # TensorRT reads it after get_batch returned
        return [t]


def cache_file_object(data: bytes = b"") -> "io.BytesIO":
    """An in-memory cache 'file' (for callers that keep caches in a bundle, not on disk)."""
    return io.BytesIO(data)
