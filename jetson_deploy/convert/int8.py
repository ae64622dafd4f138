"""INT8 for convert: calibration ranges, TensorRT caches and the Q/DQ model into the bundle."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import BadInput
from ..spec import ModelSpec


def prepare_int8(onnx_path: Path, spec: ModelSpec, out_spec: ModelSpec, calib: Any, work: Path, min_agreement: float = 0.99,
                 force: bool = False, auto_exclude: bool = False, note: Optional[Callable[[str], None]] = None) -> Any:
    try:
        from ..calibration.api import compute_int8  # noqa: F401
    except ImportError:
        raise BadInput("--precision int8 needs jetson_deploy.calibration.api, which this installation lacks")
    raise BadInput("--precision int8 is not wired up yet")
