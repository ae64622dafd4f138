"""CPU backends (ONNX Runtime, torch on the CPU): host preprocessing on the capture thread,
synchronous inference, depth 1."""
from typing import Any, Dict, List, Optional

import numpy as np

from ...preprocess import numpy_dtype, preprocess
from ...spec import ModelSpec
from ..memory import NumpyAllocator
from .base import Executor, InputPool, Prepared

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
        self._inputs = InputPool(NumpyAllocator(), shape, dtype, pool_size)
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
        from ..batching import pad_rows

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
