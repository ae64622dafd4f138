"""One place for optional heavy imports (torch, tensorrt, pycuda, onnxruntime, cv2).

Modules never import these at the top; they call :func:`require` at the point of
use so ``import jetson_deploy`` and ``jetson-deploy --help`` work on the base install.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any, Dict, Optional

from .errors import MissingDependency

# What to tell the user for each optional module.  On a Jetson, OpenCV, TensorRT
# and pycuda come from JetPack; pip wheels would shadow the system builds.
INSTALL_HINTS: Dict[str, str] = {
    "torch": "pip install 'jetson-deploy[host]' (CPU-only machines: pip install torch==2.13.0)",
    "onnx": "pip install 'jetson-deploy[host]' (or: pip install onnx)",
    "onnxruntime": "pip install onnxruntime (or 'jetson-deploy[host]')",
    "onnxscript": "pip install onnxscript",
    "cv2": "pip install opencv-python-headless on a workstation; on a Jetson use JetPack's OpenCV (apt install python3-opencv)",
    "tensorrt": "TensorRT ships with JetPack on a Jetson; on x86 install NVIDIA's TensorRT Python package",
    "pycuda": "on a Jetson: pip install pycuda (builds against JetPack's CUDA); elsewhere: pip install pycuda",
    "torch2trt": "install torch2trt from source: git clone https://github.com/NVIDIA-AI-IOT/torch2trt && cd torch2trt && pip install .",
    "yaml": "pip install pyyaml (or 'jetson-deploy[device]')",
    "jsonschema": "pip install jsonschema (or 'jetson-deploy[device]')",
    "cryptography": "pip install cryptography (or 'jetson-deploy[device]')",
}

def has_module(name: str) -> bool:
    """True when ``name`` can be imported, without importing it."""
    if sys.modules.get(name) is not None:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require(name: str, purpose: Optional[str] = None) -> Any:
    """Import ``name`` or raise :class:`MissingDependency` saying what to install.

    No cache of our own: ``sys.modules`` is one, and tests swap doubles in and out of it.
    """
    try:
        mod = importlib.import_module(name)
    except ImportError as exc:
        top = name.split(".")[0]
        hint = INSTALL_HINTS.get(top, "pip install " + top)
        what = " for " + purpose if purpose else ""
        raise MissingDependency(
            "{} is needed{} but is not installed ({}): {}".format(top, what, exc, hint)
        ) from None
    return mod


def optional(name: str) -> Optional[Any]:
    """Import ``name`` if it is installed, else None (for feature detection)."""
    try:
        return require(name)
    except MissingDependency:
        return None
