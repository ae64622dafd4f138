"""The pycuda/TensorRT frame path with preprocessing on the GPU: the capture thread only captures.

:class:`PycudaGpuExecutor` extends :class:`~jetson_deploy.runtime.executors.PycudaExecutor`
(same ring, streams, output buffers, graphs and sync counting) and changes only how a frame
becomes the engine's input:

* frames are captured straight into pycuda page-locked memory (``frame_allocator``): mapped
  (zero copy) on integrated GPUs, pinned on discrete ones;
* discrete: one async H2D copy of the uint8 frame on the copy stream; integrated: none, the kernel
  reads the mapped frame through its device pointer once and writes the input to device memory
  (``cudaMalloc``), which the network's first layers re-read (mapped memory is uncached on Tegra);
* the fused kernel (:mod:`~jetson_deploy.runtime.gpu_preprocess`) runs on the compute stream and
  writes the engine's device input buffer; the engine (or its per-slot CUDA graph, which now reads a
  fixed device input also with mapped frames) follows on the same stream.

The kernel is launched just before the graph replay rather than inside it: the TensorRT backend
captures only its own enqueue, and the frame address changes per frame on the mapped path.  That is
one extra launch (a few us).  A frame of another size gets new kernel arguments (the compiled
function is per spec, not per size), so it is never preprocessed with a stale plan.
"""
import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import BadInput
from .executors import PycudaExecutor, Prepared
from .gpu_preprocess import Plan, kernel_spec, launch_pycuda, make_plan, pycuda_kernel

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
                 counter: Any = None, pool_size: int = 8, graph: bool = True, batch: int = 1) -> None:
        from .memory import PycudaAllocator

        # no host-preprocessed inputs are pooled here (the base keeps ``depth`` for its bookkeeping);
        # graphs are captured below, also on the mapped path: the engine's input is device memory now
        super().__init__(engine, spec, depth=depth, mapped=mapped, cuda=cuda, counter=counter, pool_size=0,
                         graph=False, batch=batch)
        self.kspec = kernel_spec(spec, _input_dtype(engine, spec))
        self.kernel = pycuda_kernel(self.kspec, cuda=self.cuda)
        self.frame_allocator = PycudaAllocator(mapped=self.mapped, cuda=self.cuda)
        self._staging = PycudaAllocator(mapped=self.mapped, cuda=self.cuda)
        self.plan: "Optional[Plan]" = None
        self.dev_frames: "List[Any]" = []
        self._frame_bytes = 0
        self._held: "List[Any]" = [None] * self.depth
        self._staged: "Dict[Tuple[int, int], Any]" = {}
        self.staged_frames = 0
        if graph and hasattr(engine, "capture_graph"):
            self._capture_graphs()
        self.graph = bool(self.graphs)

    def setup(self, frame_shape: "Tuple[int, ...]") -> None:
        """Kernel arguments for this frame size; device frame buffers (discrete GPUs; one for bench)."""
        shape = tuple(int(s) for s in frame_shape)
        if self.plan is not None and (self.plan.src_h, self.plan.src_w, self.plan.src_c) == shape:
            return
        if self.plan is not None:
            log.info("frame size changed to %sx%s: new GPU preprocessing plan", shape[1], shape[0])
        self.plan = make_plan(self.spec, shape, self.kspec)
        nbytes = int(np.prod(shape))
        if nbytes > self._frame_bytes:
            # frames in flight may still be read from the old buffers: keep them until the slot is reused
            n = 1 if self.mapped else self.depth * self.batch  # discrete: one per row of each slot
            self.dev_frames = [self.cuda.mem_alloc(nbytes) for _ in range(n)]
            self._frame_bytes = nbytes

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
        cuda = self.cuda
        img = frame.image
        if img.ndim == 2:
            img = img[:, :, None]
        self.setup(tuple(img.shape))
        if isinstance(frame.data, Prepared):  # host-preprocessed by someone else: not needed here
            frame.data.release()
            frame.data = None
        host, mapped_ptr = self._frame_source(slot, frame)
        if mapped_ptr is not None:
            src_ptr = int(mapped_ptr)  # zero copy: the kernel reads the mapped frame once
        else:
            dev = self.dev_frames[slot % len(self.dev_frames)]
            cuda.memcpy_htod_async(dev, host, self.copy_stream)
            if self.copy_overlap:
                self.copied[slot].record(self.copy_stream)
                self.compute_stream.wait_for_event(self.copied[slot])
            src_ptr = int(dev)
        in_ptr = int(self.dev_in[slot])
        launch_pycuda(self.kernel, self.plan, src_ptr, in_ptr, self.compute_stream)  # type: ignore[arg-type]
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
        for i in range(self.batch):
            launch_pycuda(self.kernel, self.plan, srcs[i if i < len(srcs) else 0], base + i * self.row_bytes,
                          self.compute_stream)  # type: ignore[arg-type]
        self._launch(slot, base)

    def outputs(self, slot: int) -> "Dict[str, np.ndarray]":
        return self.host_out[slot]

    def engine_only_step(self) -> None:
        """Kernel (from a device-resident frame) + engine: the device work of one frame, no copies."""
        if self.plan is not None:
            launch_pycuda(self.kernel, self.plan, int(self.dev_frames[0]), int(self.dev_in[0]), self.compute_stream)
        self.model_only_step()

    def model_only_step(self) -> None:
        if self.graphs:
            self.graphs[0].replay()
        else:
            self.engine.enqueue(self._bindings(0, int(self.dev_in[0])), self.compute_stream.handle)

    def describe(self) -> "Dict[str, Any]":
        d = super().describe()
        d.update(gpu_preprocess=True, preprocess="cuda-kernel (pycuda)", staged_frames=self.staged_frames)
        return d
