"""Pick and build an :class:`~jetson_deploy.runtime.engine.Engine` for a bundle.

``create_engine(bundle, backend="auto")``: ``auto`` is TensorRT when it is importable, else
torch on CUDA when the bundle carries an exported program (or TorchScript) and a GPU is there,
else ONNX Runtime.  Backend modules are imported only when chosen.
"""
from typing import Any, Optional

from ..._lazy import has_module, require
from ...errors import BadInput, MissingDependency
from ..engine import Engine

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")


def _cuda_available() -> bool:
    if not has_module("torch"):
        return False
    try:
        import importlib

        return bool(importlib.import_module("torch").cuda.is_available())
    except Exception:
        return False


def _torch_artifact(bundle: Any) -> "Optional[Any]":
    for kind in ("exported-program", "torchscript"):
        art = bundle.artifact(kind)
        if art is not None:
            return kind, bundle.verify_artifact(art)
    return None


def default_cpu_threads() -> int:
    """ONNX Runtime intra-op threads for the frame loop: all logical CPUs but two, on machines
    with more than four; every CPU on smaller ones.

    The capture/preprocess and output threads need cores of their own; with ORT's default (every
    core, spinning) they steal time from its workers and each inference waits for the slowest one.
    Measured on 16 CPUs (docs/runtime.md): pipeline/engine 0.50 -> 0.88 (demo model) and
    0.91 -> 0.95 (ResNet-18), with the best absolute pipeline throughput of the settings tried.
    On 2 CPUs, leaving two free leaves one worker, and the pipeline is slower in absolute terms
    (ResNet-18: 53 fps with 1 thread, 69 fps with 2; demo: 2446 vs 2788 fps).
    """
    import os

    n = os.cpu_count() or 1
    return n - 2 if n > 4 else n


def choose_backend(bundle: Any, backend: str = "auto", device: "Optional[str]" = None) -> str:
    """The backend ``create_engine`` would use for ``bundle``."""
    if backend not in BACKENDS:
        raise BadInput("--backend {!r}: choose one of {}".format(backend, ", ".join(BACKENDS)))
    if backend != "auto":
        return backend
    if has_module("tensorrt") and (bundle.artifact("engine") is not None or bundle.artifact("onnx") is not None):
        return "tensorrt"
    if _torch_artifact(bundle) is not None and (device or "cuda").startswith("cuda") and _cuda_available():
        return "torch"
    return "onnxruntime"


def create_engine(bundle: Any, backend: str = "auto", device: "Optional[str]" = None, **kw: Any) -> "Engine":
    """Build (not activate) the engine for an opened :class:`~jetson_deploy.bundle.Bundle`.

    Keywords go to the backend: onnxruntime ``providers``/``threads``; torch ``device``;
    tensorrt whatever ``TensorRTEngine`` takes.
    """
    name = choose_backend(bundle, backend, device)
    spec = bundle.spec
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeEngine

        kind = "onnx"
        art = None
        if bundle.precision == "int8":
            art = bundle.artifact("onnx-qdq")
            kind = "onnx-qdq" if art is not None else kind
        if art is None:
            art = bundle.artifact("onnx")
        if art is None:
            raise BadInput("bundle {} has no ONNX model for the onnxruntime backend (re-convert it)".format(bundle.source))
        providers = kw.pop("providers", None)
        if providers is None and device and device.startswith("cuda"):
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if kw.get("threads") is None:
            kw["threads"] = default_cpu_threads()
        return OnnxRuntimeEngine(bundle.verify_artifact(art), providers=providers, artifact_kind=kind, **kw)
    if name == "torch":
        from .torch import TorchEngine

        found = _torch_artifact(bundle)
        if found is None:
            raise BadInput("bundle {} has no exported program (model.pt2) or TorchScript for the torch backend; "
                           "use --backend onnxruntime".format(bundle.source))
        kind, path = found
        return TorchEngine(path, device=device, input_name=spec.input_name, input_shape=spec.shape,
                           input_dtype=spec.dtype if spec.dtype != "int8" else "float32",
                           output_names=spec.outputs, artifact_kind=kind, **kw)
    if name == "tensorrt":
        if not has_module("tensorrt"):
            raise MissingDependency("--backend tensorrt: TensorRT is not installed (it ships with JetPack on a Jetson); "
                                    "use --backend onnxruntime or torch")
        from . import tensorrt as trt_backend
        from ...bundle.opset import check_tensorrt_compat

        check_tensorrt_compat(bundle, getattr(require("tensorrt"), "__version__", None))  # one line before any build
        return trt_backend.TensorRTEngine.from_bundle(bundle, device=device, **kw)
    raise BadInput("unknown backend {!r}".format(name))  # pragma: no cover
