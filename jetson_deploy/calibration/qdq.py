"""Q/DQ ONNX models for explicit INT8 (TensorRT 8.5+ and 10), from our ranges.

Built with ``onnxruntime.quantization.quantize_static`` in QDQ format, with the
settings TensorRT's explicit-quantization path wants:

* symmetric INT8 activations (zero point 0; ``scale = amax/127``, the same
  number the implicit-INT8 calibration cache carries),
* per-channel symmetric INT8 weights, kept as float initializers followed by a
  Q/DQ pair (``AddQDQPairToWeight``) so TensorRT folds them itself,
* biases left in float (``QuantizeBias: False``): TensorRT fuses bias itself,
* only the ops TensorRT runs in INT8 and fuses Q/DQ around (:data:`QDQ_OP_TYPES`).

The ranges are the ones :mod:`.ranges` computed once (no second calibration
pass); excluding layers (mixed precision) is ``nodes_to_exclude`` plus removing
the Q/DQ pairs on the excluded layers' activation tensors, so those layers run
entirely in floating point (TensorRT: FP16).
"""
import inspect
import json
import tempfile
from pathlib import Path
from typing import Any, Iterable, List, Sequence, Set, Union

from .._lazy import require
from ..errors import BadInput
from .ranges import Ranges, quiet_stdout

QDQ_OP_TYPES = (
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Concat",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Resize",
)

EXTRA_OPTIONS = {
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "AddQDQPairToWeight": True,
    "QuantizeBias": False,
}


def _quantize(model_path: Path, out_path: Path, ranges: "Ranges", nodes_to_exclude: "Sequence[str]", per_channel: bool) -> None:
    q = require("onnxruntime.quantization", "INT8 Q/DQ models")
    method = {"entropy": q.CalibrationMethod.Entropy, "percentile": q.CalibrationMethod.Percentile, "minmax": q.CalibrationMethod.MinMax}[ranges.method]
    params = inspect.signature(q.quantize_static).parameters
    kwargs = dict(
        quant_format=q.QuantFormat.QDQ,
        op_types_to_quantize=list(QDQ_OP_TYPES),
        per_channel=per_channel,
        reduce_range=False,
        activation_type=q.QuantType.QInt8,
        weight_type=q.QuantType.QInt8,
        nodes_to_exclude=list(nodes_to_exclude),
        calibrate_method=method,
        extra_options=dict(EXTRA_OPTIONS),
    )
    with quiet_stdout():
        if "calibration_cache_path" in params:
            cal = require("onnxruntime.quantization.calibrate", "INT8 Q/DQ models")
            with tempfile.TemporaryDirectory(prefix="jd-qdq-") as td:
                cache = Path(td) / "ranges.json"
                cal.save_tensors_data(ranges.tensors_data(), cache)
                q.quantize_static(str(model_path), str(out_path), None, calibration_cache_path=str(cache), **kwargs)
            return
        # older ONNX Runtime: hand our ranges straight to the QDQ quantizer
        from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
        from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

        model = load_model_with_shape_infer(Path(model_path))
        quantizer = QDQQuantizer(
            model,
            per_channel,
            False,
            q.QuantType.QInt8,
            q.QuantType.QInt8,
            ranges.tensors_data(),
            [],
            list(nodes_to_exclude),
            list(QDQ_OP_TYPES),
            dict(EXTRA_OPTIONS),
        )
        quantizer.quantize_model()
        quantizer.model.save_model_to_file(str(out_path), False)


def remove_qdq_on(model: Any, tensors: "Iterable[str]") -> int:
    """Remove QuantizeLinear->DequantizeLinear pairs that act on ``tensors``.

    Consumers of the DequantizeLinear output are rewired to the float tensor.
    Returns the number of pairs removed.
    """
    wanted: "Set[str]" = set(tensors)
    if not wanted:
        return 0
    g = model.graph
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    drop = []
    rename = {}
    for n in g.node:
        if n.op_type != "QuantizeLinear" or n.input[0] not in wanted:
            continue
        dqs = consumers.get(n.output[0], [])
        if not dqs or any(d.op_type != "DequantizeLinear" for d in dqs):
            continue
        drop.append(n)
        for d in dqs:
            drop.append(d)
            rename[d.output[0]] = n.input[0]
    if not drop:
        return 0
    ids = set(id(n) for n in drop)
    keep = [n for n in g.node if id(n) not in ids]
    for n in keep:
        for k, name in enumerate(n.input):
            if name in rename:
                n.input[k] = rename[name]
    del g.node[:]
    g.node.extend(keep)
    out_names = {o.name for o in g.output}  # a graph output keeps its name through an Identity
    onnx = require("onnx", "INT8 Q/DQ models")
    for old, new in rename.items():
        if old in out_names:
            g.node.extend([onnx.helper.make_node("Identity", [new], [old], name="jd_keep_" + old)])
    return len([n for n in drop if n.op_type == "QuantizeLinear"])


def build_qdq(
    onnx_path: "Union[str, Path]",
    ranges: "Ranges",
    out_path: "Union[str, Path]",
    exclude_nodes: "Sequence[str]" = (),
    exclude_tensors: "Sequence[str]" = (),
    per_channel: bool = True,
) -> Path:
    """Write a Q/DQ model quantized with ``ranges`` to ``out_path`` (atomically)."""
    onnx = require("onnx", "INT8 Q/DQ models")
    from .._files import atomic_output

    onnx_path = Path(onnx_path)
    out_path = Path(out_path)
    missing = [n for n in exclude_nodes if n not in {x.name for x in onnx.load(str(onnx_path), load_external_data=False).graph.node}]
    if missing:
        raise BadInput("{}: no node named {} to exclude from INT8".format(onnx_path, ", ".join(missing[:3])))
    with tempfile.TemporaryDirectory(prefix="jd-qdq-") as td:
        tmp = Path(td) / "model.qdq.onnx"
        try:
            _quantize(onnx_path, tmp, ranges, exclude_nodes, per_channel)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise BadInput("{}: ONNX Runtime could not quantize the model ({}); try --method minmax or exclude the layer".format(onnx_path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
        model = onnx.load(str(tmp))
        remove_qdq_on(model, exclude_tensors)
        model.doc_string = json.dumps({"jetson_deploy": {"int8": "qdq", "method": ranges.method, "excluded": list(exclude_nodes)}})
        with atomic_output(out_path) as f:
            f.write(model.SerializeToString())
    return out_path


def ensure_node_names(model: Any) -> bool:
    """Give every unnamed node a stable name (exclusion works by node name)."""
    changed = False
    used = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = "{}_{}".format(n.op_type, i)
            while name in used:
                name += "_"
            n.name = name
            used.add(name)
            changed = True
    return changed


def quantized_tensor_names(qdq_model: Any) -> "List[str]":
    """Float tensors that carry a Q/DQ pair in a Q/DQ model."""
    return sorted({n.input[0] for n in qdq_model.graph.node if n.op_type == "QuantizeLinear"})
