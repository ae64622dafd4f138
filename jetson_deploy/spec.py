"""ModelSpec: the one description of a model's input and preprocessing.

Calibration, conversion, the bundle manifest and the runtime all read the same
spec, so calibration data is always preprocessed exactly as the engine sees it.
File format: DESIGN.md "ModelSpec file (v1)"; extend, don't break.
"""
import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

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


KNOWN = {
    "": ("task", "input", "preprocess", "outputs", "labels"),
    "input": ("name", "shape", "dtype", "color", "layout"),
    "preprocess": ("resize", "keep_aspect", "scale", "mean", "std"),
}
# Top-level keys other parts read (kept verbatim in ``extra``); ``x-...`` keys are the user's own.
EXTENSIONS = ("postprocess", "detect", "detect_format")
MAX_SIDE = 16384  # pixels per side of an input or resize
MAX_ELEMENTS = 1 << 30  # N*C*H*W of one input


def _check_keys(d: "Dict[str, Any]", where: str, source: str) -> None:
    """Refuse unknown keys, with a did-you-mean: a misspelt key silently ran with defaults."""
    import difflib

    allowed = KNOWN[where] + (EXTENSIONS if where == "" else ())
    for k in d:
        if k in allowed or (where == "" and isinstance(k, str) and k.startswith("x-")):
            continue
        name = "{}.{}".format(where, k) if where else str(k)
        close = difflib.get_close_matches(str(k), KNOWN[where], n=1, cutoff=0.6)
        hint = "did you mean '{}'?".format(close[0]) if close else "known: {}".format(", ".join(KNOWN[where]))
        if where == "":
            hint += " (keys of your own start with 'x-')"
        raise _fail(source, name, "is not a spec key; {}".format(hint))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _num_list(v: Any, n: "Optional[int]", source: str, name: str) -> "List[float]":
    if _finite(v):
        v = [float(v)] * (n or 1)
    if not isinstance(v, (list, tuple)) or not all(_finite(x) for x in v):
        raise _fail(source, name, "must be a finite number or a list of finite numbers, got {!r}".format(v))
    if n is not None and len(v) != n:
        raise _fail(source, name, "needs {} values (one per channel), got {}".format(n, len(v)))
    return [float(x) for x in v]


def _pos_ints(v: Any, n: int) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == n and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in v)


def _parse_input(inp: Any, source: str) -> "Dict[str, Any]":
    if not isinstance(inp, dict):
        raise _fail(source, "input", "is required: a mapping with name, shape, dtype, color")
    _check_keys(inp, "input", source)
    name = inp.get("name", "input")
    if not isinstance(name, str) or not name:
        raise _fail(source, "input.name", "must be a non-empty string")
    shape = inp.get("shape")
    if not _pos_ints(shape, 4):
        raise _fail(source, "input.shape", "must be 4 positive integers [N, C, H, W], got {!r}".format(shape))
    if max(shape) > MAX_SIDE or shape[0] * shape[1] * shape[2] * shape[3] > MAX_ELEMENTS:
        raise _fail(source, "input.shape", "{} is too large (at most {} per side, {} elements)".format(shape, MAX_SIDE, MAX_ELEMENTS))
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
    return dict(input_name=name, shape=[int(s) for s in shape], dtype=dtype, color=color, layout=layout)


def _parse_preprocess(pre: Any, inp: "Dict[str, Any]", source: str) -> "Dict[str, Any]":
    if not isinstance(pre, dict):
        raise _fail(source, "preprocess", "must be a mapping")
    _check_keys(pre, "preprocess", source)
    shape, layout = inp["shape"], inp["layout"]
    channels = 1 if inp["color"] == "gray" else 3
    resize = pre.get("resize")
    if resize is not None:
        if not _pos_ints(resize, 2):
            raise _fail(source, "preprocess.resize", "must be [width, height] in pixels, got {!r}".format(resize))
        resize = [int(resize[0]), int(resize[1])]
        w, h = (shape[3], shape[2]) if layout == "nchw" else (shape[2], shape[1])
        if resize != [w, h]:
            raise _fail(source, "preprocess.resize", "{} does not match input.shape (width {}, height {})".format(resize, w, h))
    keep_aspect = pre.get("keep_aspect", False)
    if not isinstance(keep_aspect, bool):
        raise _fail(source, "preprocess.keep_aspect", "must be true or false")
    scale = pre.get("scale", 1.0 / 255.0)
    if not _finite(scale) or scale <= 0:
        raise _fail(source, "preprocess.scale", "must be a positive finite number, got {!r}".format(scale))
    mean = _num_list(pre.get("mean", 0.0), channels, source, "preprocess.mean")
    std = _num_list(pre.get("std", 1.0), channels, source, "preprocess.std")
    if any(s == 0 for s in std):
        raise _fail(source, "preprocess.std", "must not contain 0")
    return dict(resize=resize, keep_aspect=keep_aspect, scale=float(scale), mean=mean, std=std)


def _read_labels(labels: str, source: str, base_dir: "Optional[Path]") -> "List[str]":
    path = Path(labels)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise _fail(source, "labels", "points to {} which cannot be read ({})".format(path, exc.strerror))
    except UnicodeDecodeError:
        raise _fail(source, "labels", "points to {} which is not UTF-8 text: one class name a line".format(path))
    if "\0" in text:
        raise _fail(source, "labels", "points to {} which is a binary file, not one class name a line".format(path))
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _parse_outputs_labels(data: "Dict[str, Any]", source: str, base_dir: "Optional[Path]") -> "Dict[str, Any]":
    outputs = data.get("outputs", ["output"])
    if isinstance(outputs, str):
        outputs = [outputs]
    if not isinstance(outputs, list) or not outputs or not all(isinstance(o, str) and o for o in outputs):
        raise _fail(source, "outputs", "must be a non-empty list of output names")
    if len(set(outputs)) != len(outputs):
        raise _fail(source, "outputs", "names an output twice: {}".format(outputs))
    labels = data.get("labels", [])
    if isinstance(labels, str):
        labels = _read_labels(labels, source, base_dir)
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _fail(source, "labels", "must be a list of strings or a path to labels.txt")
    for i, lab in enumerate(labels):
        if "\n" in lab or "\r" in lab or "\0" in lab:
            raise _fail(source, "labels", "entry {} ({!r}) holds a line break: one class name per entry".format(i, lab))
    return dict(outputs=list(outputs), labels=list(labels))


def _parse(data: "Dict[str, Any]", source: str, base_dir: "Optional[Path]") -> "ModelSpec":
    if not isinstance(data, dict):
        raise BadInput("{}: a spec must be a mapping (YAML/JSON object), got {}".format(source, type(data).__name__))
    data = copy.deepcopy(data)
    _check_keys(data, "", source)
    extra = {k: v for k, v in data.items() if k not in KNOWN[""]}
    try:
        json.dumps(extra, allow_nan=False)
    except (TypeError, ValueError):
        raise BadInput("{}: keys {} must hold plain JSON values (no dates, binary or NaN)".format(source, ", ".join(map(str, extra))))
    task = data.get("task", "classify")
    if task not in TASKS:
        raise _fail(source, "task", "must be one of {}, got {!r}".format("|".join(TASKS), task))
    inp = _parse_input(data.get("input"), source)
    pre = _parse_preprocess(data.get("preprocess", {}) or {}, inp, source)
    rest = _parse_outputs_labels(data, source, base_dir)
    return ModelSpec(task=task, extra=extra, **inp, **pre, **rest)


def load_spec(source: "Union[str, Path, Dict[str, Any], ModelSpec]") -> "ModelSpec":
    """Load a spec from a YAML/JSON file, a dict, or pass a ModelSpec through."""
    if isinstance(source, ModelSpec):
        return source
    if isinstance(source, dict):
        return _parse(source, "spec", None)
    path = Path(source)
    if not path.is_file():
        raise BadInput("spec file {} does not exist: pass --spec a YAML or JSON ModelSpec file".format(path))
    if path.stat().st_size > (16 << 20):
        raise BadInput("spec file {} is over 16 MB: a ModelSpec is a small YAML or JSON file".format(path))
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("spec file {} is not UTF-8 text: pass --spec a YAML or JSON ModelSpec file".format(path))
    try:
        data = _load_text(text, path)
    except RecursionError:
        raise BadInput("{}: nested too deeply to be a ModelSpec".format(path))
    return _parse(data, str(path), path.parent)


def _load_text(text: str, path: Path) -> Any:
    if "\0" in text:
        raise BadInput("spec file {} is a binary file: pass --spec a YAML or JSON ModelSpec file".format(path))
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise BadInput("{}: not valid JSON ({})".format(path, exc))
    from ._lazy import require

    yaml = require("yaml", "YAML spec files")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BadInput("{}: not valid YAML ({})".format(path, str(exc).splitlines()[0]))
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date YAML cannot build: 2024-13-45
        raise BadInput("{}: a value cannot be read ({})".format(path, exc))


def dump_spec(spec: "ModelSpec", path: "Union[str, Path]") -> Path:
    """Write a spec as YAML (``.yaml``/``.yml``, needs pyyaml) or JSON."""
    from ._files import atomic_write_json, atomic_write_text

    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        from ._lazy import require

        yaml = require("yaml", "YAML spec files")
        return atomic_write_text(path, yaml.safe_dump(spec.to_dict(), sort_keys=False))
    return atomic_write_json(path, spec.to_dict())
