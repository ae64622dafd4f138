"""Executors: how one frame goes through an engine, with up to ``depth`` frames in flight.

The pipeline owns a ring of ``depth`` slots.  For each frame it calls ``submit(slot, frame)``,
which enqueues copy-in -> infer -> copy-out and records an event; later it asks ``query(slot)``
(non-blocking) or, only when the ring is full, ``wait(slot)`` on the *oldest* slot -- the one
host synchronisation the loop allows -- and then reads ``outputs(slot)``.

* :class:`HostExecutor` -- CPU backends (ONNX Runtime, torch CPU): preprocessing runs on the
  capture thread (``prepare``), inference is synchronous; depth 1.
* :class:`TorchCudaExecutor` -- torch on CUDA: the uint8 BGR frame (already in pinned memory,
  captured there) is copied to the GPU on its own stream; resize/colour/normalise run on the GPU in
  front of the model, and reductions (softmax + top-k, argmax mask) after it, so copies stay small;
  preprocess + model + reduction are captured in one CUDA graph; outputs come back to pinned
  memory; one event per frame.
* :class:`PycudaExecutor` -- the design default on a Jetson (TensorRT engines): pycuda pinned or
  mapped (zero-copy) buffers, device-pointer ``enqueue`` on a compute stream, H2D on a copy stream,
  every host synchronisation counted by a :class:`~jetson_deploy.runtime.memory.SyncCounter`.
"""
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .._lazy import require
from ..errors import BadInput
from ..preprocess import numpy_dtype, preprocess
from ..spec import ModelSpec
from .gpu_preprocess import TorchPreprocess  # noqa: F401  (public here too: the torch-ops preprocessing)
from .memory import HostAllocator, NumpyAllocator, SyncCounter

log = logging.getLogger(__name__)


class Prepared:
    """A preprocessed model input living in a pooled buffer; ``release()`` returns it."""

    __slots__ = ("buffer", "_pool")

    def __init__(self, buffer: Any, pool: Any = None) -> None:
        self.buffer = buffer
        self._pool = pool

    def release(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.put(self.buffer)


def _np_name(torch_dtype: Any) -> str:
    return str(torch_dtype).replace("torch.", "")


def release_frame(frame: Any) -> None:
    """Give a frame's pooled buffers back: its preprocessed input (if any), then the frame."""
    if isinstance(frame.data, Prepared):
        frame.data.release()
        frame.data = None
    frame.release()


class Executor:
    """Base: ``depth`` slots; subclasses implement submit/query/wait/outputs (and engine_only_step)."""

    name = "base"
    depth = 1
    #: allocator the source should capture frames into (pinned/mapped for GPU executors)
    frame_allocator: "Optional[HostAllocator]" = None
    #: counts host synchronisations (pycuda path); the pipeline reports those inside the loop
    sync_counter: "Optional[SyncCounter]" = None
    graph = False
    #: True when the capture thread must run host preprocessing (``prepare``); GPU-preprocessing
    #: executors leave the capture thread to capture only
    host_preprocess = True
    #: why preprocessing is not where the design wants it (e.g. no kernel compiler on the pycuda path)
    preprocess_note = ""
    #: True when outputs() returns fresh arrays per frame (not reused slot buffers), so
    #: postprocessing may run on another thread without a copy
    outputs_owned = False
    #: rows per engine call (frames of several sources batched; 1: one frame per call)
    batch = 1
    #: the engine takes any row count up to ``batch``: no padding rows (ONNX Runtime, dynamic batch)
    dynamic_batch = False

    def setup(self, frame_shape: "Tuple[int, int, int]") -> None:
        """Allocate for frames of ``frame_shape`` (H, W, C) before the loop (may capture graphs)."""

    def prepare(self, frame: Any) -> None:
        """Runs on the capture thread right after capture (CPU work that overlaps inference)."""

    def submit(self, slot: int, frame: Any) -> None:
        raise NotImplementedError

    def submit_batch(self, slot: int, frames: "List[Any]") -> None:
        """Up to ``batch`` frames (one per source) through the engine as one call.  Fixed-batch
        engines get the missing rows filled with a real frame of this batch; their results are
        never read (:meth:`row_outputs` returns the real rows only)."""
        if self.batch == 1 and len(frames) == 1:
            self.submit(slot, frames[0])
            return
        raise NotImplementedError("{} runs one frame per engine call".format(self.name))

    def row_outputs(self, slot: int, rows: int) -> "List[Dict[str, np.ndarray]]":
        """The outputs of a batch slot, one ``(1, ...)`` dict per real row, in submission order."""
        from .batching import split_rows

        return split_rows(self.outputs(slot), rows, self.batch)

    def query(self, slot: int) -> bool:
        return True

    def wait(self, slot: int) -> None:
        pass

    def outputs(self, slot: int) -> "Dict[str, np.ndarray]":
        raise NotImplementedError

    def engine_only_step(self) -> None:
        """The engine's work alone on an input already where it reads it (bench's reference)."""
        raise NotImplementedError

    def model_only_step(self) -> None:
        """The network alone at its input shape: no preprocessing, no copies (bench's ``model_fps``).
        CPU executors: the same as :meth:`engine_only_step`."""
        self.engine_only_step()

    def synchronize(self) -> None:
        """Block until all enqueued work is done (bench only; never inside the frame loop)."""

    def close(self) -> None:
        pass

    def describe(self) -> "Dict[str, Any]":
        d: "Dict[str, Any]" = {"executor": self.name, "depth": self.depth, "cuda_graph": self.graph,
                               "preprocess": "host (capture thread)" if self.host_preprocess else "gpu"}
        if self.preprocess_note:
            d["preprocess_note"] = self.preprocess_note
        if self.frame_allocator is not None:
            d["memory"] = self.frame_allocator.kind
        if self.batch > 1:
            d["batch"] = self.batch
            d["dynamic_batch"] = self.dynamic_batch
        return d


class _InputPool:
    """Free list of model-input buffers the capture thread preprocesses into."""

    def __init__(self, allocator: "HostAllocator", shape: "Tuple[int, ...]", dtype: Any, count: int) -> None:
        from ..media.sources import BufferPool

        self.pool = BufferPool(allocator, shape, count, dtype)

    def take(self) -> "Prepared":
        buf = self.pool.get(timeout=1.0)
        if buf is None:  # consumer holds them all: a plain array keeps things moving
            buf = NumpyAllocator().empty(self.pool.shape, self.pool.dtype)
            return Prepared(buf, None)
        return Prepared(buf, self.pool)


class HostExecutor(Executor):
    """Synchronous CPU inference; host preprocessing overlaps it on the capture thread."""

    name = "host"
    outputs_owned = True

    def __init__(self, engine: Any, spec: "ModelSpec", pool_size: int = 8, batch: int = 1,
                 dynamic_batch: bool = False) -> None:
        self.engine = engine
        self.spec = spec
        self.batch = max(1, int(batch))
        self.dynamic_batch = bool(dynamic_batch)
        self.input_name = engine.inputs[0].name if engine.inputs else spec.input_name
        shape = tuple(engine.inputs[0].shape) if engine.inputs else tuple(spec.shape)
        shape = tuple(s if s > 0 else d for s, d in zip(shape, spec.shape))
        if self.batch > 1 or self.dynamic_batch:  # frames are preprocessed one row each
            shape = (1,) + shape[1:]
            pool_size += 8 * self.batch  # every source's capture queue holds preprocessed frames
        dtype = engine.inputs[0].dtype if engine.inputs else numpy_dtype(spec)
        self._inputs = _InputPool(NumpyAllocator(), shape, dtype, pool_size)
        self._out: "List[Optional[Dict[str, np.ndarray]]]" = [None] * self.depth
        self._bench_feeds: "Optional[Dict[str, np.ndarray]]" = None

    def prepare(self, frame: Any) -> None:
        p = self._inputs.take()
        preprocess(frame.image, self.spec, out=p.buffer.array[0])
        frame.data = p

    def submit(self, slot: int, frame: Any) -> None:
        if not isinstance(frame.data, Prepared):
            self.prepare(frame)
        self._out[slot] = self.engine.infer({self.input_name: frame.data.buffer.array})
        frame.data.release()
        frame.data = None

    def submit_batch(self, slot: int, frames: "List[Any]") -> None:
        """The rows' preprocessed inputs stacked (a small host copy) into one synchronous call: the
        actual count on a dynamic-batch engine, else padded to ``batch`` with row 0."""
        if self.batch == 1 and not self.dynamic_batch:
            self.submit(slot, frames[0])
            return
        from .batching import pad_rows

        for f in frames:
            if not isinstance(f.data, Prepared):
                self.prepare(f)
        x = pad_rows([f.data.buffer.array for f in frames], len(frames) if self.dynamic_batch else self.batch)
        for f in frames:
            f.data.release()
            f.data = None
        self._out[slot] = self.engine.infer({self.input_name: x})

    def outputs(self, slot: int) -> "Dict[str, np.ndarray]":
        return self._out[slot] or {}

    def engine_only_step(self) -> None:
        """Synchronous host inference on one preprocessed random frame (made once)."""
        if self._bench_feeds is None:
            spec = self.spec
            frame = np.random.RandomState(0).randint(0, 256, size=(spec.height, spec.width, 3), dtype=np.uint8)
            x = preprocess(frame, spec)[None]
            if self.batch > 1:
                x = np.repeat(x, self.batch, axis=0)
            if self.engine.inputs and np.dtype(self.engine.inputs[0].dtype) != x.dtype:
                x = x.astype(self.engine.inputs[0].dtype)
            self._bench_feeds = {self.input_name: x}
        self.engine.infer(self._bench_feeds)


# ---------------------------------------------------------------------------------------------
# torch CUDA
# ---------------------------------------------------------------------------------------------
class TorchCudaExecutor(Executor):
    """GPU preprocessing + model + reduction in one CUDA graph; copies on their own stream.

    ``fold_post``: classify -> softmax + top-k on the GPU (output ``topk``: scores row, ids row),
    segment -> argmax mask; detect/raw -> outputs copied as they are.  The classify reduction is
    one fused kernel (:mod:`.gpu_topk`, through cupy) where it compiles, else torch ops (``post_impl
    = "torch-ops"`` forces those); ``describe()["post"]`` says which ran.

    ``mapped_out`` (default): inside each slot's graph the last kernel writes the small results
    straight into the slot's pinned host buffer through its device (UVA) address, instead of a
    D2H memcpy node; measured on an H200 this took the demo model's pipeline/engine ratio from
    0.91 to 0.98 (docs/runtime.md).  Falls back to a copy where no UVA view can be made.
    """

    name = "torch-cuda"
    host_preprocess = False
    #: classify reduction: "auto" (the fused softmax/top-k kernel where it compiles) or "torch-ops"
    post_impl = "auto"

    def __init__(self, engine: Any, spec: "ModelSpec", depth: int = 3, graph: bool = True, topk: int = 5,
                 fold_post: bool = True, mapped_out: bool = True, mapped_in: "Optional[bool]" = None,
                 preprocess_impl: str = "auto", batch: int = 1) -> None:
        from .memory import TorchPinnedAllocator, is_integrated

        self.torch = require("torch", "the torch CUDA executor")
        self.engine = engine
        self.spec = spec
        #: rows per slot: B frames -> B preprocessing launches into one (B, ...) input -> one model call
        self.batch = max(1, int(batch))
        self.depth = max(2, int(depth))
        self.graph = bool(graph)
        self.topk = topk
        self.fold_post = fold_post
        self.mapped_out = bool(mapped_out)
        #: integrated GPUs: the preprocessing kernel reads the pinned frame in place (zero copy)
        self.mapped_in = is_integrated() if mapped_in is None else bool(mapped_in)
        self.preprocess_impl = preprocess_impl
        self._model_graph: Any = None
        self.frame_allocator = TorchPinnedAllocator()
        self.device = engine.device
        self.frame_shape: "Optional[Tuple[int, int, int]]" = None
        self._graph: Any = None
        self._slot_graphs: "List[Any]" = []
        self._slot_outs: "List[Any]" = []
        self._row_like: Any = None
        self.eager_reason = ""

    def _post(self, outs: "Dict[str, Any]") -> "Dict[str, Any]":
        torch = self.torch
        if not self.fold_post:
            return outs
        first = next(iter(outs.values()))
        if self.batch > 1:
            return self._post_rows(first, outs)
        if self.spec.task == "classify" and first.dim() == 2 and first.shape[0] == 1:
            op = self._topk_op(first)
            if op is not None:  # one kernel, float16 logits read as they are, result maybe straight to host
                return {"topk": op(first, out=self._post_into.get("topk") if self._post_into else None)}
            p = torch.softmax(first.float(), dim=1)[0]
            k = min(self.topk, p.shape[0])
            s, i = torch.topk(p, k)
            # one (2, k) tensor -> one small copy-out: row 0 scores, row 1 class ids (exact in float32)
            return {"topk": torch.stack([s, i.to(torch.float32)])}
        if self.spec.task == "segment" and first.dim() == 4 and first.shape[1] > 1:
            return {"mask": first[0].argmax(0).to(torch.int32)}
        return outs

    def _post_rows(self, first: Any, outs: "Dict[str, Any]") -> "Dict[str, Any]":
        """The reductions of :meth:`_post` per row of a batch: ``topk`` (B, 2, k), ``mask`` (B, H, W)."""
        torch = self.torch
        if self.spec.task == "classify" and first.dim() == 2 and first.shape[0] == self.batch:
            op = self._topk_op(first)
            if op is not None:
                return {"topk": op(first, out=self._post_into.get("topk") if self._post_into else None)}
            p = torch.softmax(first.float(), dim=1)
            s, i = torch.topk(p, min(self.topk, p.shape[1]), dim=1)
            return {"topk": torch.stack([s, i.to(torch.float32)], dim=1)}
        if self.spec.task == "segment" and first.dim() == 4 and first.shape[1] > 1:
            return {"mask": first.argmax(1).to(torch.int32)}
        return outs

    def _topk_op(self, first: Any) -> Any:
        """The fused softmax + top-k kernel for logits like ``first`` (made once per dtype/shape, in
        the warm-up, never inside a capture), or None: torch ops then (no cupy or NVRTC, k > 32,
        a dtype other than float16/float32, ``post_impl="torch-ops"``)."""
        key = (str(first.dtype), tuple(first.shape), str(first.device))
        if key not in self._topk_ops:
            op = None
            if self.post_impl != "torch-ops" and first.is_cuda and key[0] in ("torch.float16", "torch.float32"):
                from .gpu_topk import torch_softmax_topk

                n = int(first.shape[1])
                op = torch_softmax_topk(first.device, first.dtype, min(self.topk, n), n, int(first.shape[0]))
            self._topk_ops[key] = op
        return self._topk_ops[key]

    def _post_kind(self) -> str:
        """What runs the reductions after the model (``describe()["post"]``)."""
        if not self.fold_post:
            return "none"
        ops = [op for op in getattr(self, "_topk_ops", {}).values() if op is not None]
        return ops[0].kind if ops else "torch-ops"

    def _pre_rows(self, frames: Any, out: Any = None) -> Any:
        """The model input of a slot: one frame (batch 1), or B frames ``(B, H, W, C)`` preprocessed
        row by row (one fused-kernel launch each, at the row's offset) into one ``(B, ...)`` input."""
        if self.batch == 1:
            return self._pre(frames) if out is None else self._pre(frames, out=out)
        if out is None:
            torch = self.torch
            if self._row_like is None:  # once, in the warm-up (never an extra launch inside a graph)
                self._row_like = self._pre(frames[0])
            x0 = self._row_like
            out = torch.empty((self.batch,) + tuple(x0.shape[1:]), dtype=x0.dtype, device=x0.device)
            if getattr(self._pre, "channels_last", False) and out.dim() == 4:
                out = out.contiguous(memory_format=torch.channels_last)
        for i in range(self.batch):
            self._pre(frames[i], out=out[i:i + 1])
        return out

    def _step(self, dev_frame: Any) -> "Dict[str, Any]":
        return self._post(self.engine.forward(self._pre_rows(dev_frame)))

    def _model_step(self, x: Any) -> "Dict[str, Any]":
        return self._post(self.engine.forward(x))

    def setup(self, frame_shape: "Tuple[int, int, int]") -> None:
        torch = self.torch
        if self.frame_shape == tuple(frame_shape):
            return
        self.frame_shape = tuple(frame_shape)
        dev = self.device
        torch.backends.cudnn.benchmark = True  # static shapes: let cuDNN pick the fastest kernels once
        from .gpu_preprocess import torch_preprocessor

        in_dt = np.dtype(self.engine.inputs[0].dtype).name if self.engine.inputs else self.spec.dtype
        self._row_like = None
        self._topk_ops: "Dict[Tuple[Any, ...], Any]" = {}
        #: set only while a slot graph is captured: where the fused top-k kernel writes its result
        self._post_into: "Optional[Dict[str, Any]]" = None
        self._pre = torch_preprocessor(self.spec, dev, out_dtype=in_dt if self.spec.dtype != "uint8" else "uint8",
                                       channels_last=bool(getattr(self.engine, "channels_last", False)),
                                       prefer=self.preprocess_impl)
        self.copy_stream = torch.cuda.Stream(dev)
        self.compute_stream = torch.cuda.Stream(dev)
        rows = tuple(frame_shape) if self.batch == 1 else (self.batch,) + tuple(frame_shape)
        self.dev_frames = [torch.empty(rows, dtype=torch.uint8, device=dev) for _ in range(self.depth)]
        self.staging = [torch.empty(rows, dtype=torch.uint8, pin_memory=True) for _ in range(self.depth)]
        self.static_in = torch.zeros(rows, dtype=torch.uint8, device=dev)
        self.copied = [torch.cuda.Event() for _ in range(self.depth)]
        self.done = [torch.cuda.Event() for _ in range(self.depth)]
        with torch.inference_mode():
            # warm up on the compute stream (cuDNN autotune, allocator) before any capture
            with torch.cuda.stream(self.compute_stream):
                for _ in range(3):
                    outs = self._step(self.static_in)
                self.model_in = [self._pre_rows(self.static_in) for _ in range(self.depth)]
                self.static_model_in = self._pre_rows(self.static_in)
            self.compute_stream.synchronize()
            self.static_out = outs
            self._model_graph = None
            self._graph = None
            self._slot_graphs = []
            self._slot_outs = []
            self.host_out = [{k: torch.empty(v.shape, dtype=v.dtype, pin_memory=True) for k, v in outs.items()}
                             for _ in range(self.depth)]
            if self.graph:
                try:
                    self._capture()
                except Exception as exc:  # some models (data-dependent shapes) cannot be captured
                    self.graph = False
                    self._graph, self._slot_graphs, self._slot_outs, self._model_graph = None, [], [], None
                    self.eager_reason = "CUDA graph capture failed ({}); running eagerly".format(
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                    torch.cuda.synchronize(dev)
        self.host_np = [{k: v.numpy() for k, v in ho.items()} for ho in self.host_out]

    def _capture(self) -> None:
        """One graph per ring slot: preprocess (reading that slot's device frame) -> model ->
        reduction -> copy-out into that slot's pinned host outputs.  Replaying one graph is then
        all the compute stream does per frame.  Plus an engine-only graph (no copy-out) for bench."""
        torch = self.torch
        cs = self.compute_stream
        pool = torch.cuda.graph_pool_handle()  # graphs replay one at a time on one stream: share memory
        self._host_views = []
        if self.mapped_out:
            from .backends.torch import _DevicePointer

            try:
                for ho in self.host_out:
                    self._host_views.append({
                        n: torch.as_tensor(_DevicePointer(t.data_ptr(), tuple(t.shape), np.dtype(_np_name(t.dtype))),
                                           device=self.device)
                        for n, t in ho.items()})
            except Exception:  # no UVA view of pinned memory here: plain copies
                self.mapped_out = False
                self._host_views = []
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, pool=pool, stream=cs):
            self.static_out = self._step(self.static_in)
        self._graph = g
        gm = torch.cuda.CUDAGraph()
        with torch.cuda.graph(gm, pool=pool, stream=cs):
            self.engine.forward(self.static_model_in)
        self._model_graph = gm
        for k in range(self.depth):
            gk = torch.cuda.CUDAGraph()
            with torch.cuda.graph(gk, pool=pool, stream=cs):
                # mapped input: the kernel reads each frame where it was captured (its address
                # changes per frame), so it runs just before the replay and the graph starts at the model
                # mapped output: the fused top-k kernel writes its result into the slot's host view
                self._post_into = self._host_views[k] if self.mapped_out else None
                try:
                    outs = self._model_step(self.model_in[k]) if self.mapped_in else self._step(self.dev_frames[k])
                finally:
                    self._post_into = None
                for name, v in outs.items():
                    if self.mapped_out:
                        # a kernel writes the (small) results straight into pinned host memory through
                        # its device address (UVA): no separate D2H copy at the end of the graph
                        hv = self._host_views[k][name]
                        if v.data_ptr() != hv.data_ptr():  # not already written there by the top-k kernel
                            torch.mul(v, 1, out=hv)
                    else:
                        self.host_out[k][name].copy_(v, non_blocking=True)
            self._slot_graphs.append(gk)
            self._slot_outs.append(outs)

    def submit(self, slot: int, frame: Any) -> None:
        torch = self.torch
        img = frame.image
        if tuple(img.shape) != self.frame_shape:
            self.setup(tuple(img.shape))  # new frame size: re-plan (outside steady state)
        src = frame.buffer.tensor if frame.buffer is not None else None
        if src is None:  # not captured into pinned memory: one host copy into staging
            src = self.staging[slot]
            np.copyto(src.numpy(), img)
        if self.mapped_in:
            self._submit_mapped(slot, src)
            return
        with torch.cuda.stream(self.copy_stream):
            self.dev_frames[slot].copy_(src, non_blocking=True)
            self.copied[slot].record(self.copy_stream)
        self._run_slot(slot)

    def _run_slot(self, slot: int) -> None:
        """After the slot's copy: its graph (or the eager step and copy-out) and its event, on the
        compute stream."""
        torch = self.torch
        cs = self.compute_stream
        cs.wait_event(self.copied[slot])
        with torch.cuda.stream(cs):
            if self._slot_graphs:
                self._slot_graphs[slot].replay()
            else:
                with torch.inference_mode():
                    outs = self._step(self.dev_frames[slot])
                    ho = self.host_out[slot]
                    for k, v in outs.items():
                        ho[k].copy_(v, non_blocking=True)
            self.done[slot].record(cs)

    def submit_batch(self, slot: int, frames: "List[Any]") -> None:
        """B frames (one per source) -> the slot's device rows (async copies; missing rows repeat
        row 0 on the device) -> the slot's graph: preprocessing per row, model, reductions, copy-out."""
        if self.batch == 1:
            self.submit(slot, frames[0])
            return
        torch = self.torch
        shape = tuple(frames[0].image.shape)
        if shape != self.frame_shape:
            self.setup(shape)  # new frame size: re-plan (outside steady state)
        srcs = []
        for i, f in enumerate(frames):
            if tuple(f.image.shape) != self.frame_shape:
                raise BadInput("batched sources on the GPU path need one frame size: got {}x{} and {}x{}; "
                               "resize at the source (e.g. ?width=&height=) or run them separately".format(
                                   shape[1], shape[0], f.image.shape[1], f.image.shape[0]))
            src = f.buffer.tensor if f.buffer is not None else None
            if src is None:
                src = self.staging[slot][i]
                np.copyto(src.numpy(), f.image)
            srcs.append(src)
        if self.mapped_in:
            self._submit_mapped_rows(slot, srcs)
            return
        dev = self.dev_frames[slot]
        with torch.cuda.stream(self.copy_stream):
            for i, src in enumerate(srcs):
                dev[i].copy_(src, non_blocking=True)
            for j in range(len(srcs), self.batch):
                dev[j].copy_(dev[0], non_blocking=True)  # padding: a real frame of this batch, result unread
            self.copied[slot].record(self.copy_stream)
        self._run_slot(slot)

    def _submit_mapped_rows(self, slot: int, srcs: "List[Any]") -> None:
        """Zero copy, batched: each row's kernel reads its pinned frame through its UVA address."""
        torch = self.torch
        from .backends.torch import _DevicePointer

        views = [torch.as_tensor(_DevicePointer(s.data_ptr(), tuple(s.shape), np.uint8), device=self.device)
                 for s in srcs]
        mi = self.model_in[slot]
        cs = self.compute_stream
        with torch.cuda.stream(cs), torch.inference_mode():
            for i in range(self.batch):
                self._pre(views[i if i < len(views) else 0], out=mi[i:i + 1])
            if self._slot_graphs:
                self._slot_graphs[slot].replay()
            else:
                outs = self._model_step(mi)
                for k, v in outs.items():
                    self.host_out[slot][k].copy_(v, non_blocking=True)
            self.done[slot].record(cs)

    def _submit_mapped(self, slot: int, src: Any) -> None:
        """Zero copy: the preprocessing reads the pinned frame through its device (UVA) address,
        writes the slot's model input, then the slot's graph (model + reduction + copy-out) replays."""
        torch = self.torch
        from .backends.torch import _DevicePointer

        view = torch.as_tensor(_DevicePointer(src.data_ptr(), tuple(src.shape), np.uint8), device=self.device)
        cs = self.compute_stream
        with torch.cuda.stream(cs), torch.inference_mode():
            self._pre(view, out=self.model_in[slot])
            if self._slot_graphs:
                self._slot_graphs[slot].replay()
            else:
                outs = self._model_step(self.model_in[slot])
                for k, v in outs.items():
                    self.host_out[slot][k].copy_(v, non_blocking=True)
            self.done[slot].record(cs)

    def query(self, slot: int) -> bool:
        return bool(self.done[slot].query())

    def wait(self, slot: int) -> None:
        self.done[slot].synchronize()

    def outputs(self, slot: int) -> "Dict[str, np.ndarray]":
        return self.host_np[slot]

    def engine_only_step(self) -> None:
        """Device-resident frame, same graph, no copies."""
        torch = self.torch
        with torch.cuda.stream(self.compute_stream), torch.inference_mode():
            if self._graph is not None:
                self._graph.replay()
            else:
                self._step(self.static_in)

    def model_only_step(self) -> None:
        """The network alone on a device-resident input of its shape (no preprocessing, no reduction)."""
        torch = self.torch
        with torch.cuda.stream(self.compute_stream), torch.inference_mode():
            if self._model_graph is not None:
                self._model_graph.replay()
            else:
                self.engine.forward(self.static_model_in)

    def synchronize(self) -> None:
        self.compute_stream.synchronize()

    def close(self) -> None:
        self._model_graph = None
        self._graph = None
        self._slot_graphs = []
        self._slot_outs = []

    def describe(self) -> "Dict[str, Any]":
        d = super().describe()
        d.update(device=str(self.device), gpu_preprocess=True, fold_post=self.fold_post, mapped_in=self.mapped_in,
                 preprocess=getattr(getattr(self, "_pre", None), "kind", self.preprocess_impl), post=self._post_kind(),
                 mapped_out=bool(self.mapped_out and self._slot_graphs), graphs=len(self._slot_graphs))
        if self.eager_reason:
            d["note"] = self.eager_reason
        return d


# ---------------------------------------------------------------------------------------------
# pycuda (TensorRT-style device-pointer engines)
# ---------------------------------------------------------------------------------------------
class _CountingEvent:
    def __init__(self, ev: Any, counter: "SyncCounter") -> None:
        self.ev = ev
        self.counter = counter

    def record(self, stream: Any) -> None:
        self.ev.record(stream)

    def query(self) -> bool:
        return bool(self.ev.query())

    def synchronize(self) -> None:
        self.counter.hit("event.synchronize")
        self.ev.synchronize()


def _launch_fn(graph: Any) -> "Callable[[], None]":
    """A captured graph's zero-argument launch (``launcher()`` where it has one, else ``replay``)."""
    return graph.launcher() if hasattr(graph, "launcher") else graph.replay


class PycudaExecutor(Executor):
    """pycuda memory path: pinned (discrete GPU) or mapped zero-copy (integrated GPU) buffers.

    The engine needs ``enqueue(buffers={name: device_ptr}, stream=handle)`` (TensorRT's, or the
    torch backend's).  Host preprocessing into pinned input buffers runs on the capture thread;
    the H2D copy runs on a copy stream (or nothing at all with mapped memory: the engine reads the
    host buffer's device pointer); D2H copies and the frame's event follow on the compute stream.
    Only ``event.synchronize`` on the oldest slot ever blocks, counted by ``sync_counter``.

    ``mapped_out`` (default: when a slot's outputs total at most ``MAPPED_OUT_MAX`` bytes): the
    engine writes its outputs straight into mapped page-locked host memory through its device
    address (jetson-inference binds TensorRT's outputs to ``cudaAllocMapped`` memory the same way),
    so no D2H copy follows the engine; larger outputs (masks, dense heads) keep device buffers and
    a copy, which reads them once over the bus instead of every write.
    """

    name = "pycuda"
    MAPPED_OUT_MAX = 64 * 1024

    def __init__(self, engine: Any, spec: "ModelSpec", depth: int = 3, mapped: "Optional[bool]" = None,
                 cuda: Any = None, counter: "Optional[SyncCounter]" = None, pool_size: int = 8,
                 graph: bool = True, batch: int = 1, mapped_out: "Optional[bool]" = None) -> None:
        from .memory import PycudaAllocator, is_integrated

        self.cuda = cuda if cuda is not None else require("pycuda.driver", "the pycuda memory path")
        self.engine = engine
        self.spec = spec
        #: rows per slot; the engine runs at this batch always (fixed shapes: one graph per slot)
        self.batch = max(1, int(batch))
        self.depth = max(2, int(depth))
        self.mapped = is_integrated(cuda=self.cuda) if mapped is None else bool(mapped)
        self.sync_counter = counter or SyncCounter()
        self.allocator = PycudaAllocator(mapped=self.mapped, cuda=self.cuda)
        self.frame_allocator = None  # frames stay numpy; the *model input* lives in pinned/mapped memory
        cuda = self.cuda
        self.compute_stream = cuda.Stream()
        self.copy_stream = cuda.Stream()
        # Copies overlap compute on their own stream where the stream can wait on an event
        # (pycuda's Stream.wait_for_event); otherwise they are ordered on the compute stream.
        self.copy_overlap = hasattr(self.copy_stream, "wait_for_event")
        if not self.copy_overlap:
            self.copy_stream = self.compute_stream
        inp = engine.inputs[0]
        self.input_name = inp.name
        shape = tuple(s if s > 0 else d for s, d in zip(inp.shape, spec.shape))
        if self.batch > 1:
            shape = (self.batch,) + shape[1:]
        self.in_shape = shape
        if shape != tuple(inp.shape) and hasattr(engine, "set_input_shapes"):
            # activate() left dynamic inputs at the profile's opt shape (batch N with --dynamic-batch or
            # torch2trt's max_batch_size): run at the shape the input buffers are made for
            engine.set_input_shapes({inp.name: shape})
        row_shape = (1,) + shape[1:] if self.batch > 1 else shape  # host preprocessing: one frame a buffer
        self._inputs = _InputPool(self.allocator, row_shape, inp.dtype, pool_size + self.depth * self.batch)
        nbytes = int(np.prod(shape)) * np.dtype(inp.dtype).itemsize
        self.row_bytes = nbytes // self.batch
        self.dev_in = [cuda.mem_alloc(nbytes) for _ in range(self.depth)]
        self.dev_in_ptrs = [int(d) for d in self.dev_in]
        self.mapped_out = mapped_out
        self.dev_out, self.host_out = self._alloc_outputs()
        self._copy_outs = [self._copy_out(k) for k in range(self.depth)]  # None each with mapped outputs
        self.copied = [cuda.Event() for _ in range(self.depth)]
        self.done = [_CountingEvent(cuda.Event(), self.sync_counter) for _ in range(self.depth)]
        self._inflight: "List[Any]" = [None] * self.depth  # a Prepared, or a batch's list of them
        self.graphs: "List[Any]" = []
        self._launchers: "List[Any]" = []
        self._model_graph: Any = None
        self._model_bindings: "Optional[Dict[str, int]]" = None  # bench's bare model: device outputs
        self._model_outs: "List[Any]" = []
        self.graph_note = ""
        if graph and not self.mapped and hasattr(engine, "capture_graph"):
            self._capture_graphs()
        self.graph = bool(self.graphs)

    def _alloc_outputs(self) -> "Tuple[List[Dict[str, Any]], List[Dict[str, np.ndarray]]]":
        """Per slot: the engine's output addresses and the pinned host arrays results are read from
        (the same memory with ``mapped_out``; else device buffers copied back after the engine)."""
        # the shapes TensorRT will write: the activated context's, not the engine's (-1 for dynamic axes)
        live = self.engine.output_shapes() if hasattr(self.engine, "output_shapes") else {}
        shapes = [(t, tuple(max(int(s), 1) for s in live.get(t.name, t.shape))) for t in self.engine.outputs]
        total = sum(int(np.prod(sh)) * np.dtype(t.dtype).itemsize for t, sh in shapes)
        if self.mapped_out is None:
            self.mapped_out = total <= self.MAPPED_OUT_MAX
        if self.mapped_out:
            try:
                return self._mapped_outputs(shapes)
            except Exception as exc:  # no mapped allocations in this context: device buffers + copies
                log.info("mapped outputs unavailable (%s); copying outputs back", exc)
                self.mapped_out = False
        cuda = self.cuda
        dev_out: "List[Dict[str, Any]]" = []
        host_out: "List[Dict[str, np.ndarray]]" = []
        for _ in range(self.depth):
            dev_out.append({t.name: cuda.mem_alloc(max(int(np.prod(sh)) * np.dtype(t.dtype).itemsize, 1))
                            for t, sh in shapes})
            host_out.append({t.name: cuda.pagelocked_empty(sh, t.dtype) for t, sh in shapes})
        return dev_out, host_out

    def _mapped_outputs(self, shapes: "List[Tuple[Any, Tuple[int, ...]]]") -> "Tuple[List[Dict[str, Any]], List[Dict[str, np.ndarray]]]":
        cuda = self.cuda
        dev_out: "List[Dict[str, Any]]" = []
        host_out: "List[Dict[str, np.ndarray]]" = []
        for _ in range(self.depth):
            h = {t.name: cuda.pagelocked_empty(sh, t.dtype, mem_flags=cuda.host_alloc_flags.DEVICEMAP) for t, sh in shapes}
            dev_out.append({k: int(a.base.get_device_pointer()) for k, a in h.items()})
            host_out.append(h)
        return dev_out, host_out

    def _capture_graphs(self, prologue_for: "Optional[Callable[[int], Callable[[], None]]]" = None) -> None:
        """One CUDA graph per slot (its buffers are fixed) where the engine can capture one
        (TensorRT 8.5+ / torch backend): ``prologue_for(slot)``'s work (the GPU executor's kernel),
        the engine and the slot's copy-out, so a frame costs one launch.  Mapped host-preprocessed
        inputs change address per frame, so not there."""
        graphs: "List[Any]" = []
        try:
            for k in range(self.depth):
                graphs.append(self.engine.capture_graph(
                    self._bindings(k, int(self.dev_in[k])), self.compute_stream.handle,
                    prologue=prologue_for(k) if prologue_for is not None else None, epilogue=self._copy_outs[k]))
        except Exception as exc:  # no torch/CUDA graphs here, dynamic shapes, old TensorRT: eager enqueue
            graphs = []
            self.graph_note = "CUDA graph capture unavailable ({}); eager enqueue".format(
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        self.graphs = graphs
        self._launchers = [_launch_fn(g) for g in graphs]

    def _copy_out(self, slot: int) -> "Optional[Callable[[], None]]":
        """The slot's D2H copies of its outputs on the compute stream (captured into its graph);
        None with mapped outputs (the engine wrote them where the host reads them)."""
        if self.mapped_out:
            return None
        cuda, stream, host, dev = self.cuda, self.compute_stream, self.host_out[slot], self.dev_out[slot]

        def copy() -> None:
            for k, v in dev.items():
                cuda.memcpy_dtoh_async(host[k], v, stream)

        return copy

    def _bindings(self, slot: int, in_ptr: int) -> "Dict[str, int]":
        b = {self.input_name: in_ptr}
        b.update({k: int(v) for k, v in self.dev_out[slot].items()})
        return b

    def prepare(self, frame: Any) -> None:
        p = self._inputs.take()
        preprocess(frame.image, self.spec, out=p.buffer.array[0])
        frame.data = p

    def submit(self, slot: int, frame: Any) -> None:
        cuda = self.cuda
        if not isinstance(frame.data, Prepared):
            self.prepare(frame)
        p = frame.data
        frame.data = None  # the executor owns it until the slot completes
        self._release_inflight(slot)
        self._inflight[slot] = p
        buf = p.buffer
        if self.mapped and buf.device_ptr is not None:
            in_ptr = buf.device_ptr  # zero copy: the GPU reads the mapped host buffer
        else:
            cuda.memcpy_htod_async(self.dev_in[slot], buf.array, self.copy_stream)
            if self.copy_overlap:
                self.copied[slot].record(self.copy_stream)
                self.compute_stream.wait_for_event(self.copied[slot])
            in_ptr = int(self.dev_in[slot])
        self._launch(slot, in_ptr)

    def _launch(self, slot: int, in_ptr: int) -> None:
        """The slot's engine work and copy-out (one graph launch, or enqueue + copies), then its event."""
        if self._launchers:
            self._launchers[slot]()
        else:
            self.engine.enqueue(self._bindings(slot, in_ptr), self.compute_stream.handle)
            copy = self._copy_outs[slot]
            if copy is not None:
                copy()
        self.done[slot].record(self.compute_stream)

    def submit_batch(self, slot: int, frames: "List[Any]") -> None:
        """Host-preprocessed rows -> one async H2D copy each, at the row's offset of the slot's device
        input (missing rows: row 0 again) -> the engine at ``batch``."""
        if self.batch == 1:
            self.submit(slot, frames[0])
            return
        preps = []
        for f in frames:
            if not isinstance(f.data, Prepared):
                self.prepare(f)
            preps.append(f.data)
            f.data = None
        self._release_inflight(slot)
        self._inflight[slot] = preps
        base = int(self.dev_in[slot])
        for i in range(self.batch):
            p = preps[i if i < len(preps) else 0]
            self.cuda.memcpy_htod_async(base + i * self.row_bytes, p.buffer.array, self.copy_stream)
        if self.copy_overlap:
            self.copied[slot].record(self.copy_stream)
            self.compute_stream.wait_for_event(self.copied[slot])
        self._launch(slot, base)

    def _release_inflight(self, slot: int) -> None:
        old, self._inflight[slot] = self._inflight[slot], None
        for p in (old if isinstance(old, list) else [old]):
            if p is not None:
                p.release()

    def query(self, slot: int) -> bool:
        return self.done[slot].query()

    def wait(self, slot: int) -> None:
        self.done[slot].synchronize()

    def outputs(self, slot: int) -> "Dict[str, np.ndarray]":
        self._release_inflight(slot)
        return self.host_out[slot]

    def engine_only_step(self) -> None:
        """Slot 0's device work on its device input: the engine and its (small) copy-out."""
        if self._launchers:
            self._launchers[0]()
        else:
            self.engine.enqueue(self._bindings(0, int(self.dev_in[0])), self.compute_stream.handle)

    def model_only_step(self) -> None:
        """The network alone on slot 0's device input, writing device memory (not the mapped host
        outputs): its own graph (captured on first use, by bench), or an eager enqueue where graphs
        are off or unavailable."""
        if self._model_bindings is None:
            b = {self.input_name: self.dev_in_ptrs[0]}
            for t in self.engine.outputs:
                self._model_outs.append(self.cuda.mem_alloc(max(self.host_out[0][t.name].nbytes, 1)))
                b[t.name] = int(self._model_outs[-1])
            self._model_bindings = b
        if self._model_graph is None and self._launchers:
            try:
                g = self.engine.capture_graph(self._model_bindings, self.compute_stream.handle)
                self._model_graph = _launch_fn(g)
            except Exception:  # the slot graphs captured, so this does too; eager if not
                self._model_graph = False
        if self._model_graph:
            self._model_graph()
        else:
            self.engine.enqueue(self._model_bindings, self.compute_stream.handle)

    def synchronize(self) -> None:
        self.compute_stream.synchronize()  # bench only: deliberately not counted as an in-loop sync

    def close(self) -> None:
        """Destroy the graphs now, while this thread's CUDA context is current (the caller drained
        the ring), rather than whenever the collector gets to them; nothing may launch them after."""
        graphs, self.graphs, self._launchers = self.graphs, [], []
        model, self._model_graph = self._model_graph, None
        for g in graphs + [getattr(model, "graph", None)]:
            if g is not None and hasattr(g, "close"):
                g.close()

    def describe(self) -> "Dict[str, Any]":
        d = super().describe()
        d.update(memory=self.allocator.kind, copy_stream=self.copy_overlap, syncs=self.sync_counter.to_dict(),
                 mapped_out=bool(self.mapped_out))
        if self.graph_note:
            d["note"] = self.graph_note
        return d
