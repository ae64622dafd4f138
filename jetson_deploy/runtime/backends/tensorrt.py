"""TensorRT backend: a deserialized plan behind the :class:`Engine` interface.

API generations are chosen by feature detection (:func:`jetson_deploy.trt.features`):

* I/O description: the tensor-name API (``num_io_tensors``, ``get_tensor_name/mode/shape/dtype``;
  TensorRT 8.5+ and 10.x) where present, else bindings (``num_bindings``,
  ``get_binding_name``, ``binding_is_input``; 8.x).
* :meth:`TensorRTEngine.enqueue` -- device pointers + a CUDA stream handle:
  ``set_tensor_address`` + ``execute_async_v3(stream)`` (8.5+/10.x), else a bindings list
  + ``execute_async_v2(bindings, stream)`` (8.x).  It never synchronises: the caller
  (the frame pipeline) owns the buffers, the stream and the events.
* :meth:`TensorRTEngine.infer` -- the simple synchronous API: device buffers from pycuda
  (lazy; torch CUDA when pycuda is missing), copy in, execute, sync, copy out.
* Dynamic shapes: ``set_input_shape`` (8.5+) or ``set_binding_shape`` (8.x); after activate()
  dynamic inputs are at the active profile's opt shape until :meth:`set_input_shapes` changes them.
* :meth:`TensorRTEngine.capture_graph`: a CUDA graph of one enqueue, where
  ``execute_async_v3`` exists and every shape is static (batch-1 latency is launch-bound).
"""
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import BadInput, CheckFailed
from ...trt.compat import features, load_tensorrt, nptype
from ...trt.logger import make_logger
from ..cuda_graph import CudaGraph, capture_on_stream, driver, run_step, synchronize_stream, torch_capture
from ..engine import Engine, TensorInfo

log = logging.getLogger(__name__)


def stream_handle(stream: Any) -> int:
    """The raw ``cudaStream_t`` as an int: from an int, a pycuda Stream (``.handle``) or a torch stream (``.cuda_stream``)."""
    if stream is None:
        return 0
    if isinstance(stream, int):
        return stream
    for attr in ("handle", "cuda_stream", "ptr"):
        if hasattr(stream, attr):
            return int(getattr(stream, attr))
    return int(stream)


def device_pointer(buf: Any, name: str = "") -> int:
    """An int device address from an int, a pycuda DeviceAllocation, a torch CUDA tensor, or a mapped host buffer."""
    if isinstance(buf, (bool, np.ndarray)):
        raise BadInput("tensorrt enqueue: buffer for '{}' must be device memory (a pointer), not a host {}".format(name, type(buf).__name__))
    if isinstance(buf, int):
        return buf
    dp = getattr(buf, "device_ptr", None)  # runtime.memory.HostBuffer (mapped pinned memory)
    if dp is not None:
        return int(dp)
    if hasattr(buf, "data_ptr"):
        if getattr(buf, "is_cuda", True) is False:
            raise BadInput("tensorrt enqueue: tensor for '{}' is on the CPU; TensorRT needs CUDA memory".format(name))
        return int(buf.data_ptr())
    if hasattr(buf, "ptr"):
        return int(buf.ptr)
    return int(buf)


class TensorRTEngine(Engine):
    """A TensorRT engine from plan bytes or a ``.engine`` path.

    ``profile``: the optimization profile to run with (multi-profile engines).
    ``allocator``: device memory for :meth:`infer` (default pycuda, else torch CUDA).
    ``dla_core``: the DLA core a DLA plan runs on (set on the runtime before deserializing).
    """

    backend = "tensorrt"
    is_gpu = True

    def __init__(self, plan: "Union[bytes, bytearray, memoryview, str, Path]", *, profile: int = 0,
                 allocator: Any = None, verbose: bool = False, dla_core: "Optional[int]" = None) -> None:
        super().__init__()
        if isinstance(plan, (str, Path)):
            self.path: "Optional[Path]" = Path(plan)
            try:
                data = self.path.read_bytes()
            except OSError as exc:
                raise BadInput("cannot read TensorRT engine {} ({})".format(plan, exc.strerror or exc))
            source = self.path.name
        else:
            self.path = None
            data = bytes(plan)
            source = "engine plan ({} bytes)".format(len(data))
        self.trt = load_tensorrt("the tensorrt backend")
        self.features = features(self.trt)
        self.logger = make_logger(self.trt, verbose)
        _ensure_cuda_context()
        self.runtime = self.trt.Runtime(self.logger.native)
        if dla_core is not None:
            # before deserializing: the core binds to the engine then (NvInferRuntime.h 8.2 L645-652;
            # trtexec's order, sampleEngines.cpp 8.2 L999-1004); unset, a DLA plan runs on core 0
            self.runtime.DLA_core = int(dla_core)
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise CheckFailed(
                "{} could not be deserialized by TensorRT {}: {} -- a plan only loads on the TensorRT version and GPU "
                "it was built for; rebuild it from model.onnx on this device".format(
                    source, self.features.version_string, self.logger.summary() or "no error logged"))
        self.profile = int(profile)
        nprof = int(getattr(self.engine, "num_optimization_profiles", 1) or 1)
        if not 0 <= self.profile < nprof:
            raise BadInput("optimization profile {} does not exist: the engine has {}".format(profile, nprof))
        self._allocator = allocator
        self._binding_index: "Dict[str, int]" = {}
        self._io_order: "List[str]" = []
        self._read_io()
        self.context: Any = None
        self._addr: "Dict[str, int]" = {}
        self._shapes: "Dict[str, Tuple[int, ...]]" = {}
        self._dev: "Dict[str, Any]" = {}
        self._stream: Any = None
        self.source = source

    # ---- description ------------------------------------------------------------------------
    def _read_io(self) -> None:
        trt, eng = self.trt, self.engine
        ins: "List[TensorInfo]" = []
        outs: "List[TensorInfo]" = []
        if self.features.tensor_api:
            for i in range(eng.num_io_tensors):
                name = eng.get_tensor_name(i)
                is_in = eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT
                info = TensorInfo(name, tuple(int(d) for d in eng.get_tensor_shape(name)), nptype(trt, eng.get_tensor_dtype(name)))
                (ins if is_in else outs).append(info)
                self._io_order.append(name)
        elif self.features.binding_api:
            per_profile = eng.num_bindings // max(1, int(getattr(eng, "num_optimization_profiles", 1) or 1))
            for i in range(per_profile):
                name = eng.get_binding_name(i)
                info = TensorInfo(name, tuple(int(d) for d in eng.get_binding_shape(i)), nptype(trt, eng.get_binding_dtype(i)))
                (ins if eng.binding_is_input(i) else outs).append(info)
                self._binding_index[name] = i
                self._io_order.append(name)
        else:
            raise CheckFailed("TensorRT {} has neither the tensor-name nor the binding API".format(self.features.version_string))
        self.inputs, self.outputs = ins, outs

    @property
    def dynamic(self) -> bool:
        return any(d < 0 for t in self.inputs for d in t.shape)

    def profile_shapes(self, name: str) -> "Optional[List[Tuple[int, ...]]]":
        """(min, opt, max) of a dynamic input in the active profile."""
        eng = self.engine
        if hasattr(eng, "get_tensor_profile_shape"):
            shapes = eng.get_tensor_profile_shape(name, self.profile)
        elif hasattr(eng, "get_profile_shape"):
            shapes = eng.get_profile_shape(self.profile, self._binding_index[name])
        else:
            return None
        return [tuple(int(d) for d in s) for s in shapes]

    # ---- lifecycle ------------------------------------------------------------------------------
    def _fresh_log(self) -> None:
        """Per-call collection: the process-wide logger also reached us with other callers' lines."""
        if self.logger.errors:
            self.logger.clear()

    def activate_impl(self) -> None:
        self._fresh_log()
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise CheckFailed("TensorRT could not create an execution context: {}".format(self.logger.summary() or "out of GPU memory?"))
        if self.profile:
            try:
                if hasattr(self.context, "set_optimization_profile_async"):
                    # raises RuntimeError on failure, never returns False (pyCore.cpp 8.2 L292-299, 10.3 L326-332)
                    self.context.set_optimization_profile_async(self.profile, 0)
                else:
                    self.context.active_optimization_profile = self.profile
            except RuntimeError as exc:
                self.context = None
                raise CheckFailed("TensorRT refused optimization profile {}: {}".format(
                    self.profile, self.logger.summary() or str(exc))) from None
        self._addr = {}
        self._shapes = {}
        opt = {}
        for t in self.inputs:
            if all(d >= 0 for d in t.shape):
                self._shapes[t.name] = t.shape
            else:
                prof = self.profile_shapes(t.name)
                if prof:
                    opt[t.name] = prof[1]
        if opt:  # dynamic inputs start at the profile's opt shape (what the bundle's spec names)
            self.set_input_shapes(opt)

    def deactivate_impl(self) -> None:
        for buf in self._dev.values():
            buf.free()
        self._dev = {}
        self._stream = None
        self.context = None
        self._addr = {}

    # ---- shapes ------------------------------------------------------------------------------------
    def set_input_shapes(self, shapes: "Dict[str, Sequence[int]]") -> None:
        """Set the shapes of dynamic inputs (call after activate(), before enqueue())."""
        if self.context is None:
            raise RuntimeError("tensorrt engine: call activate() before set_input_shapes()")
        known = {t.name: t for t in self.inputs}
        self._fresh_log()
        for name, shape in shapes.items():
            if name not in known:
                raise BadInput("tensorrt engine: no input named '{}' (inputs: {})".format(name, sorted(known)))
            s = tuple(int(d) for d in shape)
            if self._shapes.get(name) == s:
                continue
            want = known[name].shape
            if len(s) != len(want) or any(w >= 0 and w != d for w, d in zip(want, s)):
                raise BadInput("tensorrt engine: input '{}' has shape {}, engine takes {}".format(name, s, want))
            if self.features.set_input_shape:
                ok = self.context.set_input_shape(name, s)
            else:
                ok = self.context.set_binding_shape(self._profile_binding(name), s)
            if not ok:
                prof = self.profile_shapes(name)
                raise BadInput("tensorrt engine: input '{}' shape {} is outside optimization profile {} ({} .. {})".format(
                    name, s, self.profile, prof[0] if prof else "?", prof[2] if prof else "?"))
            self._shapes[name] = s

    def _profile_binding(self, name: str) -> int:
        """8.x binding index of ``name`` in the active profile (bindings repeat per profile)."""
        return self.profile * len(self._io_order) + self._binding_index[name]

    def output_shapes(self) -> "Dict[str, Tuple[int, ...]]":
        """Output shapes for the current input shapes."""
        out = {}
        for t in self.outputs:
            if self.features.tensor_api and hasattr(self.context, "get_tensor_shape"):
                s = self.context.get_tensor_shape(t.name)
            else:
                s = self.context.get_binding_shape(self._profile_binding(t.name))
            out[t.name] = tuple(int(d) for d in s)
        return out

    # ---- device-level enqueue ------------------------------------------------------------------------
    def enqueue_impl(self, buffers: "Dict[str, Any]", stream: Any) -> None:
        """Enqueue on ``stream`` with caller-owned device buffers ``{name: pointer}``; never synchronises."""
        self._fresh_log()
        missing = [n for n in self._io_order if n not in buffers]
        if missing:
            raise BadInput("tensorrt enqueue: no buffer for {} (needs {})".format(missing, self._io_order))
        self._enqueue_on(self.context, self._addr, buffers, stream_handle(stream))

    def _enqueue_on(self, ctx: Any, addr_cache: "Dict[str, int]", buffers: "Dict[str, Any]", handle: int) -> None:
        if self.features.execute_async_v3:
            for name in self._io_order:
                p = device_pointer(buffers[name], name)
                if addr_cache.get(name) != p:  # addresses persist in the context: set only on change
                    if not ctx.set_tensor_address(name, p):
                        raise RuntimeError("TensorRT set_tensor_address('{}') failed: {}".format(name, self.logger.summary()))
                    addr_cache[name] = p
            ok = ctx.execute_async_v3(handle)
        else:
            n = len(self._io_order)
            bindings = [0] * int(self.engine.num_bindings)
            base = n * self.profile
            for name in self._io_order:
                bindings[base + self._binding_index[name]] = device_pointer(buffers[name], name)
            ok = ctx.execute_async_v2(bindings, handle)
        if not ok:
            raise RuntimeError("TensorRT execution failed: {}".format(self.logger.summary() or "no error logged"))

    # ---- simple host API -------------------------------------------------------------------------------
    def _device(self) -> Any:
        if self._allocator is None:
            from ...trt.cuda import default_allocator

            self._allocator = default_allocator()
        return self._allocator

    def infer_impl(self, feeds: "Dict[str, np.ndarray]") -> "Dict[str, np.ndarray]":
        dev = self._device()
        if self._stream is None:
            self._stream = dev.stream()
        host_in = {t.name: np.ascontiguousarray(feeds[t.name], dtype=t.dtype) for t in self.inputs}
        dyn = {n: a.shape for n, a in host_in.items() if any(d < 0 for d in self._input(n).shape)}
        if dyn:
            self.set_input_shapes(dyn)
        out_shapes = self.output_shapes()
        host_out = {t.name: np.empty(out_shapes[t.name], dtype=t.dtype) for t in self.outputs}
        ptrs: "Dict[str, int]" = {}
        for name, arr in list(host_in.items()) + list(host_out.items()):
            buf = self._dev.get(name)
            if buf is None or buf.nbytes < arr.nbytes:
                if buf is not None:
                    buf.free()
                buf = self._dev[name] = dev.alloc(arr.nbytes)
            ptrs[name] = buf.ptr
        for name, arr in host_in.items():
            dev.htod(self._dev[name], arr, self._stream)
        self.enqueue_impl(ptrs, dev.handle(self._stream))
        for name, arr in host_out.items():
            dev.dtoh(arr, self._dev[name], self._stream)
        dev.synchronize(self._stream)  # the simple API may block; enqueue() never does
        return host_out

    def _input(self, name: str) -> "TensorInfo":
        for t in self.inputs:
            if t.name == name:
                return t
        raise KeyError(name)

    # ---- CUDA graphs ------------------------------------------------------------------------------------
    def capture_graph(self, buffers: "Dict[str, Any]", stream: Any = None, prologue: "Optional[Callable[[], None]]" = None,
                      epilogue: "Optional[Callable[[], None]]" = None) -> Any:
        """Capture one enqueue into a CUDA graph; its ``launcher()`` / ``replay()`` relaunch it.

        Needs ``execute_async_v3`` (TensorRT 8.5+) and static shapes; the buffers must stay
        the same allocations for the graph's life.  Each graph gets its own execution context
        (kept on ``graph.context``).  TensorRT requires one plain enqueue before capture (it
        may allocate on the first run), which this does.  ``prologue``/``epilogue``: the caller's
        work queued on ``stream`` before/after the enqueue (preprocessing kernel, copy-out),
        captured into the same graph so a frame costs one launch; they run inside the capture
        only (the warm-up's copy-out would overwrite results still to be collected).

        Captured through the CUDA driver (no torch needed: a JetPack 5/6 board with TensorRT and
        pycuda only) when ``stream`` is given and libcuda has the graph API (CUDA 11.4+); else
        through torch.  Both capture thread-locally: other threads' CUDA calls stay legal.
        """
        if self.context is None:
            raise RuntimeError("tensorrt engine: call activate() before capture_graph()")
        if not self.features.execute_async_v3:
            raise BadInput("CUDA graph capture needs execute_async_v3 (TensorRT 8.5+); this is TensorRT {}".format(self.features.version_string))
        if self.dynamic:
            raise BadInput("CUDA graph capture needs static shapes; this engine has dynamic inputs")
        missing = [n for n in self._io_order if n not in buffers]
        if missing:
            raise BadInput("tensorrt capture: no buffer for {} (needs {})".format(missing, self._io_order))
        lib = driver() if stream is not None else None
        if lib is not None:
            return self._capture_with_driver(lib, buffers, stream_handle(stream), prologue, epilogue)
        return self._capture_with_torch(buffers, stream, prologue, epilogue)

    def _graph_context(self, handle: int) -> Any:
        """A new execution context for one graph.

        One context per graph: NVIDIA's practice is one context <-> one stream <-> one graph
        (trtexec, samples/common/sampleInference.cpp release/10.3 L371-411 and L952-1011), and
        enqueue on one context from concurrent streams is undefined (NvInferRuntime.h 8.6 L3102-3104).
        No source says graphs captured from one context with different addresses may share it.
        """
        ctx = self.engine.create_execution_context()
        if ctx is None:
            raise CheckFailed("TensorRT could not create an execution context for a CUDA graph: {}".format(
                self.logger.summary() or "out of GPU memory?"))
        if self.profile:
            ctx.set_optimization_profile_async(self.profile, handle)
        return ctx

    def _captured(self, ctx: Any, addr: "Dict[str, int]", buffers: "Dict[str, Any]", handle: int, prologue: Any,
                  epilogue: Any) -> "Callable[[], None]":
        """What a graph holds: the caller's prologue, one enqueue on the graph's context, its epilogue."""

        def body() -> None:
            run_step(prologue)
            self._enqueue_on(ctx, addr, buffers, handle)
            run_step(epilogue)

        return body

    def _capture_with_driver(self, lib: Any, buffers: "Dict[str, Any]", handle: int, prologue: Any, epilogue: Any) -> Any:
        ctx = self._graph_context(handle)
        addr: "Dict[str, int]" = {}
        self._enqueue_on(ctx, addr, buffers, handle)  # the warm-up TensorRT requires, not captured
        # the GIL released while the GPU drains: capture and output threads keep running
        synchronize_stream(lib, handle, "cuStreamSynchronize after TensorRT's warm-up enqueue")

        g = capture_on_stream(handle, self._captured(ctx, addr, buffers, handle, prologue, epilogue), lib=lib)
        g.context = ctx  # the graph's kernels use this context's state: keep it alive with the graph
        return g

    def _capture_with_torch(self, buffers: "Dict[str, Any]", stream: Any, prologue: Any, epilogue: Any) -> "CudaGraph":
        from ..._lazy import require

        torch = require("torch", "CUDA graph capture without the CUDA driver's graph API")
        if not torch.cuda.is_available():
            raise BadInput("CUDA graph capture needs a CUDA GPU")
        s = torch.cuda.Stream() if stream is None else torch.cuda.ExternalStream(stream_handle(stream))
        ctx = self._graph_context(s.cuda_stream)
        addr: "Dict[str, int]" = {}
        # TensorRT may allocate on the first run: not captured (the caller's steps are not run here:
        # its copy-out would overwrite results still to be collected)
        self._enqueue_on(ctx, addr, buffers, s.cuda_stream)
        s.synchronize()
        graph = torch.cuda.CUDAGraph()
        # thread-local capture: other threads' CUDA calls (capture thread, sinks) don't break it
        with torch_capture(torch, graph, s):
            self._captured(ctx, addr, buffers, s.cuda_stream, prologue, epilogue)()
        g = CudaGraph(graph, s)
        g.context = ctx
        return g

    def describe(self) -> "Dict[str, Any]":
        d = super().describe()
        d.update(tensorrt=self.features.version_string, api="tensor-name" if self.features.execute_async_v3 else "bindings",
                 source=self.source, profile=self.profile)
        return d

    # ---- bundles -----------------------------------------------------------------------------------------
    @classmethod
    def from_bundle(cls, bundle: Any, device: Any = None, precision: "Optional[str]" = None,
                    cache_dir: Any = None, shapes: "Optional[Dict[str, Any]]" = None, **kw: Any) -> "TensorRTEngine":
        """The engine for this device from a bundle: the bundled plan that matches (TensorRT version, SM,
        precision) exactly, else one built from model.onnx and kept in the local engine cache."""
        from ...bundle.select import resolve_engine
        from ...trt.build import target_for

        trt = load_tensorrt("the tensorrt backend")
        dev = None if (device is None or str(device).startswith("cuda")) else device
        prec = precision or bundle.precision or "fp16"
        target = target_for(trt, dev, prec)
        path, how = resolve_engine(bundle, target["tensorrt"], target["sm"], target["precision"], shapes=shapes, cache_dir=cache_dir)
        try:
            eng = cls(path, **kw)
        except CheckFailed as exc:
            if how != "bundled":
                raise
            # right name, wrong build (deserialize_cuda_engine returned None: pyCore.cpp 8.2 L149-152,
            # 10.3 L163-166): build this device's plan from model.onnx instead of failing the run
            log.warning("bundled engine %s does not load here (%s): building one from model.onnx",
                        Path(str(path)).name, str(exc).split(" -- ")[0])
            path, how = resolve_engine(bundle, target["tensorrt"], target["sm"], target["precision"], shapes=shapes,
                                       cache_dir=cache_dir, skip_bundled=True)
            eng = cls(path, **kw)
        eng.resolved = how  # type: ignore[attr-defined]
        eng.target = target  # type: ignore[attr-defined]
        return eng


def _ensure_cuda_context() -> None:
    """TensorRT uses the current CUDA context: make one current via pycuda (or torch) if available."""
    from ..._lazy import has_module

    if has_module("pycuda"):
        try:
            import pycuda.driver as cuda

            from ...trt.cuda import ensure_pycuda_context

            ensure_pycuda_context(cuda)
            return
        except Exception:  # noqa: BLE001 -- TensorRT's runtime API still makes the primary context
            return
