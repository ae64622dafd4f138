"""jetson-deploy: PyTorch -> calibrated INT8/FP16 TensorRT bundles -> live Jetson pipelines.

Importing the package is cheap: heavy dependencies (torch, tensorrt, pycuda,
onnxruntime, cv2) load only inside the functions that need them.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import BadInput, CheckFailed, JetsonDeployError, MissingDependency  # noqa: E402

__all__ = ["__version__", "BadInput", "CheckFailed", "JetsonDeployError", "MissingDependency"]
