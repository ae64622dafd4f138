"""Pick and build an :class:`~jetson_deploy.runtime.engine.Engine` for a bundle.

``create_engine(bundle, backend="auto")``: ``auto`` is TensorRT when it is importable, else
torch on CUDA when the bundle carries an exported program (or TorchScript) and a GPU is there,
else ONNX Runtime.  Backend modules are imported only when chosen.
"""
from typing import Any, Optional, Tuple

from ..._lazy import has_module, require
from ...errors import BadInput, MissingDependency
from ...vocab import BACKENDS, DYNAMIC_BATCH_MAX
from ..engine import Engine
from ..options import RunOptions


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


def choose_backend(bundle: Any, backend: str = "auto", device: "Optional[str]" = None) -> str:
    """The backend ``create_engine`` would use for ``bundle``."""
    return explain_backend(bundle, backend, device)[0]


def _cuda_driver_devices() -> int:
    """CUDA devices the driver reports (``cuDeviceGetCount`` through ctypes), 0 without a driver.

    Milliseconds, where importing torch to ask costs seconds (and hundreds of MB): the ONNX Runtime
    path on a machine without a GPU never imports torch.
    """
    import ctypes

    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            count = ctypes.c_int(0)
            if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return 0
            return int(count.value)
        except (AttributeError, OSError):
            return 0
    return 0


def _gpu_present() -> bool:
    """A CUDA GPU is visible, asked of the driver first: torch and pycuda are imported only when
    the driver reports a device (then they say whether they can use it)."""
    if _cuda_driver_devices() < 1:
        return False
    if _cuda_available():
        return True
    if has_module("pycuda"):
        try:
            import importlib

            drv = importlib.import_module("pycuda.driver")
            drv.init()
            return drv.Device.count() > 0
        except Exception:
            return False
    return False


def explain_backend(bundle: Any, backend: str = "auto", device: "Optional[str]" = None) -> "Tuple[str, str]":
    """(backend, why) -- ``run`` prints the why in one line; when a GPU is there but only a CPU
    backend can run the bundle, the why says how to get the GPU path."""
    if backend not in BACKENDS:
        raise BadInput("--backend {!r}: choose one of {}".format(backend, ", ".join(BACKENDS)))
    if backend != "auto":
        return backend, "asked for with --backend {}".format(backend)
    if has_module("tensorrt") and (bundle.artifact("engine") is not None or bundle.artifact("onnx") is not None):
        return "tensorrt", "TensorRT is installed"
    has_torch_art = _torch_artifact(bundle) is not None
    wants_cuda = (device or "cuda").startswith("cuda")
    if has_torch_art and wants_cuda and _cuda_available():
        return "torch", "no TensorRT; the bundle has an exported program (model.pt2) and torch sees a CUDA GPU"
    if device and not wants_cuda:
        return "onnxruntime", "--device {} asked for".format(device)
    if not has_torch_art and _cuda_driver_devices() > 0:  # no torch import: nothing here would use it
        return "onnxruntime", ("a GPU is present but only a CPU backend can run this bundle: no TensorRT here and no "
                                   "model.pt2 in the bundle; re-convert with `jetson-deploy convert ... --export-program` "
                                   "for the torch CUDA path (or install TensorRT)")
    if has_torch_art and _gpu_present():
        return "onnxruntime", ("a GPU is present but torch cannot use it (torch without CUDA?); install a CUDA build of "
                               "torch for the torch CUDA path (or TensorRT)")
    return "onnxruntime", "no TensorRT and no CUDA GPU here"


def describe_choice(engine: Any, executor: Any, why: str = "") -> str:
    """One line: what runs, where the preprocessing runs, and why this backend."""
    d = engine.describe() if hasattr(engine, "describe") else {}
    bits = [str(getattr(engine, "backend", "?"))]
    if d.get("device"):
        bits.append("on {}".format(d["device"]))
    if d.get("precision"):
        bits.append(str(d["precision"]))
    ex = executor.describe() if executor is not None else {}
    pre = ex.get("preprocess")
    line = "backend: {}".format(" ".join(bits))
    if ex.get("executor"):
        line += ", executor {}".format(ex["executor"])
    if pre:
        line += ", preprocessing {}".format(pre)
    if why:
        line += " ({})".format(why)
    note = ex.get("preprocess_note") or d.get("precision_note")
    if note:
        line += "; " + str(note)
    return line


def bundle_dynamic_batch(bundle: Any) -> bool:
    """The bundle was converted with ``--dynamic-batch`` (its models take any batch up to
    :func:`bundle_max_batch`)."""
    conv = (getattr(bundle, "manifest", None) or {}).get("conversion") or {}
    return bool(conv.get("dynamic_batch")) if isinstance(conv, dict) else False


def bundle_max_batch(bundle: Any) -> "Optional[int]":
    """The largest batch a ``--dynamic-batch`` bundle's models take (None: not dynamic)."""
    if not bundle_dynamic_batch(bundle):
        return None
    return max(DYNAMIC_BATCH_MAX, int(bundle.spec.shape[0]))


def create_engine(bundle: Any, options: "Optional[RunOptions]" = None, batch: "Optional[int]" = None) -> "Engine":
    """Build (not activate) the engine for an opened :class:`~jetson_deploy.bundle.Bundle`.

    ``options``: the backend (``auto`` is resolved here; a :class:`~jetson_deploy.runtime.session.Session`
    resolves it once and passes the name), device, ONNX Runtime threads/providers, TensorRT cache dir.
    ``batch``: frames per engine call the run needs (several sources); the torch backend runs a
    dynamic-batch bundle's program at that batch (ONNX Runtime and TensorRT profiles take the batch
    at run time).
    """
    opts = options or RunOptions()
    name = choose_backend(bundle, opts.backend, opts.device) if opts.backend == "auto" else opts.backend
    if name == "onnxruntime":
        return _onnxruntime_engine(bundle, opts)
    if name == "torch":
        return _torch_engine(bundle, opts, batch)
    if name == "tensorrt":
        if not has_module("tensorrt"):
            raise MissingDependency("--backend tensorrt: TensorRT is not installed (it ships with JetPack on a Jetson); "
                                    "use --backend onnxruntime or torch")
        from . import tensorrt as trt_backend
        from ...bundle.opset import check_tensorrt_compat

        check_tensorrt_compat(bundle, getattr(require("tensorrt"), "__version__", None))  # one line before any build
        shapes = None
        if batch and bundle_dynamic_batch(bundle):  # built here: a profile at the run's batch
            shape = list(bundle.spec.shape)
            shapes = {bundle.spec.input_name: [int(batch)] + shape[1:]}
        return trt_backend.TensorRTEngine.from_bundle(bundle, device=opts.device, cache_dir=opts.cache_dir, shapes=shapes)
    raise BadInput("unknown backend {!r}".format(name))  # pragma: no cover


def _onnxruntime_engine(bundle: Any, opts: "RunOptions") -> "Engine":
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
    providers = list(opts.providers) if opts.providers else None
    if providers is None and opts.device and opts.device.startswith("cuda"):
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    threads = opts.threads  # None: the engine picks by the machine and the model (OnnxRuntimeEngine.pick_threads)
    return OnnxRuntimeEngine(bundle.verify_artifact(art), providers=providers, threads=threads, artifact_kind=kind)


def _torch_engine(bundle: Any, opts: "RunOptions", batch: "Optional[int]") -> "Engine":
    from .torch import TorchEngine

    found = _torch_artifact(bundle)
    if found is None:
        raise BadInput("bundle {} has no exported program (model.pt2) or TorchScript for the torch backend; "
                       "use --backend onnxruntime".format(bundle.source))
    kind, path = found
    spec = bundle.spec
    shape = list(spec.shape)
    if batch and batch > 1 and batch != shape[0] and bundle_dynamic_batch(bundle):
        shape[0] = int(batch)
    return TorchEngine(path, device=opts.device, input_name=spec.input_name, input_shape=shape,
                       input_dtype=spec.dtype if spec.dtype != "int8" else "float32",
                       output_names=spec.outputs, artifact_kind=kind, precision=bundle.precision,
                       compile=opts.compile, cache_dir=opts.cache_dir, bundle_sha256=bundle.sha256,
                       dynamic_batch=bundle_dynamic_batch(bundle) and kind == "exported-program")
