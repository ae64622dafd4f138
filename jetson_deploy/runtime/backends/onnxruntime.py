"""ONNX Runtime backend: the same bundle on the CPU (or the CUDA execution provider).

For an ``int8`` bundle it runs ``model.qdq.onnx`` (kind ``onnx-qdq``), so INT8 accuracy can be
measured on any machine before a device is involved; otherwise ``model.onnx``.
"""
import os
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


class OnnxRuntimeEngine(Engine):
    """An ``onnxruntime.InferenceSession`` behind the :class:`Engine` interface."""

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
        d.update(model=str(self.model_path), artifact=self.artifact_kind, threads=self.threads, spinning=self.spinning,
                 providers=self.session.get_providers() if self.session is not None else self.providers)
        return d
