"""The torch2trt path: a PyTorch module straight to TensorRT engine bytes.

``convert_with_torch2trt`` calls NVIDIA-AI-IOT/torch2trt's ``torch2trt(...)`` and
returns ``module.engine.serialize()``: a plain plan that goes into the same bundle
slot (``engines/<tensorrt>_sm<NN>_<precision>.engine``) as an ONNX-built engine.
torch2trt is optional and installed from source; without it the call raises
MissingDependency (exit 2) with the install line.

Every torch2trt release takes ``**kwargs`` and silently swallows keywords it does not
know, so its signature says nothing.  :func:`torch2trt_features` reads what the installed
release really uses from its source (package metadata as a fallback: master still says
0.5.0), and options it would drop are refused by name (docs/tensorrt.md cites the tags).
"""
import inspect
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .._lazy import require
from ..errors import BadInput, CheckFailed
from ..trt.compat import load_tensorrt
from ..vocab import PRECISIONS


@dataclass
class Torch2trtFeatures:
    """What the installed torch2trt does with an option (NVIDIA-AI-IOT/torch2trt ``torch2trt/torch2trt.py``)."""

    dla: bool  # default_device_type/dla_core/gpu_fallback used: v0.4.0 L657-660; absent in v0.2/v0.3
    calib_batch_size: bool  # int8_calib_batch_size: v0.2-v0.4; removed in v0.5.0 (swallowed by **kwargs)
    batch_profile: bool  # max_batch_size -> profile min 1/max N: v0.5.0/master L579-582
    how: str  # "source" or "version X"


def _dist_version(name: str) -> "Optional[str]":
    """The installed distribution's version (importlib.metadata on 3.8+, pkg_resources before)."""
    import importlib

    try:
        return importlib.import_module("importlib.metadata").version(name)  # type: ignore[no-any-return]
    except ImportError:  # Python 3.6/3.7 (JetPack 4.6)
        pass
    except Exception:  # noqa: BLE001 -- not installed as a distribution
        return None
    try:
        import pkg_resources

        return pkg_resources.get_distribution(name).version
    except Exception:  # noqa: BLE001
        return None


def torch2trt_features(t2: Any) -> "Torch2trtFeatures":
    """Read from the torch2trt function's source (the keywords its body uses), else from the version."""
    try:
        src = inspect.getsource(t2.torch2trt)
    except (TypeError, OSError):
        src = ""
    if src:
        used = set(re.findall(r"\b\w+\b", src))
        return Torch2trtFeatures("dla_core" in used, "int8_calib_batch_size" in used, "min_shapes" in used, "source")
    ver = getattr(t2, "dist_version", None) or _dist_version("torch2trt") or "0.5.0"
    try:
        nums = tuple(int(p) for p in ver.split(".")[:2])
    except ValueError:
        nums = (0, 5)
    return Torch2trtFeatures(nums >= (0, 4), nums < (0, 5), nums >= (0, 5), "version " + ver)


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
    :class:`~jetson_deploy.trt.calibrator.Torch2trtCalibDataset`.
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
    from ..trt.calibrator import Torch2trtCalibDataset

    if int8_calib_dataset is not None and hasattr(int8_calib_dataset, "iter_batches"):
        int8_calib_dataset = Torch2trtCalibDataset(int8_calib_dataset, device=dev or "cpu")
    feats = torch2trt_features(t2)
    _refuse_dropped(trt, feats, dla_core, calib_batch_size, strict_types, max_batch_size, inputs)
    if int8_calib_dataset is not None and feats.batch_profile and isinstance(int8_calib_dataset, Torch2trtCalibDataset):
        int8_calib_dataset.batch_axis = True  # master hands TensorRT each item's data_ptr(): it must be the batch
    kwargs = _torch2trt_kwargs(trt, precision, workspace_mb, max_batch_size, strict_types, input_names, output_names)
    if precision == "int8":
        kwargs.update(_int8_kwargs(trt, int8_calib_dataset, calib_algorithm, calib_batch_size))
    if use_onnx:
        kwargs["use_onnx"] = True
    if dla_core is not None:
        kwargs.update(default_device_type=trt.DeviceType.DLA, dla_core=int(dla_core), gpu_fallback=bool(gpu_fallback))
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
    }
    if int(max_batch_size) != 1:  # v0.5+/master turn any max_batch_size into a dynamic-batch profile
        kwargs["max_batch_size"] = int(max_batch_size)
    if strict_types:
        kwargs["strict_type_constraints"] = True
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


def _refuse_dropped(trt: Any, feats: "Torch2trtFeatures", dla_core: "Optional[int]", calib_batch_size: int,
                    strict_types: bool, max_batch_size: int, inputs: "List[Any]") -> None:
    """BadInput for an option the installed torch2trt would swallow (or crash on) instead of honouring."""
    update = "update torch2trt (git clone https://github.com/NVIDIA-AI-IOT/torch2trt && cd torch2trt && pip install .)"
    if dla_core is not None and not feats.dla:
        raise BadInput("the installed torch2trt does not take ['default_device_type', 'dla_core', 'gpu_fallback'] "
                       "(it would ignore them and build a GPU engine; {}): {}".format(feats.how, update))
    if calib_batch_size != 1 and not feats.calib_batch_size:
        raise BadInput("the installed torch2trt has no int8_calib_batch_size (removed in v0.5.0; it would be ignored): "
                       "leave the calibration batch size at 1")
    if strict_types and not hasattr(trt.BuilderFlag, "STRICT_TYPES"):
        raise BadInput("strict types: torch2trt sets BuilderFlag.STRICT_TYPES, which TensorRT {} no longer has (removed in "
                       "10.0): drop --strict-types".format(getattr(trt, "__version__", "10")))
    if feats.batch_profile and int(max_batch_size) != 1 and dla_core is not None:
        raise BadInput("torch2trt makes max_batch_size {} a dynamic-batch profile, which DLA cannot run: use batch 1 "
                       "with DLA".format(max_batch_size))


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
