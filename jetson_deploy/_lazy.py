"""One place for optional heavy imports (torch, tensorrt, pycuda, onnxruntime, cv2).

Modules never import these at the top; they call :func:`require` at the point of
use so ``import jetson_deploy`` and ``jetson-deploy --help`` work on the base install.
"""
import importlib
import importlib.util
import sys
import types
from typing import Any, Dict, Optional

from .errors import MissingDependency

# What to tell the user for each optional module.  On a Jetson, OpenCV, TensorRT
# and pycuda come from JetPack; pip wheels would shadow the system builds.
INSTALL_HINTS: "Dict[str, str]" = {
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
    """True when ``name`` can be imported, without importing it.

    A folder without ``__init__.py`` (a namespace package: a source checkout's
    ``pycuda/`` in the working directory, say) is not an installed module.
    """
    if sys.modules.get(name) is not None:
        return True
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    # 3.7+: origin None for namespace packages; 3.6: origin "namespace"
    return spec.origin not in (None, "namespace")


def require(name: str, purpose: "Optional[str]" = None) -> Any:
    """Import ``name`` or raise :class:`MissingDependency` saying what to install.

    No cache of our own: ``sys.modules`` is one, and tests swap doubles in and out of it.
    """
    top = name.split(".")[0]
    what = " for " + purpose if purpose else ""
    try:
        mod = importlib.import_module(name)
    except ImportError as exc:
        hint = INSTALL_HINTS.get(top, "pip install " + top)
        raise MissingDependency(
            "{} is needed{} but is not installed ({}): {}".format(top, what, exc, hint)
        ) from None
    except (Exception, SystemExit) as exc:  # a stray source folder, a package built for another Python, one that exits
        where = getattr(sys.modules.get(top), "__file__", None) or _origin(top)
        raise MissingDependency(
            "{} is needed{} but the copy at {} does not import ({}: {}): run from another directory "
            "or reinstall it".format(top, what, where, type(exc).__name__, exc)
        ) from None
    spec = getattr(mod, "__spec__", None)
    if spec is not None and spec.submodule_search_locations is not None and spec.origin in (None, "namespace"):
        sys.modules.pop(name, None)
        raise MissingDependency(
            "{} is needed{} but is not installed (only a folder without __init__.py, {}, is in the way): {}".format(
                top, what, list(spec.submodule_search_locations)[0], INSTALL_HINTS.get(top, "pip install " + top))
        )
    return mod


def _origin(name: str) -> str:
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        return "?"
    return str(getattr(spec, "origin", None) or "?")


class _Pep562Module(types.ModuleType):
    """Module class that honours a module-level ``__getattr__``/``__dir__`` on Python 3.6."""

    def __getattr__(self, name: str) -> Any:
        fn = self.__dict__.get("__getattr__")
        if fn is None:
            raise AttributeError("module {!r} has no attribute {!r}".format(self.__name__, name))
        return fn(name)

    def __dir__(self) -> Any:
        fn = self.__dict__.get("__dir__")
        return fn() if fn is not None else sorted(self.__dict__)


def pep562(module_name: str) -> None:
    """Make a module's lazy attributes work on Python 3.6 too.

    PEP 562 (module ``__getattr__``) is 3.7+; 3.6 ignores the function silently, so
    ``from package import lazy_name`` fails there.  Call this at the end of a module
    that defines ``__getattr__``.
    """
    if sys.version_info < (3, 7):
        sys.modules[module_name].__class__ = _Pep562Module


def optional(name: str) -> "Optional[Any]":
    """Import ``name`` if it is installed, else None (for feature detection)."""
    try:
        return require(name)
    except MissingDependency:
        return None
