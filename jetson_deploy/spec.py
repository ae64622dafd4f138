"""ModelSpec: the one description of a model's input and preprocessing.

Calibration, conversion, the bundle manifest and the runtime all read the same
spec, so calibration data is always preprocessed exactly as the engine sees it.
File format: DESIGN.md "ModelSpec file (v1)"; extend, don't break.
"""
import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from .errors import BadInput

TASKS = ("classify", "detect", "segment", "raw")
COLORS = ("rgb", "bgr", "gray")
DTYPES = ("float32", "float16", "uint8", "int8")
LAYOUTS = ("nchw", "nhwc")


def _fail(source: str, field_name: str, msg: str) -> "BadInput":
    return BadInput("{}: field '{}' {}".format(source, field_name, msg))


@dataclass
class ModelSpec:
    """Input, preprocessing, task and labels of one model."""

    input_name: str = "input"
    shape: "List[int]" = field(default_factory=lambda: [1, 3, 224, 224])
    dtype: str = "float32"
    color: str = "rgb"
    layout: str = "nchw"
    resize: "Optional[List[int]]" = None  # [width, height]; None: from shape
    keep_aspect: bool = False
    scale: float = 1.0 / 255.0
    mean: "List[float]" = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: "List[float]" = field(default_factory=lambda: [1.0, 1.0, 1.0])
    task: str = "classify"
    outputs: "List[str]" = field(default_factory=lambda: ["output"])
    labels: "List[str]" = field(default_factory=list)
    extra: "Dict[str, Any]" = field(default_factory=dict)  # unknown keys, kept verbatim

    # ---- derived -------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    @property
    def width(self) -> int:
        return int(self.shape[3] if self.layout == "nchw" else self.shape[2])

    @property
    def height(self) -> int:
        return int(self.shape[2] if self.layout == "nchw" else self.shape[1])

    @property
    def batch(self) -> int:
        return int(self.shape[0])

    @property
    def resize_wh(self) -> "List[int]":
        return list(self.resize) if self.resize else [self.width, self.height]

    # ---- (de)serialisation -----------------------------------------------------------
    def to_dict(self) -> "Dict[str, Any]":
        """The DESIGN.md v1 form, as stored in the manifest under ``spec``."""
        d: "Dict[str, Any]" = {
            "task": self.task,
            "input": {
                "name": self.input_name,
                "shape": list(self.shape),
                "dtype": self.dtype,
                "color": self.color,
            },
            "preprocess": {
                "resize": self.resize_wh,
                "keep_aspect": self.keep_aspect,
                "scale": self.scale,
                "mean": list(self.mean),
                "std": list(self.std),
            },
            "outputs": list(self.outputs),
            "labels": list(self.labels),
        }
        if self.layout != "nchw":
            d["input"]["layout"] = self.layout
        d.update(copy.deepcopy(self.extra))
        return d

    def sha256(self) -> str:
        """Stable hash of the spec; calibration sets record it to detect drift."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def replace(self, **changes: Any) -> "ModelSpec":
        new = copy.deepcopy(self)
        for k, v in changes.items():
            if not hasattr(new, k):
                raise AttributeError(k)
            setattr(new, k, v)
        return new

    @classmethod
    def from_dict(cls, data: "Dict[str, Any]", source: str = "spec", base_dir: "Optional[Path]" = None) -> "ModelSpec":
        return _parse(data, source, base_dir)


def _num_list(v: Any, n: "Optional[int]", source: str, name: str) -> "List[float]":
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = [float(v)] * (n or 1)
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise _fail(source, name, "must be a number or a list of numbers, got {!r}".format(v))
    if n is not None and len(v) != n:
        raise _fail(source, name, "needs {} values (one per channel), got {}".format(n, len(v)))
    return [float(x) for x in v]


def _parse(data: "Dict[str, Any]", source: str, base_dir: "Optional[Path]") -> "ModelSpec":
    if not isinstance(data, dict):
        raise BadInput("{}: a spec must be a mapping (YAML/JSON object), got {}".format(source, type(data).__name__))
    data = copy.deepcopy(data)
    known = {"task", "input", "preprocess", "outputs", "labels"}
    extra = {k: v for k, v in data.items() if k not in known}

    task = data.get("task", "classify")
    if task not in TASKS:
        raise _fail(source, "task", "must be one of {}, got {!r}".format("|".join(TASKS), task))

    inp = data.get("input")
    if not isinstance(inp, dict):
        raise _fail(source, "input", "is required: a mapping with name, shape, dtype, color")
    name = inp.get("name", "input")
    if not isinstance(name, str) or not name:
        raise _fail(source, "input.name", "must be a non-empty string")
    shape = inp.get("shape")
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) != 4
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        raise _fail(source, "input.shape", "must be 4 positive integers [N, C, H, W], got {!r}".format(shape))
    dtype = inp.get("dtype", "float32")
    if dtype not in DTYPES:
        raise _fail(source, "input.dtype", "must be one of {}, got {!r}".format("|".join(DTYPES), dtype))
    color = inp.get("color", "rgb")
    if color not in COLORS:
        raise _fail(source, "input.color", "must be one of {}, got {!r}".format("|".join(COLORS), color))
    layout = str(inp.get("layout", "nchw")).lower()
    if layout not in LAYOUTS:
        raise _fail(source, "input.layout", "must be nchw or nhwc, got {!r}".format(layout))
    channels = 1 if color == "gray" else 3
    c_axis = 1 if layout == "nchw" else 3
    if shape[c_axis] != channels:
        raise _fail(
            source, "input.shape", "has {} channels at axis {} but color '{}' needs {}".format(shape[c_axis], c_axis, color, channels)
        )

    pre = data.get("preprocess", {}) or {}
    if not isinstance(pre, dict):
        raise _fail(source, "preprocess", "must be a mapping")
    resize = pre.get("resize")
    if resize is not None:
        if (
            not isinstance(resize, (list, tuple))
            or len(resize) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in resize)
        ):
            raise _fail(source, "preprocess.resize", "must be [width, height] in pixels, got {!r}".format(resize))
        resize = [int(resize[0]), int(resize[1])]
        w, h = (shape[3], shape[2]) if layout == "nchw" else (shape[2], shape[1])
        if resize != [w, h]:
            raise _fail(source, "preprocess.resize", "{} does not match input.shape (width {}, height {})".format(resize, w, h))
    keep_aspect = pre.get("keep_aspect", False)
    if not isinstance(keep_aspect, bool):
        raise _fail(source, "preprocess.keep_aspect", "must be true or false")
    scale = pre.get("scale", 1.0 / 255.0)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or scale <= 0:
        raise _fail(source, "preprocess.scale", "must be a positive number, got {!r}".format(scale))
    mean = _num_list(pre.get("mean", 0.0), channels, source, "preprocess.mean")
    std = _num_list(pre.get("std", 1.0), channels, source, "preprocess.std")
    if any(s == 0 for s in std):
        raise _fail(source, "preprocess.std", "must not contain 0")

    outputs = data.get("outputs", ["output"])
    if isinstance(outputs, str):
        outputs = [outputs]
    if not isinstance(outputs, list) or not outputs or not all(isinstance(o, str) and o for o in outputs):
        raise _fail(source, "outputs", "must be a non-empty list of output names")

    labels = data.get("labels", [])
    if isinstance(labels, str):
        path = Path(labels)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            labels = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except OSError as exc:
            raise _fail(source, "labels", "points to {} which cannot be read ({})".format(path, exc.strerror))
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _fail(source, "labels", "must be a list of strings or a path to labels.txt")
    if task == "classify" and not labels:
        pass  # allowed: results then report class indices

    return ModelSpec(
        input_name=name,
        shape=[int(s) for s in shape],
        dtype=dtype,
        color=color,
        layout=layout,
        resize=resize,
        keep_aspect=keep_aspect,
        scale=float(scale),
        mean=mean,
        std=std,
        task=task,
        outputs=list(outputs),
        labels=list(labels),
        extra=extra,
    )


def load_spec(source: "Union[str, Path, Dict[str, Any], ModelSpec]") -> "ModelSpec":
    """Load a spec from a YAML/JSON file, a dict, or pass a ModelSpec through."""
    if isinstance(source, ModelSpec):
        return source
    if isinstance(source, dict):
        return _parse(source, "spec", None)
    path = Path(source)
    if not path.is_file():
        raise BadInput("spec file {} does not exist: pass --spec a YAML or JSON ModelSpec file".format(path))
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BadInput("{}: not valid JSON ({})".format(path, exc))
    else:
        from ._lazy import require

        yaml = require("yaml", "YAML spec files")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BadInput("{}: not valid YAML ({})".format(path, str(exc).splitlines()[0]))
    return _parse(data, str(path), path.parent)


def dump_spec(spec: "ModelSpec", path: "Union[str, Path]") -> Path:
    """Write a spec as YAML (``.yaml``/``.yml``, needs pyyaml) or JSON."""
    from ._files import atomic_write_json, atomic_write_text

    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        from ._lazy import require

        yaml = require("yaml", "YAML spec files")
        return atomic_write_text(path, yaml.safe_dump(spec.to_dict(), sort_keys=False))
    return atomic_write_json(path, spec.to_dict())


def parse_shape(text: str) -> "Sequence[int]":
    """'1x3x224x224' or '1,3,224,224' -> [1, 3, 224, 224] (for CLI flags)."""
    parts = text.replace("x", ",").split(",")
    try:
        return [int(p) for p in parts if p.strip()]
    except ValueError:
        raise BadInput("shape {!r} must look like 1x3x224x224".format(text))
