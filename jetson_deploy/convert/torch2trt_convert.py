"""The torch2trt path: a PyTorch module straight to TensorRT engine bytes.

``convert_with_torch2trt`` calls NVIDIA-AI-IOT/torch2trt's ``torch2trt(...)`` and
returns ``module.engine.serialize()``: a plain plan that goes into the same bundle
slot (``engines/<tensorrt>_sm<NN>_<precision>.engine``) as an ONNX-built engine.
torch2trt is optional and installed from source; without it the call raises
MissingDependency (exit 2) with the install line.  Keyword arguments that the
installed torch2trt does not take (older releases have no DLA/ONNX options) are
refused by name rather than silently dropped.
"""
import inspect
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .._lazy import require
from ..errors import BadInput, CheckFailed
from ..trt.compat import load_tensorrt

PRECISIONS = ("fp32", "fp16", "int8")


def _accepts(fn: Any) -> "Optional[set]":
    """Parameter names of ``fn``, or None when it takes **kwargs (accepts anything)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return None
    return set(params)


def convert_with_torch2trt(
    model: Any,
    example_input: Any,
    precision: str = "fp16",
    int8_calib_dataset: Any = None,
    max_batch_size: int = 1,
    *,
    workspace_mb: int = 1024,
    input_names: "Optional[Sequence[str]]" = None,
    output_names: "Optional[Sequence[str]]" = None,
    calib_batch_size: int = 1,
    calib_algorithm: str = "entropy2",
    dla_core: "Optional[int]" = None,
    gpu_fallback: bool = True,
    strict_types: bool = False,
    use_onnx: bool = False,
    device: "Optional[str]" = None,
) -> bytes:
    """Convert ``model`` with torch2trt and return the serialized engine.

    ``example_input``: a tensor or a tuple/list of tensors (with batch axis).
    ``int8_calib_dataset``: torch2trt's dataset (indexable; item = list of tensors
    without batch axis) or a calibration set (``iter_batches``), wrapped in
    :class:`~jetson_deploy.calibration.trt_calibrator.Torch2trtCalibDataset`.
    ``device``: where the model runs for conversion (default cuda when available).
    """
    _check_args(precision, int8_calib_dataset, dla_core)
    t2 = require("torch2trt", "--converter torch2trt")
    trt = load_tensorrt("--converter torch2trt")
    torch = require("torch", "--converter torch2trt")
    if precision == "int8":
        _check_fast_int8(trt)
    dev = device or ("cuda" if torch.cuda.is_available() else None)
    model, inputs = _on_device(model, example_input, dev)
    if int8_calib_dataset is not None and hasattr(int8_calib_dataset, "iter_batches"):
        from ..calibration.trt_calibrator import Torch2trtCalibDataset

        int8_calib_dataset = Torch2trtCalibDataset(int8_calib_dataset, device=dev or "cpu")
    kwargs = _torch2trt_kwargs(trt, precision, workspace_mb, max_batch_size, strict_types, input_names, output_names)
    if precision == "int8":
        kwargs.update(_int8_kwargs(trt, int8_calib_dataset, calib_algorithm, calib_batch_size))
    if use_onnx:
        kwargs["use_onnx"] = True
    if dla_core is not None:
        kwargs.update(default_device_type=trt.DeviceType.DLA, dla_core=int(dla_core), gpu_fallback=bool(gpu_fallback))
    _fit_to_signature(t2.torch2trt, kwargs)
    return _run_torch2trt(torch, t2, model, inputs, kwargs)


def _check_args(precision: str, int8_calib_dataset: Any, dla_core: "Optional[int]") -> None:
    if precision not in PRECISIONS:
        raise BadInput("precision must be one of {}, got {!r}".format("/".join(PRECISIONS), precision))
    if precision == "int8" and int8_calib_dataset is None:
        raise BadInput("--converter torch2trt with --precision int8 needs calibration data (--calib CALIB_DIR)")
    if int8_calib_dataset is not None and precision != "int8":
        raise BadInput("an INT8 calibration dataset only applies to --precision int8 (got {})".format(precision))
    if dla_core is not None and precision == "fp32":
        raise BadInput("DLA runs FP16 or INT8 only: use --precision fp16 or int8 with DLA core {}".format(dla_core))


def _check_fast_int8(trt: Any) -> None:
    try:
        from ..trt.logger import process_logger

        fast = trt.Builder(process_logger(trt)).platform_has_fast_int8
    except Exception:  # noqa: BLE001 -- no GPU to ask: let torch2trt try
        fast = True
    if not fast:
        raise BadInput("this GPU has no fast INT8 in TensorRT (Jetson Nano/TX1 SM 5.3, TX2 SM 6.2): use --precision fp16")


def _on_device(model: Any, example_input: Any, dev: "Optional[str]") -> "Tuple[Any, List[Any]]":
    """(model in eval mode, list of example tensors), both moved to ``dev`` when given."""
    inputs = list(example_input) if isinstance(example_input, (tuple, list)) else [example_input]
    if dev is not None:
        model = model.to(dev)
        inputs = [t.to(dev) for t in inputs]
    return model.eval(), inputs


def _torch2trt_kwargs(trt: Any, precision: str, workspace_mb: int, max_batch_size: int, strict_types: bool,
                      input_names: "Optional[Sequence[str]]", output_names: "Optional[Sequence[str]]") -> "Dict[str, Any]":
    kwargs: "Dict[str, Any]" = {
        "fp16_mode": precision in ("fp16", "int8"),
        "int8_mode": precision == "int8",
        "max_workspace_size": int(workspace_mb) << 20,
        "max_batch_size": int(max_batch_size),
        "strict_type_constraints": bool(strict_types),
    }
    if input_names is not None:
        kwargs["input_names"] = list(input_names)
    if output_names is not None:
        kwargs["output_names"] = list(output_names)
    return kwargs


def _int8_kwargs(trt: Any, dataset: Any, calib_algorithm: str, calib_batch_size: int) -> "Dict[str, Any]":
    kwargs: "Dict[str, Any]" = {"int8_calib_dataset": dataset}
    algo = {"entropy2": "ENTROPY_CALIBRATION_2", "minmax": "MINMAX_CALIBRATION"}.get(calib_algorithm)
    if algo is None:
        raise BadInput("calib_algorithm must be entropy2 or minmax, got {!r}".format(calib_algorithm))
    kwargs["int8_calib_algorithm"] = getattr(trt.CalibrationAlgoType, algo)
    if calib_batch_size != 1:
        kwargs["int8_calib_batch_size"] = int(calib_batch_size)
    return kwargs


def _fit_to_signature(fn: Any, kwargs: "Dict[str, Any]") -> None:
    """Drop optional keywords ``fn`` does not take; refuse by name the ones an option needs."""
    accepted = _accepts(fn)
    if accepted is None:
        return
    unknown = sorted(k for k in kwargs if k not in accepted)
    optional = {"max_batch_size", "strict_type_constraints"}  # harmless to leave out on releases without them
    refused = [k for k in unknown if k not in optional]
    if refused:
        raise BadInput("the installed torch2trt does not take {} (needed for these options): update torch2trt "
                       "(git clone https://github.com/NVIDIA-AI-IOT/torch2trt && cd torch2trt && pip install .)".format(refused))
    for k in unknown:
        kwargs.pop(k)


def _run_torch2trt(torch: Any, t2: Any, model: Any, inputs: "List[Any]", kwargs: "Dict[str, Any]") -> bytes:
    with torch.no_grad():
        try:
            module = t2.torch2trt(model, inputs, **kwargs)
        except BadInput:
            raise
        except Exception as exc:  # noqa: BLE001 -- torch2trt raises anything on an unsupported op
            raise CheckFailed("torch2trt failed to convert the model: {}: {}".format(type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")) from None
    engine = getattr(module, "engine", None)
    if engine is None:
        raise CheckFailed("torch2trt returned no TensorRT engine (the build failed; run with a verbose TensorRT log level)")
    return bytes(engine.serialize())
