"""The one engine interface every backend implements (Polygraphy-style template).

Public methods hold the guards (activation, input names/shapes/dtypes); backends
write only the ``*_impl`` methods.  Two ways to run:

* :meth:`Engine.infer` -- host numpy in, host numpy out; simple and synchronous.
* :meth:`Engine.enqueue` -- device-level: caller-owned buffers (device pointers or
  tensors) and a stream; returns without waiting.  The pipeline uses this so the
  host never blocks on the GPU inside the frame loop.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import BadInput


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: "Tuple[int, ...]"  # -1 for dynamic axes
    dtype: "np.dtype"

    @property
    def nbytes(self) -> int:
        n = 1
        for s in self.shape:
            n *= max(int(s), 1)
        return n * np.dtype(self.dtype).itemsize


class Engine:
    """Base class.  Subclasses set ``backend`` and implement the ``*_impl`` hooks."""

    backend = "base"
    #: True when enqueue() is asynchronous on a GPU stream
    is_gpu = False

    def __init__(self) -> None:
        self._active = False
        self.inputs: "List[TensorInfo]" = []
        self.outputs: "List[TensorInfo]" = []

    # ---- lifecycle ---------------------------------------------------------------------
    def activate(self) -> "Engine":
        if not self._active:
            self.activate_impl()
            self._active = True
        return self

    def deactivate(self) -> None:
        if self._active:
            self.deactivate_impl()
            self._active = False

    def __enter__(self) -> "Engine":
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    # ---- inference ---------------------------------------------------------------------
    def infer(self, feeds: "Dict[str, np.ndarray]") -> "Dict[str, np.ndarray]":
        """Synchronous host inference.  Call after activate()."""
        if not self._active:
            raise RuntimeError("{} engine: call activate() (or use it as a context manager) before infer()".format(self.backend))
        self._check_feeds(feeds)
        return self.infer_impl(feeds)

    def enqueue(self, buffers: "Dict[str, Any]", stream: Any = None) -> None:
        """Enqueue inference on caller-owned buffers; must not synchronise the host."""
        if not self._active:
            raise RuntimeError("{} engine: call activate() before enqueue()".format(self.backend))
        self.enqueue_impl(buffers, stream)

    def _check_feeds(self, feeds: "Dict[str, np.ndarray]") -> None:
        names = {t.name for t in self.inputs}
        missing = names - set(feeds)
        extra = set(feeds) - names
        if missing or extra:
            raise BadInput(
                "{} engine: inputs {} expected, got {}".format(self.backend, sorted(names), sorted(feeds))
            )
        for t in self.inputs:
            a = feeds[t.name]
            if len(a.shape) != len(t.shape) or any(s != -1 and s != d for s, d in zip(t.shape, a.shape)):
                raise BadInput("{} engine: input '{}' has shape {}, engine takes {}".format(self.backend, t.name, tuple(a.shape), t.shape))

    # ---- hooks -------------------------------------------------------------------------
    def activate_impl(self) -> None:
        pass

    def deactivate_impl(self) -> None:
        pass

    def infer_impl(self, feeds: "Dict[str, np.ndarray]") -> "Dict[str, np.ndarray]":
        raise NotImplementedError

    def enqueue_impl(self, buffers: "Dict[str, Any]", stream: Any) -> None:
        raise NotImplementedError("{} backend has no device-level enqueue".format(self.backend))

    def output_names(self) -> "Sequence[str]":
        return [t.name for t in self.outputs]

    def describe(self) -> "Dict[str, Any]":
        return {
            "backend": self.backend,
            "inputs": [{"name": t.name, "shape": list(t.shape), "dtype": str(np.dtype(t.dtype))} for t in self.inputs],
            "outputs": [{"name": t.name, "shape": list(t.shape), "dtype": str(np.dtype(t.dtype))} for t in self.outputs],
        }


def first_or_none(seq: "Sequence[Any]") -> "Optional[Any]":
    return seq[0] if seq else None
