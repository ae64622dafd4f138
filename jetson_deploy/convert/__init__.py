"""Conversion: a PyTorch (or ONNX) model + ModelSpec -> a bundle.

``from jetson_deploy.convert import convert`` is the entry point; see
:mod:`jetson_deploy.convert.pipeline` (the stages), :mod:`jetson_deploy.convert.options`
(the option groups) and docs/convert.md.  Nothing heavy is imported here: torch,
onnx and onnxruntime load inside the functions that need them.
"""
from typing import Any

__all__ = ["convert", "ConvertResult", "ConvertOptions"]
_HOME = {"convert": "pipeline", "ConvertResult": "pipeline", "ConvertOptions": "options"}


def __getattr__(name: str) -> Any:  # PEP 562: the pipeline module (numpy only) on first use
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("{}.{}".format(__name__, _HOME[name])), name)
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))


from .._lazy import pep562 as _pep562  # noqa: E402

_pep562(__name__)
