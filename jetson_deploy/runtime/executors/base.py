"""The executor contract: how frames go through an engine with up to ``depth`` frames in flight.

The pipeline owns a ring of ``depth`` slots.  For each frame it calls ``submit(slot, frame)``,
which enqueues copy-in -> infer -> copy-out and records an event; later it asks ``query(slot)``
(non-blocking) or, only when the ring is full, ``wait(slot)`` on the *oldest* slot -- the one
host synchronisation the loop allows -- and then reads ``outputs(slot)``.  Concrete executors live
beside this module, one per memory kind (:mod:`.host`, :mod:`.torch_cuda`, :mod:`.pycuda`,
:mod:`.pycuda_kernel`).
"""
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..memory import HostAllocator, NumpyAllocator, SyncCounter

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
        from ..batching import split_rows

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


class InputPool:
    """Free list of model-input buffers the capture thread preprocesses into."""

    def __init__(self, allocator: "HostAllocator", shape: "Tuple[int, ...]", dtype: Any, count: int) -> None:
        from ...media.sources import BufferPool

        self.pool = BufferPool(allocator, shape, count, dtype)

    def take(self) -> "Prepared":
        buf = self.pool.get(timeout=1.0)
        if buf is None:  # consumer holds them all: a plain array keeps things moving
            buf = NumpyAllocator().empty(self.pool.shape, self.pool.dtype)
            return Prepared(buf, None)
        return Prepared(buf, self.pool)
