"""What ``convert`` may be asked, in a few groups (Polygraphy's ``CreateConfig`` idea).

Each stage takes the group it needs; :class:`ConvertOptions` holds them all and
rejects combinations that cannot work, with one actionable line each.  The flat
keyword names of ``convert(model, spec, out, **options)`` (and of the CLI) map to
fields through :data:`FLAT_NAMES`.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from ..errors import BadInput
from ..vocab import PRECISIONS
from . import parity as _parity

CONVERTERS = ("onnx", "torch2trt")
BUILD_CHOICES = ("auto", True, False)


@dataclass
class BundleOptions:
    """The bundle's identity: ``name`` defaults to the model's file or module name."""

    name: "Optional[str]" = None
    version: str = "0.1.0"


@dataclass
class ExportOptions:
    """MODEL -> ONNX: state dict to load, outputs to keep, opset, dynamic batch axis.

    ``opset=None`` (the default) lets convert choose: the lowest from 13 up that exports
    and passes parity, since the opset decides the oldest TensorRT that can parse the file.
    """

    weights: "Optional[Union[str, Path]]" = None
    outputs: "Optional[Sequence[Any]]" = None
    opset: "Optional[int]" = None
    dynamic_batch: bool = False
    #: also write ``model.pt2`` (torch.export): the torch CUDA path on GPUs without TensorRT
    program: bool = False


@dataclass
class CheckOptions:
    """Parity/FP16 checks: tolerance, batches compared, and ``force`` to write anyway.

    ``calib``: a calibration set whose real frames are checked too (set from ``--calib``).
    """

    tolerance: float = _parity.DEFAULT_TOLERANCE
    samples: int = _parity.DEFAULT_SAMPLES
    force: bool = False
    calib: "Optional[Union[str, Path]]" = None


@dataclass
class FoldOptions:
    """Pre/postprocessing folded into the graph."""

    preprocess: bool = False
    postprocess: bool = False
    top_k: "Optional[int]" = None

    @property
    def any(self) -> bool:
        return bool(self.preprocess or self.postprocess)


@dataclass
class Int8Options:
    """INT8 data from a calibration set and the agreement gate."""

    calib: "Optional[Union[str, Path]]" = None
    min_agreement: float = 0.99
    auto_exclude: bool = False
    exclude_budget: int = 5  # calibration.quantize.DEFAULT_EXCLUDE_BUDGET: most layer groups --auto-exclude leaves in float
    progress: bool = False


@dataclass
class EngineOptions:
    """TensorRT engines: converter, whether to build here, builder settings."""

    converter: str = "onnx"
    build: Any = "auto"  # "auto" | True | False
    workspace_mb: int = 1024
    dla_core: "Optional[int]" = None
    timing_cache: "Optional[Union[str, Path]]" = None


@dataclass
class ConvertOptions:
    """Everything ``convert`` takes besides MODEL, SPEC and OUT."""

    precision: str = "fp32"
    bundle: BundleOptions = field(default_factory=BundleOptions)
    export: ExportOptions = field(default_factory=ExportOptions)
    check: CheckOptions = field(default_factory=CheckOptions)
    fold: FoldOptions = field(default_factory=FoldOptions)
    int8: Int8Options = field(default_factory=Int8Options)
    engine: EngineOptions = field(default_factory=EngineOptions)

    @classmethod
    def from_flat(cls, **kwargs: Any) -> "ConvertOptions":
        """Options from the flat keyword names (``precision=``, ``calib=``, ``tolerance=`` ...)."""
        opts = cls()
        for key, value in kwargs.items():
            where = FLAT_NAMES.get(key)
            if where is None:
                raise TypeError("convert() got an unexpected keyword argument {!r}".format(key))
            group, attr = where
            setattr(getattr(opts, group) if group else opts, attr, value)
        return opts

    def validate(self, spec: Any) -> None:
        """Refuse combinations that cannot work (BadInput, exit 2)."""
        _check_choices(self)
        _check_spec_fit(self, spec)
        if self.check.calib is None:
            self.check.calib = self.int8.calib  # real frames for parity and the FP16 check too


# flat keyword -> (group attribute or "" for ConvertOptions itself, field)
FLAT_NAMES: "Dict[str, Tuple[str, str]]" = {
    "precision": ("", "precision"),
    "name": ("bundle", "name"),
    "version": ("bundle", "version"),
    "weights": ("export", "weights"),
    "outputs": ("export", "outputs"),
    "opset": ("export", "opset"),
    "dynamic_batch": ("export", "dynamic_batch"),
    "export_program": ("export", "program"),
    "tolerance": ("check", "tolerance"),
    "parity_samples": ("check", "samples"),
    "force": ("check", "force"),
    "fold_preprocess": ("fold", "preprocess"),
    "fold_postprocess": ("fold", "postprocess"),
    "top_k": ("fold", "top_k"),
    "calib": ("int8", "calib"),
    "min_agreement": ("int8", "min_agreement"),
    "auto_exclude": ("int8", "auto_exclude"),
    "exclude_budget": ("int8", "exclude_budget"),
    "progress": ("int8", "progress"),
    "converter": ("engine", "converter"),
    "build_engine": ("engine", "build"),
    "workspace_mb": ("engine", "workspace_mb"),
    "dla_core": ("engine", "dla_core"),
    "timing_cache": ("engine", "timing_cache"),
}


def _check_choices(o: "ConvertOptions") -> None:
    precision, converter, build = o.precision, o.engine.converter, o.engine.build
    if precision not in PRECISIONS:
        raise BadInput("--precision {!r} must be one of {}".format(precision, "|".join(PRECISIONS)))
    if converter not in CONVERTERS:
        raise BadInput("--converter {!r} must be one of {}".format(converter, "|".join(CONVERTERS)))
    if build not in BUILD_CHOICES:
        raise BadInput("build_engine must be 'auto', True or False, got {!r}".format(build))
    if precision == "int8" and o.int8.calib is None:
        raise BadInput("--precision int8 needs --calib CALIB_DIR (make one with: jetson-deploy calibrate IMAGES... --spec SPEC -o CALIB_DIR)")
    if o.int8.calib is not None and precision != "int8":
        raise BadInput("--calib is used for --precision int8 only (got --precision {})".format(precision))
    if converter == "torch2trt" and build is False:
        raise BadInput("--converter torch2trt builds the engine in PyTorch; it cannot be combined with --no-build-engine")
    if converter == "torch2trt" and o.fold.any:
        raise BadInput("--fold-preprocess/--fold-postprocess work on the ONNX graph: use them with --converter onnx")
    if o.export.program and o.fold.any:
        raise BadInput("--export-program writes the unfolded network; it cannot be combined with --fold-preprocess/--fold-postprocess")
    if not (o.check.tolerance > 0):
        raise BadInput("--tolerance must be positive, got {}".format(o.check.tolerance))


def _check_spec_fit(o: "ConvertOptions", spec: Any) -> None:
    if spec.dtype in ("float16", "int8"):
        raise BadInput(
            "spec input.dtype {} is not a model input convert can export: use float32 (or uint8 for models that take raw "
            "pixels); --precision fp16/int8 sets the engine's inner precision".format(spec.dtype)
        )
    if o.fold.preprocess and spec.dtype == "uint8":
        raise BadInput("--fold-preprocess: the spec's input is already uint8, there is no normalisation to fold")
    if o.fold.postprocess and spec.task not in ("classify", "segment"):
        raise BadInput("--fold-postprocess supports task classify (softmax/top-k) and segment (argmax mask), the spec's task is {}".format(spec.task))
