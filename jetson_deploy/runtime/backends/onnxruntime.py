"""ONNX Runtime backend: the same bundle on the CPU (or the CUDA execution provider).

For an ``int8`` bundle it runs ``model.qdq.onnx`` (kind ``onnx-qdq``), so INT8 accuracy can be
measured on any machine before a device is involved; otherwise ``model.onnx``.
"""
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..._lazy import require
from ...errors import BadInput
from ..engine import Engine, TensorInfo

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def _shape(shape: "Sequence[Any]") -> tuple:
    return tuple(int(s) if isinstance(s, int) else -1 for s in shape)


#: on machines of at most this many CPUs a model whose call takes less than ``SHORT_CALL_MS`` on all of
#: them runs on one intra-op thread: the frame loop's capture and output threads need the others
SMALL_MACHINE_CPUS = 4
SHORT_CALL_MS = 2.0


def default_cpu_threads() -> int:
    """ONNX Runtime intra-op threads to start with: all logical CPUs but two on machines with more
    than four (the capture/preprocess and output threads need cores of their own; with ORT's default
    of every core, spinning, each inference waits for the slowest worker: on 16 CPUs pipeline/engine
    0.50 -> 0.88 for the demo model, 0.91 -> 0.95 for ResNet-18), every CPU on smaller ones, where
    :meth:`OnnxRuntimeEngine.pick_threads` may then take one."""
    n = os.cpu_count() or 1
    return n - 2 if n > SMALL_MACHINE_CPUS else n


class OnnxRuntimeEngine(Engine):
    """An ``onnxruntime.InferenceSession`` behind the :class:`Engine` interface.

    ``threads=None`` picks the intra-op threads: :func:`default_cpu_threads`, and on small machines
    one thread when the model's call is short (:meth:`pick_threads`); ``threads=0`` is ORT's own default.
    """

    backend = "onnxruntime"
    is_gpu = False

    def __init__(self, model_path: Any, providers: "Optional[List[str]]" = None, threads: "Optional[int]" = None,
                 artifact_kind: str = "onnx", spinning: "Optional[bool]" = None) -> None:
        super().__init__()
        self.model_path = Path(model_path)
        self.providers = providers
        self.threads = threads
        self.spinning = spinning
        self.artifact_kind = artifact_kind
        self.session: Any = None
        self._out_names: "List[str]" = []

    def activate_impl(self) -> None:
        self.threads_chosen = ""
        auto = self.threads is None
        if auto:
            self.threads = default_cpu_threads()
        self._open()
        if auto:
            self.pick_threads()

    def pick_threads(self) -> None:
        """On a machine of at most four CPUs: a short call (the demo model, 0.14 ms on 2 CPUs) runs
        faster in the frame loop on one thread, a long one (ResNet-18, 14 ms) on all of them.
        Measured on 2 CPUs, `bench` pipeline FPS, median of 3: demo 2,947 (1 thread) vs 1,829
        (2 threads); ResNet-18 38 (1) vs 62 (2).  Times a few calls on zeros and reopens the
        session with one thread when they are short."""
        n = int(self.threads or 1)
        if n <= 1 or (os.cpu_count() or 1) > SMALL_MACHINE_CPUS:
            return
        feeds = {t.name: np.zeros(tuple(max(int(s), 1) for s in t.shape), t.dtype) for t in self.inputs}
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            self.infer_impl(feeds)
            times.append(time.perf_counter() - t0)
        call_ms = 1000.0 * sorted(times[2:])[len(times[2:]) // 2]
        if call_ms < SHORT_CALL_MS:
            self.threads = 1
            self._open()
            self.threads_chosen = "1 thread: a {:.2f} ms call on {} CPUs".format(call_ms, os.cpu_count())
        else:
            self.threads_chosen = "{} threads: a {:.1f} ms call".format(n, call_ms)

    def _open(self) -> None:
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # else import writes ~/.cache/Microsoft/...
        ort = require("onnxruntime", "the onnxruntime backend")
        if hasattr(ort, "disable_telemetry_events"):
            ort.disable_telemetry_events()  # nothing written outside what the user asked for
        if not self.model_path.is_file():
            raise BadInput("ONNX model {} not found".format(self.model_path))
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            opts.intra_op_num_threads = int(self.threads)
        if self.spinning is not None:
            # idle intra-op threads busy-wait by default; that steals the cores capture/preprocess need
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        providers = self.providers or ["CPUExecutionProvider"]
        avail = set(ort.get_available_providers())
        providers = [p for p in providers if p in avail] or ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(self.model_path), sess_options=opts, providers=providers)
        self.inputs = [TensorInfo(i.name, _shape(i.shape), np.dtype(_ORT_DTYPES.get(i.type, np.float32)))
                       for i in self.session.get_inputs()]
        self.outputs = [TensorInfo(o.name, _shape(o.shape), np.dtype(_ORT_DTYPES.get(o.type, np.float32)))
                        for o in self.session.get_outputs()]
        self._out_names = [o.name for o in self.outputs]

    def deactivate_impl(self) -> None:
        self.session = None

    def infer_impl(self, feeds: "Dict[str, np.ndarray]") -> "Dict[str, np.ndarray]":
        res = self.session.run(self._out_names, feeds)
        return dict(zip(self._out_names, res))

    def describe(self) -> "Dict[str, Any]":
        d = super().describe()
        d.update(model=str(self.model_path), artifact=self.artifact_kind, threads=self.threads,
                 threads_chosen=getattr(self, "threads_chosen", ""), spinning=self.spinning,
                 providers=self.session.get_providers() if self.session is not None else self.providers)
        return d
