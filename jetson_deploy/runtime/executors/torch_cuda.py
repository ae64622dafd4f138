"""torch on CUDA: GPU preprocessing + model + reduction in one CUDA graph per ring slot.

The uint8 BGR frame (captured into pinned memory) is copied to the GPU on its own stream;
resize/colour/normalise run on the GPU in front of the model, and reductions (softmax + top-k,
argmax mask) after it, so copies stay small; outputs come back to pinned memory; one event per frame.
"""
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..._lazy import require
from ...errors import BadInput
from ...spec import ModelSpec
from .base import Executor


def _np_name(torch_dtype: Any) -> str:
    return str(torch_dtype).replace("torch.", "")


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
        from ..memory import TorchPinnedAllocator, is_integrated

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
        self._eager_graph: Any = None
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
            # one (2, k) tensor -> one small copy-out: row 0 scores, row 1 class ids (exact in float32)
            return {"topk": self._torch_topk(first)[0]}
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
            return {"topk": self._torch_topk(first)}
        if self.spec.task == "segment" and first.dim() == 4 and first.shape[1] > 1:
            return {"mask": first.argmax(1).to(torch.int32)}
        return outs

    def _torch_topk(self, logits: Any) -> Any:
        """The fused kernel's maths in torch ops, ``(rows, 2, k)``: the scores rule of
        :mod:`..postprocess` (rows already holding probabilities kept, others softmaxed), ranked by
        (score descending, index ascending) with a stable sort (``torch.topk`` leaves the order of
        ties open), rows with a NaN score padded (0, -1) as the kernel pads them."""
        from ..postprocess import PROB_SUM_TOL

        torch = self.torch
        x = logits.float()
        probs = (x.amin(dim=1) >= 0) & (x.amax(dim=1) <= 1) & ((x.sum(dim=1) - 1).abs() < PROB_SUM_TOL)
        p = torch.where(probs[:, None], x, torch.softmax(x, dim=1))
        k = min(self.topk, int(p.shape[1]))
        s, i = torch.sort(p, dim=1, descending=True, stable=True)
        s, i = s[:, :k], i[:, :k]
        none = torch.isnan(s)
        return torch.stack([s.masked_fill(none, 0.0), i.masked_fill(none, -1).to(torch.float32)], dim=1)

    def _topk_op(self, first: Any) -> Any:
        """The fused softmax + top-k kernel for logits like ``first`` (made once per dtype/shape, in
        the warm-up, never inside a capture), or None: torch ops then (no cupy or NVRTC, k > 32,
        a dtype other than float16/float32, ``post_impl="torch-ops"``)."""
        key = (str(first.dtype), tuple(first.shape), str(first.device))
        if key not in self._topk_ops:
            op = None
            if self.post_impl != "torch-ops" and first.is_cuda and key[0] in ("torch.float16", "torch.float32"):
                from ..gpu_topk import torch_softmax_topk

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
        from ..torch_preprocess import torch_preprocessor

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
        all the compute stream does per frame.  Plus an engine-only graph (no copy-out) for bench.
        Captured in thread-local mode: the capture and output threads keep allocating meanwhile."""
        from ..cuda_graph import torch_capture

        torch = self.torch
        cs = self.compute_stream
        pool = torch.cuda.graph_pool_handle()  # graphs replay one at a time on one stream: share memory
        self._host_views = []
        if self.mapped_out:
            from ..backends.torch import _DevicePointer

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
        with torch_capture(torch, g, cs, pool):
            self.static_out = self._step(self.static_in)
        self._graph = g
        gm = torch.cuda.CUDAGraph()
        with torch_capture(torch, gm, cs, pool):
            self.engine.forward(self.static_model_in)
        self._model_graph = gm
        for k in range(self.depth):
            gk = torch.cuda.CUDAGraph()
            with torch_capture(torch, gk, cs, pool):
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
        from ..backends.torch import _DevicePointer

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
        from ..backends.torch import _DevicePointer

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

    def eager_model_step(self) -> None:
        """:meth:`model_only_step` on the uncompiled module (bench's eager reference for a compiled
        engine), in its own CUDA graph captured on first use (eager where graphs are off)."""
        torch = self.torch
        with torch.cuda.stream(self.compute_stream), torch.inference_mode():
            if self._eager_graph is None and self.graph:
                from ..cuda_graph import torch_capture

                g = torch.cuda.CUDAGraph()
                self.engine.forward_eager(self.static_model_in)  # warm-up outside the capture
                with torch_capture(torch, g, self.compute_stream):
                    self.engine.forward_eager(self.static_model_in)
                self._eager_graph = g
            if self._eager_graph is not None:
                self._eager_graph.replay()
            else:
                self.engine.forward_eager(self.static_model_in)

    def synchronize(self) -> None:
        self.compute_stream.synchronize()

    def close(self) -> None:
        self._eager_graph = None
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
