"""torch backend: a ``torch.export`` program (``model.pt2``) or TorchScript, on CUDA or the CPU.

This is the GPU path that can be measured on a discrete GPU without TensorRT.  Besides the
host-level :meth:`infer`, it offers:

* :meth:`TorchEngine.forward` -- device tensors in, device tensors out (the pipeline's torch CUDA
  executor wraps it with GPU preprocessing and captures both in a CUDA graph);
* :meth:`TorchEngine.enqueue` -- the device-pointer interface TensorRT has (``{name: device_ptr}``
  and a ``cudaStream_t`` handle), so the pycuda memory path runs on it unchanged.
"""
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..._lazy import require
from ...errors import BadInput
from ..cuda_graph import CudaGraph, run_step
from ..engine import Engine, TensorInfo
from ..torch_compile import compile_wanted, keep_inductor_cache

_NP = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8, "int8": np.int8, "int32": np.int32,
       "int64": np.int64, "bool": np.bool_, "bfloat16": np.float32}


log = logging.getLogger(__name__)


def _np_dtype(tdtype: Any) -> "np.dtype":
    return np.dtype(_NP.get(str(tdtype).replace("torch.", ""), np.float32))


class _DevicePointer:
    """Wraps a raw device pointer for ``torch.as_tensor`` (``__cuda_array_interface__``)."""

    _TYPESTR = {"float32": "<f4", "float16": "<f2", "uint8": "|u1", "int8": "|i1", "int32": "<i4", "int64": "<i8",
                "bool": "|b1"}

    def __init__(self, ptr: int, shape: "Sequence[int]", dtype: Any, stream: "Optional[int]" = None) -> None:
        self.__cuda_array_interface__ = {
            "shape": tuple(int(s) for s in shape),
            "typestr": self._TYPESTR[np.dtype(dtype).name],
            "data": (int(ptr), False),
            "version": 2,
            "strides": None,
        }


def _flatten(out: Any) -> "List[Any]":
    if isinstance(out, (list, tuple)):
        res: "List[Any]" = []
        for o in out:
            res.extend(_flatten(o))
        return res
    if isinstance(out, dict):
        return _flatten(list(out.values()))
    return [out]


class TorchEngine(Engine):
    """A torch module (exported program / TorchScript / ``nn.Module``) on one device.

    ``precision`` is the bundle's: ``fp16`` runs the module in half on CUDA (channels-last for
    4-D NCHW inputs, where cuDNN's tensor-core convolutions want it), ``int8`` says it runs FP16
    (the exported program has no INT8 kernels; TensorRT runs the INT8 engine), and both run FP32
    on the CPU, saying so.  ``describe()["precision"]`` is what actually runs.
    """

    backend = "torch"

    def __init__(self, model: Any, device: "Optional[str]" = None, input_name: str = "input",
                 input_shape: "Optional[Sequence[int]]" = None, input_dtype: str = "float32",
                 output_names: "Optional[Sequence[str]]" = None, artifact_kind: str = "module",
                 half: bool = False, precision: "Optional[str]" = None,
                 channels_last: "Optional[bool]" = None, compile: "Optional[bool]" = None,
                 cache_dir: "Optional[str]" = None, bundle_sha256: str = "", dynamic_batch: bool = False) -> None:
        super().__init__()
        self.model_src = model
        self.device_name = device
        self.input_name = input_name
        self.input_shape = tuple(int(s) for s in input_shape) if input_shape else None
        self.input_dtype = input_dtype
        self.output_name_hint = list(output_names or [])
        self.artifact_kind = artifact_kind
        self.bundle_precision = precision or ("fp16" if half else "fp32")
        self.half = bool(half) or self.bundle_precision in ("fp16", "int8")
        self.channels_last_wanted = channels_last
        self.channels_last = False
        self.precision = "fp32"
        self.precision_note = ""
        self.module: Any = None
        self.device: Any = None
        self._torch: Any = None
        #: torch.compile at load (None: on CUDA, off on the CPU); the compiled callable, or None
        self.compile_wanted = compile
        self.cache_dir = cache_dir
        self.bundle_sha256 = bundle_sha256
        self.dynamic_batch = bool(dynamic_batch)
        self.compiled: Any = None
        self._fn: Any = None

    # ---- loading -------------------------------------------------------------------------
    def _load(self) -> Any:
        torch = self._torch
        src = self.model_src
        if not isinstance(src, (str, Path)):
            return src
        path = Path(src)
        if not path.is_file():
            raise BadInput("torch model {} not found".format(path))
        if path.suffix == ".pt2" or self.artifact_kind == "exported-program":
            ep = torch.export.load(str(path))
            return ep.module()
        return torch.jit.load(str(path), map_location="cpu")

    def activate_impl(self) -> None:
        torch = self._torch = require("torch", "the torch backend")
        want = self.device_name or ("cuda" if torch.cuda.is_available() else "cpu")
        if str(want).startswith("cuda") and not torch.cuda.is_available():
            raise BadInput("torch backend: device {} asked for but torch sees no CUDA GPU; use --device cpu".format(want))
        self.device = torch.device(want)
        self.is_gpu = self.device.type == "cuda"
        if compile_wanted(self.compile_wanted, self.is_gpu):
            from ...bundle.engine_cache import EngineCache

            keep_inductor_cache(EngineCache(self.cache_dir))  # before the load: torch.export.load settles it
        mod = self._load()
        try:
            mod = mod.to(self.device)
        except Exception:  # exported-program modules move fine; be lenient with exotic ones
            pass
        if hasattr(mod, "eval"):
            try:
                mod.eval()
            except Exception:  # torch.export modules may refuse train/eval switching
                pass
        self.module = mod
        if self.input_shape is None:
            raise BadInput("torch backend needs the input shape (the bundle's spec gives it)")
        outs, in_dtype = self._apply_precision()
        names = self.output_name_hint if len(self.output_name_hint) == len(outs) else ["output{}".format(i) for i in range(len(outs))]
        self.inputs = [TensorInfo(self.input_name, self.input_shape, np.dtype(_NP[in_dtype]))]
        self.outputs = [TensorInfo(n, tuple(o.shape), _np_dtype(o.dtype)) for n, o in zip(names, outs)]
        self._fn = self.module
        self._compile(in_dtype)

    def _compile(self, in_dtype: str) -> None:
        """torch.compile the module at load, through the engine cache (:mod:`..torch_compile`)."""
        from ..torch_compile import compile_module

        if not compile_wanted(self.compile_wanted, self.is_gpu):
            return
        torch = self._torch
        x = torch.zeros(self.input_shape, dtype=getattr(torch, in_dtype), device=self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # a dynamic batch axis from batch 2 up (traced at 1, torch specialises the axis to 1)
        dynamic = self.dynamic_batch and int(self.input_shape[0]) >= 2
        self.compiled = compile_module(torch, self.module, x, self.bundle_sha256 or str(self.model_src), self.precision,
                                       dynamic, self.cache_dir)
        if self.compiled.how != "eager":
            self._fn = self.compiled

    def _try_forward(self, dtype_name: str) -> "List[Any]":
        torch = self._torch
        x = torch.zeros(self.input_shape, dtype=getattr(torch, dtype_name), device=self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return _flatten(self.module(x))

    def _apply_precision(self) -> "Tuple[List[Any], str]":
        """Honour the bundle's precision; returns (warm-up outputs, input dtype name)."""
        torch = self._torch
        float_in = self.input_dtype in ("float32", "float16")
        bp = self.bundle_precision
        if not (self.half and float_in):
            return self._try_forward(self.input_dtype), self.input_dtype
        if not self.is_gpu:
            self.precision_note = "{} bundle on the CPU: the torch backend runs FP32".format(bp)
            log.info("torch backend: %s", self.precision_note)
            return self._try_forward(self.input_dtype), self.input_dtype
        fp32_module = self.module
        want_cl = self.channels_last_wanted
        if want_cl is None:
            want_cl = len(self.input_shape or ()) == 4
        try:
            self.module = fp32_module.half()
            if want_cl:
                self.module = self.module.to(memory_format=torch.channels_last)
                self.channels_last = True
            outs = self._try_forward("float16")
        except Exception as exc:  # a graph with fixed float32 ops cannot run in half: say so, run FP32
            self.channels_last = False
            self.module = self._load().to(self.device)
            self.precision_note = "{} bundle: the exported program does not run in half ({}); running FP32".format(
                bp, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            log.warning("torch backend: %s", self.precision_note)
            return self._try_forward(self.input_dtype), self.input_dtype
        self.precision = "fp16"
        if bp == "int8":
            self.precision_note = ("int8 bundle: the torch backend has no INT8 kernels; running the exported program "
                                   "in FP16 (the TensorRT engine runs INT8)")
            log.info("torch backend: %s", self.precision_note)
        return outs, "float16"

    def deactivate_impl(self) -> None:
        self.module = self._fn = self.compiled = None

    # ---- running ---------------------------------------------------------------------------
    def forward(self, x: Any) -> "Dict[str, Any]":
        """Device tensor in -> ``{output name: device tensor}`` (no host sync; call in inference mode);
        the compiled module where it compiled."""
        outs = _flatten(self._fn(x))
        return {t.name: o for t, o in zip(self.outputs, outs)}

    def forward_eager(self, x: Any) -> "Dict[str, Any]":
        """:meth:`forward` on the uncompiled module (bench's eager reference)."""
        outs = _flatten(self.module(x))
        return {t.name: o for t, o in zip(self.outputs, outs)}

    def infer_impl(self, feeds: "Dict[str, np.ndarray]") -> "Dict[str, np.ndarray]":
        torch = self._torch
        # the input is made in inference mode, as every executor's is: a compiled module was
        # compiled for such tensors (dynamo guards on the difference)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(feeds[self.input_name])).to(self.device)
            want = getattr(torch, np.dtype(self.inputs[0].dtype).name)
            if x.dtype != want and x.is_floating_point():
                x = x.to(want)
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            if not x.is_inference():  # from_numpy on the CPU shares the array's memory
                x = x.clone()
            outs = self.forward(x)
        return {k: v.detach().cpu().numpy() for k, v in outs.items()}

    def enqueue_impl(self, buffers: "Dict[str, Any]", stream: Any) -> None:
        """``buffers``: name -> device pointer (int) or CUDA tensor; ``stream``: handle or torch stream."""
        torch = self._torch

        def as_tensor(name: str, info: "TensorInfo") -> Any:
            b = buffers[name]
            if isinstance(b, int):
                return torch.as_tensor(_DevicePointer(b, info.shape, info.dtype), device=self.device)
            return b

        if stream is None:
            s = torch.cuda.current_stream(self.device)
        elif isinstance(stream, int):
            s = torch.cuda.ExternalStream(stream, device=self.device)
        else:
            s = stream
        with torch.cuda.stream(s), torch.inference_mode():
            x = as_tensor(self.input_name, self.inputs[0])
            outs = self.forward(x)
            for t in self.outputs:
                as_tensor(t.name, t).copy_(outs[t.name].reshape(t.shape))

    def capture_graph(self, buffers: "Dict[str, Any]", stream: Any = None, prologue: "Optional[Callable[[], None]]" = None,
                      epilogue: "Optional[Callable[[], None]]" = None) -> "CudaGraph":
        """Capture one :meth:`enqueue` on these buffers into a CUDA graph (same contract as the
        TensorRT backend's): the buffers must stay allocated; ``replay()`` relaunches on ``stream``.
        ``prologue``/``epilogue``: the caller's work queued on ``stream`` before/after the enqueue
        (a preprocessing kernel, the copy-out), captured into the same graph."""
        torch = self._torch
        if not self.is_gpu:
            raise BadInput("CUDA graph capture needs the torch backend on a CUDA device")
        if stream is None:
            s = torch.cuda.Stream(self.device)
        elif isinstance(stream, int):
            s = torch.cuda.ExternalStream(stream, device=self.device)
        else:
            s = stream
        # warm-up outside the capture (allocator, cuDNN autotune); not the caller's steps: its
        # copy-out would overwrite results still to be collected
        self.enqueue(buffers, s)
        s.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=s, capture_error_mode="thread_local"):
            run_step(prologue)
            self.enqueue_impl(buffers, s)
            run_step(epilogue)
        return CudaGraph(g, s)

    def describe(self) -> "Dict[str, Any]":
        d = super().describe()
        d.update(device=str(self.device) if self.device is not None else self.device_name, artifact=self.artifact_kind,
                 precision=self.precision, bundle_precision=self.bundle_precision, channels_last=self.channels_last)
        d.update(self.compiled.describe() if self.compiled is not None else {"compile": "off"})
        if self.precision_note:
            d["precision_note"] = self.precision_note
        return d
