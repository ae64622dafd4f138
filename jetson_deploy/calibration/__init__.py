"""Calibration: build calibration sets, compute INT8 ranges without TensorRT, gate accuracy.

Modules (each one job; none imports onnxruntime/cv2/tensorrt at import time):

- :mod:`.sources`   find images/videos, read frames, near-duplicate hashes
- :mod:`.dataset`   ``build_calibration_set`` / ``load_calibration_set`` / ``CalibrationSet``
- :mod:`.cache`     TensorRT calibration cache text format (write/read)
- :mod:`.ranges`    per-tensor ranges with ONNX Runtime calibrators; ``ranges.json``
- :mod:`.qdq`       Q/DQ ONNX model for explicit INT8 (TensorRT 8.5+/10)
- :mod:`.gate`      INT8 vs FP32 agreement on held-out samples
- :mod:`.auto_exclude`  accuracy-driven mixed precision
- :mod:`.quantize`  ``compute_int8``: everything above for one model; ``gate_failure``
- :mod:`.workflow`  ``calibrate``: what the command does (build or reuse a set, INT8, gate)
"""
from typing import Any

_EXPORTS = {
    "build_calibration_set": "dataset",
    "load_calibration_set": "dataset",
    "CalibrationSet": "dataset",
    "is_calibration_set": "dataset",
    "read_cache": "cache",
    "write_cache": "cache",
    "compute_int8": "quantize",
    "Int8Result": "quantize",
    "calibrate": "workflow",
    "CalibrateResult": "workflow",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # PEP 562: submodules load on first use
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module("{}.{}".format(__name__, mod)), name)


from .._lazy import pep562 as _pep562  # noqa: E402

_pep562(__name__)
