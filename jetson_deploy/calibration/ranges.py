"""Per-tensor INT8 ranges with ONNX Runtime's calibrators, on the CPU.

``compute_ranges`` runs the calibration samples of a :class:`CalibrationSet`
through ``onnxruntime.quantization``'s calibrators (entropy, percentile or
min-max), a chunk at a time so memory stays bounded (the calibrators merge
histograms / ranges across ``collect_data`` calls), and returns a
:class:`Ranges`: every float activation tensor of the graph -> symmetric
(min, max) and ``amax``, which is what both TensorRT paths need (implicit INT8
reads ``amax/127`` from a calibration cache; explicit INT8 reads Q/DQ scales).

``ranges.json`` stores them with the ONNX model's sha256, so a calibration dir
can be reused for the same model without recomputing.
"""
import contextlib
import datetime
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from .. import __version__
from .._files import atomic_write_json, sha256_file
from .._lazy import require
from ..errors import BadInput
from .cache import scale_to_hex

METHODS = ("entropy", "percentile", "minmax")
RANGES_FILE = "ranges.json"
CHUNK_SAMPLES = 64  # samples per collect_data call: bounds the calibrator's memory
DEFAULT_BATCH = 16  # batch for models with a dynamic batch axis


@dataclass
class Ranges:
    """Per-tensor symmetric ranges of one ONNX model over one calibration set."""

    method: str
    onnx_sha256: str
    set_sha256: str
    tensors: "Dict[str, Tuple[float, float]]"  # name -> (min, max), symmetric: min == -max
    samples: int = 0
    input_name: str = ""
    options: "Dict[str, Any]" = field(default_factory=dict)

    def amax(self) -> "Dict[str, float]":
        return {k: float(max(abs(lo), abs(hi))) for k, (lo, hi) in self.tensors.items()}

    def to_dict(self) -> "Dict[str, Any]":
        tensors = {}
        for name, (lo, hi) in sorted(self.tensors.items()):
            a = max(abs(lo), abs(hi))
            tensors[name] = {"min": float(lo), "max": float(hi), "amax": float(a), "scale_hex": scale_to_hex(a / 127.0)}
        return {
            "schema_version": 1,
            "kind": "int8-ranges",
            "method": self.method,
            "symmetric": True,
            "onnx_sha256": self.onnx_sha256,
            "set_sha256": self.set_sha256,
            "samples": int(self.samples),
            "input_name": self.input_name,
            "options": dict(self.options),
            "tool": {"name": "jetson-deploy", "version": __version__},
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tensors": tensors,
        }

    def save(self, path: "Union[str, Path]") -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: "Union[str, Path]") -> "Ranges":
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadInput("cannot read INT8 ranges {} ({})".format(p, exc))
        if not isinstance(d, dict) or d.get("kind") != "int8-ranges":
            raise BadInput("{} is not an INT8 ranges file (kind int8-ranges)".format(p))
        tensors = {k: (float(v["min"]), float(v["max"])) for k, v in d.get("tensors", {}).items()}
        return cls(
            method=d["method"],
            onnx_sha256=d["onnx_sha256"],
            set_sha256=d.get("set_sha256", ""),
            tensors=tensors,
            samples=int(d.get("samples", 0)),
            input_name=d.get("input_name", ""),
            options=dict(d.get("options", {})),
        )

    def tensors_data(self) -> Any:
        """The ranges as ONNX Runtime's ``TensorsData`` (for its quantizer)."""
        cal = require("onnxruntime.quantization.calibrate", "INT8 quantization")
        method = {"entropy": "Entropy", "percentile": "Percentile", "minmax": "MinMax"}[self.method]
        data = {
            k: cal.TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
            for k, (lo, hi) in self.tensors.items()
        }
        return cal.TensorsData(getattr(cal.CalibrationMethod, method), data)


def model_input(model: Any, input_name: str, source: str, sample_shape: "Optional[Tuple[int, ...]]" = None) -> "Tuple[Optional[int], int]":
    """(fixed batch or None, onnx elem type) of the model's one real input.

    With ``sample_shape`` (the calibration set's per-sample shape) the model's
    static dims must match it: a model with preprocessing folded in (uint8 NHWC
    input) cannot be calibrated with preprocessed samples."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise BadInput("{}: INT8 calibration supports models with one input, this one has {}".format(source, len(inputs)))
    inp = inputs[0]
    if inp.name != input_name:
        raise BadInput(
            "{}: input is named {!r} but the calibration set's spec says {!r}; fix input.name in the spec".format(
                source, inp.name, input_name
            )
        )
    dims = inp.type.tensor_type.shape.dim
    batch = None
    if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
        batch = int(dims[0].dim_value)
    elem = int(inp.type.tensor_type.elem_type)
    if sample_shape is not None:
        static = [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims[1:]]
        mismatch = len(static) != len(sample_shape) or any(a is not None and a != b for a, b in zip(static, sample_shape))
        if mismatch or elem not in (1, 10):  # FLOAT, FLOAT16
            raise BadInput(
                "{}: input {!r} is {} {} but the calibration samples are float {}; calibrate the model before "
                "preprocessing is folded in (convert --precision int8 --calib does this)".format(
                    source, inp.name, "x".join(str(d or "?") for d in static), _elem_name(elem), "x".join(str(d) for d in sample_shape)
                )
            )
    return batch, elem


def _elem_name(elem: int) -> str:
    return {1: "float32", 2: "uint8", 3: "int8", 10: "float16"}.get(elem, "type {}".format(elem))


def numpy_input_dtype(elem_type: int) -> Any:
    onnx = require("onnx", "INT8 calibration")
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type)


def iter_model_batches(batches: "Iterator[np.ndarray]", fixed_batch: "Optional[int]", dtype: Any) -> "Iterator[np.ndarray]":
    """Re-batch to the model's fixed batch size (padding the last batch by repeating
    its last sample only when the model cannot take a smaller one)."""
    if fixed_batch is None:
        for b in batches:
            yield b.astype(dtype, copy=False)
        return
    pending: "List[np.ndarray]" = []
    have = 0
    for b in batches:
        pending.append(b)
        have += len(b)
        while have >= fixed_batch:
            cat = np.concatenate(pending, axis=0)
            yield cat[:fixed_batch].astype(dtype, copy=False)
            rest = cat[fixed_batch:]
            pending = [rest] if len(rest) else []
            have = len(rest)
    # a remainder smaller than a fixed batch is dropped (as TensorRT's calibrators do)


class _Reader:
    """``CalibrationDataReader`` over a bounded list of batches."""

    def __init__(self, name: str, batches: "List[np.ndarray]") -> None:
        self.name = name
        self.batches = batches
        self.i = 0

    def get_next(self) -> "Optional[Dict[str, np.ndarray]]":
        if self.i >= len(self.batches):
            return None
        b = self.batches[self.i]
        self.i += 1
        return {self.name: b}

    def __len__(self) -> int:
        return len(self.batches)


@contextlib.contextmanager
def quiet_stdout() -> "Iterator[None]":
    """Silence ONNX Runtime's quantization chatter.

    Its calibrators ``print`` to stdout (which must stay clean for ``--json``) and
    its quantizer calls ``logging.warning`` on the root logger, which would also
    install a root handler for the rest of the process; a temporary NullHandler
    prevents that.
    """
    import logging
    import os

    root = logging.getLogger()
    null = logging.NullHandler()
    root.addHandler(null)
    previous = root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield
    finally:
        logging.disable(previous)
        root.removeHandler(null)


def compute_ranges(
    onnx_path: "Union[str, Path]",
    cs: Any,
    method: str = "entropy",
    progress: bool = True,
    num_bins: int = 2048,
    percentile: float = 99.999,
    chunk_samples: int = CHUNK_SAMPLES,
) -> "Ranges":
    """Per-tensor symmetric ranges of every float activation in the model.

    ``cs`` is a :class:`~jetson_deploy.calibration.dataset.CalibrationSet`; only
    its calibration samples are used (never the held-out ones).

    Methods: ``minmax`` (ORT MinMax, symmetric: max |x|); ``percentile`` (ORT
    Percentile on |x| histograms, ``percentile`` of |x|); ``entropy``: ORT's
    Percentile calibrator collects the |x| histograms (``num_bins`` bins, 2048 as
    in TensorRT) and the threshold is TensorRT's EntropyCalibration2 rule
    (:func:`entropy_amax`), because ORT's own Entropy calibrator searches a
    two-sided histogram (128 levels over [-t, t] by default) and clipped our demo
    model's activations hard (top-1 agreement 0.986 at 512 bins, 0.71 at 2048
    bins / 255 levels; 1.0 with the TensorRT rule).
    """
    if method not in METHODS:
        raise BadInput("--method must be one of {}, got {!r}".format("|".join(METHODS), method))
    onnx = require("onnx", "INT8 calibration")
    cal = require("onnxruntime.quantization.calibrate", "INT8 calibration")
    onnx_path = Path(onnx_path)
    model = onnx.load(str(onnx_path), load_external_data=False)
    fixed_batch, elem = model_input(model, cs.input_name, str(onnx_path), cs.shape)
    dtype = numpy_input_dtype(elem)
    op_types = sorted({n.op_type for n in model.graph.node})
    batch = fixed_batch or DEFAULT_BATCH
    if len(cs) < batch and fixed_batch:
        raise BadInput(
            "{}: the model has a fixed batch of {} but the calibration set has only {} samples".format(onnx_path, fixed_batch, len(cs))
        )
    method_enum = {"entropy": cal.CalibrationMethod.Percentile, "percentile": cal.CalibrationMethod.Percentile, "minmax": cal.CalibrationMethod.MinMax}[method]
    options = _method_options(method, num_bins, percentile)
    ort_options = {k: v for k, v in options.items() if k in ("symmetric", "num_bins", "percentile")}

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cs), desc="ranges ({})".format(method), unit="sample", file=sys.stderr, leave=False, dynamic_ncols=True)
    with tempfile.TemporaryDirectory(prefix="jd-calib-") as td, quiet_stdout():
        calibrator = cal.create_calibrator(
            onnx_path,
            op_types,
            augmented_model_path=str(Path(td) / "augmented.onnx"),
            calibrate_method=method_enum,
            extra_options=ort_options,
        )
        seen = _feed(calibrator, cs, batch, fixed_batch, dtype, max(1, chunk_samples // batch), bar)
        if seen == 0:
            raise BadInput("calibration set {} gave no batches for {}".format(cs.path, onnx_path))
        if method == "entropy":
            hists = calibrator.collector.histogram_dict
            data = {name: (-entropy_amax(h[0], h[1]), entropy_amax(h[0], h[1])) for name, h in hists.items()}
        else:
            data = calibrator.compute_data()
    if bar is not None:
        bar.close()
    tensors: "Dict[str, Tuple[float, float]]" = {}
    for name in list(data.keys()):
        v = data[name]
        lo, hi = v.range_value if hasattr(v, "range_value") else (v[0], v[1])  # older ORT: plain tuples
        a = float(max(abs(float(np.max(np.abs(lo)))), abs(float(np.max(np.abs(hi))))))
        tensors[name] = (-a, a)
    return Ranges(
        method=method,
        onnx_sha256=sha256_file(onnx_path),
        set_sha256=cs.sha256,
        tensors=tensors,
        samples=seen,
        input_name=cs.input_name,
        options=options,
    )


def _method_options(method: str, num_bins: int, percentile: float) -> "Dict[str, Any]":
    """The settings recorded in ranges.json (ORT takes the numeric ones)."""
    options: "Dict[str, Any]" = {"symmetric": True}
    if method == "entropy":
        options.update(num_bins=int(num_bins), rule="tensorrt-entropy2 (KL divergence, 128 levels of |x|)")
    elif method == "percentile":
        options.update(num_bins=int(num_bins), percentile=float(percentile))
    return options


def _feed(calibrator: Any, cs: Any, batch: int, fixed_batch: Any, dtype: Any, per_chunk: int, bar: Any) -> int:
    """Feed the calibration samples to ORT's calibrator in chunks; return how many went in."""
    seen = 0
    chunk: "List[np.ndarray]" = []
    for b in iter_model_batches(cs.iter_batches(batch), fixed_batch, dtype):
        if chunk and len(b) != len(chunk[0]):
            # ORT stacks a chunk's outputs into one array: keep batch sizes equal
            calibrator.collect_data(_Reader(cs.input_name, chunk))
            seen += sum(len(x) for x in chunk)
            chunk = []
        chunk.append(b)
        if len(chunk) >= per_chunk:
            calibrator.collect_data(_Reader(cs.input_name, chunk))
            seen += sum(len(x) for x in chunk)
            if bar is not None:
                bar.update(sum(len(x) for x in chunk))
            chunk = []
    if chunk:
        calibrator.collect_data(_Reader(cs.input_name, chunk))
        seen += sum(len(x) for x in chunk)
    return seen


def entropy_amax(hist: "np.ndarray", edges: "np.ndarray", num_levels: int = 128, start_bin: int = 128, skip_zero_bin: bool = True, max_candidates: int = 480) -> float:
    """TensorRT's entropy (KL divergence) threshold on a histogram of |x|.

    For every candidate threshold bin ``i`` (from ``start_bin`` to all bins): the
    reference distribution P is ``hist[:i]`` with everything above folded into
    its last bin; Q is ``hist[:i]`` quantized to ``num_levels`` levels (the 128
    magnitudes of symmetric INT8) and expanded back over the non-empty bins.
    The threshold is the upper edge of the bin with the smallest KL(P||Q) (the
    last one on ties), as in NVIDIA's 8-bit inference talk (GTC 2017, S7310) and
    pytorch-quantization's ``_compute_amax_entropy``.

    ``skip_zero_bin`` drops the first bin (|x| ~ 0): after a ReLU half the values
    are exactly zero, and that spike alone makes the divergence favour tiny
    thresholds (it clipped every ReLU output of the demo model to ~10% of its
    range); pytorch-quantization offers the same as ``skip_zeros``.
    """
    hist = np.array(hist, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    if skip_zero_bin and len(hist):
        hist[0] = 0.0
    n = len(hist)
    total = hist.sum()
    if n == 0 or total <= 0:
        return float(edges[-1]) if len(edges) else 0.0
    if n <= start_bin:
        return float(edges[-1])
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # tail[i] = sum(hist[i:])
    best_i, best_d = n, np.inf
    stride = max(1, (n - start_bin) // max_candidates)  # bounds the cost on wide histograms
    for i in list(range(start_bin, n + 1, stride)) + ([n] if (n - start_bin) % stride else []):
        ref = hist[:i]
        p = ref.copy()
        p[-1] += tail[i]
        nz = ref > 0
        group = (np.arange(i) * num_levels) // i
        qsum = np.bincount(group, weights=ref, minlength=num_levels)
        qcnt = np.bincount(group, weights=nz.astype(np.float64), minlength=num_levels)
        q = np.where(nz, qsum[group] / np.maximum(qcnt[group], 1.0), 0.0)
        ps, qs = p.sum(), q.sum()
        if ps <= 0 or qs <= 0:
            continue
        p = p / ps
        q = q / qs
        m = p > 0
        if np.any(q[m] == 0):
            continue  # KL is infinite
        d = float(np.sum(p[m] * np.log(p[m] / q[m])))
        if d <= best_d:
            best_d, best_i = d, i
    return float(edges[best_i])
