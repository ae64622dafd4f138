"""The pycuda/TensorRT frame path with preprocessing on the GPU: the capture thread only captures.

:class:`PycudaGpuExecutor` extends :class:`~jetson_deploy.runtime.executors.pycuda.PycudaExecutor`
(same ring, streams, output buffers, graphs and sync counting) and changes only how a frame
becomes the engine's input:

* frames are captured straight into pycuda page-locked memory (``frame_allocator``): mapped
  (zero copy) on integrated GPUs, pinned on discrete ones;
* discrete: one async H2D copy of the uint8 frame on the copy stream; integrated: none, the kernel
  reads the mapped frame through its device pointer once and writes the input to device memory
  (``cudaMalloc``), which the network's first layers re-read (mapped memory is uncached on Tegra);
* the fused kernel (:mod:`~jetson_deploy.runtime.gpu_preprocess`) runs on the compute stream and
  writes the engine's device input buffer; the engine and the copy-out follow on the same stream.

Discrete GPUs: each ring slot's frame buffer, input and outputs are fixed, so the kernel, the engine
and the copy-out are captured into one CUDA graph per slot and a frame costs an H2D copy, one graph
launch (the driver's ``cuGraphLaunch``) and an event: on an H200 host the per-frame CUDA calls went
from ~42 to ~10 us (``scripts/bench_cuda_calls.py``).  A new frame size re-captures them after the
streams drain (once, at the change).  Integrated GPUs: the kernel reads each frame where it was
captured (its address changes per frame), so it is launched just before the slot's graph (engine
and copy-out).
"""
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ...errors import BadInput
from ..gpu_preprocess import Plan, kernel_spec, launch_pycuda, make_plan, pycuda_kernel
from .base import Prepared
from .pycuda import PycudaExecutor

log = logging.getLogger(__name__)


def gpu_preprocess_unavailable(spec: Any, engine: Any, cuda: Any = None) -> str:
    """Why the fused kernel cannot run on the pycuda path here ("" when it can: it compiles)."""
    try:
        kernel_spec(spec, _input_dtype(engine, spec))
        pycuda_kernel(kernel_spec(spec, _input_dtype(engine, spec)), cuda=cuda)
    except ImportError as exc:
        return "pycuda.compiler not importable ({})".format(exc)
    except Exception as exc:  # no nvcc, compile error, unsupported dtype
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ""


def _same_memory(a: "np.ndarray", b: "np.ndarray") -> bool:
    """True when ``b`` is ``a`` (or a full view of it): the frame sits in our page-locked buffer."""
    if a is b:  # the usual case, and cheap: __array_interface__ builds a dict on every call
        return True
    return a.shape == b.shape and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]


def _input_dtype(engine: Any, spec: Any) -> str:
    if engine.inputs:
        return np.dtype(engine.inputs[0].dtype).name
    return spec.dtype


class PycudaGpuExecutor(PycudaExecutor):
    """pycuda path, GPU preprocessing: uint8 frames in pinned/mapped memory, one kernel per frame."""

    name = "pycuda"
    host_preprocess = False

    def __init__(self, engine: Any, spec: Any, depth: int = 3, mapped: "Optional[bool]" = None, cuda: Any = None,
                 counter: Any = None, pool_size: int = 8, graph: bool = True, batch: int = 1,
                 mapped_out: "Optional[bool]" = None, topk: int = 5, post: str = "auto") -> None:
        from ..memory import PycudaAllocator

        # no host-preprocessed inputs are pooled here (the base keeps ``depth`` for its bookkeeping);
        # graphs are captured below, also on the mapped path: the engine's input is device memory now
        super().__init__(engine, spec, depth=depth, mapped=mapped, cuda=cuda, counter=counter, pool_size=0,
                         graph=False, batch=batch, mapped_out=mapped_out, topk=topk, post=post)
        self.kspec = kernel_spec(spec, _input_dtype(engine, spec))
        self.kernel = pycuda_kernel(self.kspec, cuda=self.cuda)
        self.frame_allocator = PycudaAllocator(mapped=self.mapped, cuda=self.cuda)
        self._staging = PycudaAllocator(mapped=self.mapped, cuda=self.cuda)
        self.plan: "Optional[Plan]" = None
        self._plan_shape: "Tuple[int, ...]" = ()
        self.dev_frames: "List[Any]" = []
        self._frame_bytes = 0
        self._staged: "Dict[Tuple[int, int], Any]" = {}
        self.staged_frames = 0
        self._want_graph = bool(graph and hasattr(engine, "capture_graph"))
        #: the kernel is inside the slot graphs (discrete GPUs, once a frame size is known)
        self.kernel_in_graph = False
        if self._want_graph and self.mapped:
            self._capture_graphs()  # engine + copy-out; the kernel reads each mapped frame in place
        self.graph = self._want_graph if not self.mapped else bool(self.graphs)

    def setup(self, frame_shape: "Tuple[int, ...]") -> None:
        """Kernel arguments for this frame size; device frame buffers (discrete GPUs; one for bench);
        on discrete GPUs the slot graphs (kernel + engine + copy-out) for this size."""
        shape = tuple(int(s) for s in frame_shape)
        if self.plan is not None and self._plan_shape == shape:
            return
        if self.plan is not None:
            log.info("frame size changed to %sx%s: new GPU preprocessing plan", shape[1], shape[0])
            # frames in flight read the old buffers and graphs: let them finish (at a size change only)
            self.copy_stream.synchronize()
            self.compute_stream.synchronize()
        self.plan = make_plan(self.spec, shape, self.kspec)
        self._plan_shape = shape
        nbytes = int(np.prod(shape))
        if nbytes > self._frame_bytes:
            n = 1 if self.mapped else self.depth * self.batch  # discrete: one per row of each slot
            self.dev_frames = [self.cuda.mem_alloc(nbytes) for _ in range(n)]
            self._frame_bytes = nbytes
        if self._want_graph and not self.mapped:
            self._capture_graphs(self._kernel_rows)
            self.kernel_in_graph = bool(self.graphs)
            self.graph = bool(self.graphs)

    def _kernel_rows(self, slot: int) -> "Callable[[], None]":
        """The slot's kernel launches (one per row), reading its device frame buffers."""
        fn, stream, row_bytes, n = self.kernel, self.compute_stream, self.row_bytes, len(self.dev_frames)
        srcs = [int(self.dev_frames[(slot * self.batch + i) % n]) for i in range(self.batch)]
        base = int(self.dev_in[slot])

        def launch() -> None:
            for i, src in enumerate(srcs):
                launch_pycuda(fn, self.plan, src, base + i * row_bytes, stream)  # type: ignore[arg-type]

        return launch

    def prepare(self, frame: Any) -> None:
        """Nothing on the capture thread: it only captures."""

    def _frame_source(self, slot: int, frame: Any) -> "Tuple[Any, Optional[int]]":
        """(host array to copy from, mapped device pointer or None) for this frame.

        A frame not captured into our page-locked pool (a source that ignores the allocator, a
        decoder's own array) is copied once into a staging buffer: a plain memcpy, no per-pixel work."""
        buf = frame.buffer
        img = np.ascontiguousarray(frame.image)
        if buf is not None and buf.pinned and _same_memory(buf.array, img) and (not self.mapped or buf.device_ptr):
            return img, buf.device_ptr if self.mapped else None
        key = (slot, img.nbytes)
        st = self._staged.get(key)
        if st is None or st.shape != img.shape:
            st = self._staged[key] = self._staging.empty(img.shape, np.uint8)
        np.copyto(st.array, img)
        self.staged_frames += 1
        return st.array, st.device_ptr if self.mapped else None

    def submit(self, slot: int, frame: Any) -> None:
        img = frame.image
        if img.ndim == 2:
            img = img[:, :, None]
        if img.shape != self._plan_shape:
            self.setup(img.shape)
        if frame.data is not None and isinstance(frame.data, Prepared):  # host-preprocessed elsewhere: unused
            frame.data.release()
            frame.data = None
        host, mapped_ptr = self._frame_source(slot, frame)
        in_ptr = self.dev_in_ptrs[slot]
        if mapped_ptr is not None:  # zero copy: the kernel reads the mapped frame once
            launch_pycuda(self.kernel, self.plan, mapped_ptr, in_ptr, self.compute_stream)  # type: ignore[arg-type]
        else:
            dev = self.dev_frames[slot % len(self.dev_frames)]
            self.cuda.memcpy_htod_async(dev, host, self.copy_stream)
            if self.copy_overlap:
                self.copied[slot].record(self.copy_stream)
                self.compute_stream.wait_for_event(self.copied[slot])
            if not self.kernel_in_graph:
                launch_pycuda(self.kernel, self.plan, dev, in_ptr, self.compute_stream)  # type: ignore[arg-type]
        self._launch(slot, in_ptr)

    def submit_batch(self, slot: int, frames: "List[Any]") -> None:
        """Rows of one batch: each frame to its device buffer (discrete; mapped: read in place), one
        kernel launch per row at the row's offset of the engine input (missing rows read row 0's
        frame again), then the engine at ``batch`` -- one event for the batch."""
        if self.batch == 1:
            self.submit(slot, frames[0])
            return
        cuda = self.cuda
        shape = tuple(frames[0].image.shape if frames[0].image.ndim == 3 else frames[0].image.shape + (1,))
        self.setup(shape)
        srcs = []
        for i, f in enumerate(frames):
            img = f.image if f.image.ndim == 3 else f.image[:, :, None]
            if tuple(img.shape) != shape:
                raise BadInput("batched sources on the GPU path need one frame size: got {}x{} and {}x{}; "
                               "resize at the source or run them separately".format(
                                   shape[1], shape[0], img.shape[1], img.shape[0]))
            if isinstance(f.data, Prepared):
                f.data.release()
                f.data = None
            host, mapped_ptr = self._frame_source(slot * self.batch + i, f)
            if mapped_ptr is not None:
                srcs.append(int(mapped_ptr))
                continue
            dev = self.dev_frames[(slot * self.batch + i) % len(self.dev_frames)]
            cuda.memcpy_htod_async(dev, host, self.copy_stream)
            srcs.append(int(dev))
        if self.copy_overlap and len(srcs) and not self.mapped:
            self.copied[slot].record(self.copy_stream)
            self.compute_stream.wait_for_event(self.copied[slot])
        base = int(self.dev_in[slot])
        if not self.kernel_in_graph:  # (in the graph, padding rows read a stale frame: results unread)
            for i in range(self.batch):
                launch_pycuda(self.kernel, self.plan, srcs[i if i < len(srcs) else 0], base + i * self.row_bytes,
                              self.compute_stream)  # type: ignore[arg-type]
        self._launch(slot, base)

    def outputs(self, slot: int) -> "Dict[str, np.ndarray]":
        return self.host_out[slot]

    def engine_only_step(self) -> None:
        """Kernel (from a device-resident frame) + engine + copy-out: one frame's device work, no H2D."""
        if self.plan is not None and not self.kernel_in_graph:
            launch_pycuda(self.kernel, self.plan, int(self.dev_frames[0]), int(self.dev_in[0]), self.compute_stream)
        super().engine_only_step()

    def close(self) -> None:
        super().close()
        self.kernel_in_graph = False  # the graphs are gone: a later frame would need its own launch

    def describe(self) -> "Dict[str, Any]":
        d = super().describe()
        d.update(gpu_preprocess=True, preprocess="cuda-kernel (pycuda)", staged_frames=self.staged_frames,
                 kernel_in_graph=self.kernel_in_graph)
        return d
