"""The pycuda memory path (TensorRT engines on a Jetson): pinned or mapped (zero-copy) buffers,
device-pointer ``enqueue`` on a compute stream, H2D on a copy stream, every host synchronisation
counted by a :class:`~jetson_deploy.runtime.memory.SyncCounter`."""
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..._lazy import require
from ...preprocess import preprocess
from ...spec import ModelSpec
from ..memory import SyncCounter, frame_stream
from .base import Executor, InputPool, Prepared

log = logging.getLogger(__name__)


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
                 graph: bool = True, batch: int = 1, mapped_out: "Optional[bool]" = None, topk: int = 5,
                 post: str = "auto") -> None:
        from ..memory import PycudaAllocator, is_integrated

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
        # non-blocking: graphs are captured on the compute stream while other threads run
        self.compute_stream = frame_stream(cuda)
        self.copy_stream = frame_stream(cuda)
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
        self._inputs = InputPool(self.allocator, row_shape, inp.dtype, pool_size + self.depth * self.batch)
        nbytes = int(np.prod(shape)) * np.dtype(inp.dtype).itemsize
        self.row_bytes = nbytes // self.batch
        self.dev_in = [cuda.mem_alloc(nbytes) for _ in range(self.depth)]
        self.dev_in_ptrs = [int(d) for d in self.dev_in]
        self.mapped_out = mapped_out
        self.reduce, self.post_note = self._reduction(topk, post)
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

    def _reduction(self, topk: int, post: str) -> "Tuple[Any, str]":
        """The classify reduction on the GPU (fused softmax + top-k after the engine, in the slot's
        graph), or (None, why): other tasks, folded outputs, small class counts (the host's plain
        Python top-k is as fast), ``post="host"``, or a kernel that does not compile here."""
        from ..postprocess import SMALL_CLASSES

        outs = self.engine.outputs
        shape = tuple(int(s) for s in outs[0].shape) if len(outs) == 1 else ()
        folded = (self.spec.extra.get("postprocess") or {}).get("folded") if isinstance(
            self.spec.extra.get("postprocess"), dict) else None
        if (post == "host" or self.spec.task != "classify" or folded or len(shape) != 2
                or shape[1] <= SMALL_CLASSES or np.dtype(outs[0].dtype).name not in ("float16", "float32")):
            return None, ""
        from ..gpu_topk import MAX_K, pycuda_softmax_topk

        op, why = pycuda_softmax_topk(np.dtype(outs[0].dtype).name, min(max(int(topk), 1), MAX_K), shape[1],
                                      self.batch, cuda=self.cuda)
        if op is None:
            why = "softmax/top-k kernel unavailable ({}); host postprocessing".format(why)
            log.info("%s", why)
        return op, why

    def _alloc_outputs(self) -> "Tuple[List[Dict[str, Any]], List[Dict[str, np.ndarray]]]":
        """Per slot: the engine's output addresses and the pinned host arrays results are read from
        (the same memory with ``mapped_out``; else device buffers copied back after the engine).
        With the GPU reduction the engine writes device memory and the host reads ``topk``."""
        # the shapes TensorRT will write: the activated context's, not the engine's (-1 for dynamic axes)
        live = self.engine.output_shapes() if hasattr(self.engine, "output_shapes") else {}
        shapes = [(t, tuple(max(int(s), 1) for s in live.get(t.name, t.shape))) for t in self.engine.outputs]
        self._out_bytes = {t.name: max(int(np.prod(sh)) * np.dtype(t.dtype).itemsize, 1) for t, sh in shapes}
        if self.reduce is not None:
            return self._reduced_outputs()
        total = sum(self._out_bytes.values())
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
            dev_out.append({t.name: cuda.mem_alloc(self._out_bytes[t.name]) for t, sh in shapes})
            host_out.append({t.name: cuda.pagelocked_empty(sh, t.dtype) for t, sh in shapes})
        return dev_out, host_out

    def _reduced_outputs(self) -> "Tuple[List[Dict[str, Any]], List[Dict[str, np.ndarray]]]":
        """Engine logits in device memory; the packed top-k in mapped host memory the kernel writes
        through its device address (else a device buffer and a small D2H copy)."""
        cuda, shape = self.cuda, self.reduce.out_shape
        dev_out: "List[Dict[str, Any]]" = []
        host_out: "List[Dict[str, np.ndarray]]" = []
        self._post_dst: "List[Tuple[int, Any]]" = []
        if self.mapped_out is None:
            self.mapped_out = True
        for _ in range(self.depth):
            dev_out.append({t.name: cuda.mem_alloc(self._out_bytes[t.name]) for t in self.engine.outputs})
            host, dst = None, None
            if self.mapped_out:
                try:
                    host = cuda.pagelocked_empty(shape, np.float32, mem_flags=cuda.host_alloc_flags.DEVICEMAP)
                    dst = (int(host.base.get_device_pointer()), None)
                except Exception as exc:  # no mapped allocations here: a device result and a copy
                    log.info("mapped outputs unavailable (%s); copying results back", exc)
                    self.mapped_out = False
            if dst is None:
                host = cuda.pagelocked_empty(shape, np.float32)
                dev = cuda.mem_alloc(host.nbytes)
                dst = (int(dev), dev)
            host_out.append({"topk": host})
            self._post_dst.append(dst)
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
        """What follows the engine on the compute stream (captured into the slot's graph): the GPU
        reduction into the slot's results, or D2H copies of its outputs; None with mapped outputs
        and no reduction (the engine wrote them where the host reads them)."""
        cuda, stream, host, dev = self.cuda, self.compute_stream, self.host_out[slot], self.dev_out[slot]
        if self.reduce is not None:
            op, src = self.reduce, int(next(iter(dev.values())))
            dst, dev_result = self._post_dst[slot]

            def reduce() -> None:
                op.launch(src, dst, stream)
                if dev_result is not None:
                    cuda.memcpy_dtoh_async(host["topk"], dev_result, stream)

            return reduce
        if self.mapped_out:
            return None

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
                self._model_outs.append(self.cuda.mem_alloc(self._out_bytes[t.name]))
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
                 mapped_out=bool(self.mapped_out), post=self.reduce.kind if self.reduce is not None else "host")
        if self.post_note:
            d["post_note"] = self.post_note
        if self.graph_note:
            d["note"] = self.graph_note
        return d
