"""Pre- and postprocessing folded into the ONNX graph, so device copies stay small.

Done on the ONNX graph (not in PyTorch), so it works the same for every MODEL form,
``.onnx`` files included.

Preprocessing: the engine input becomes the camera frame, ``uint8`` NHWC in the
camera's BGR order (or gray), and the graph does ``Cast -> Transpose(NHWC->NCHW)
-> Gather(BGR->RGB) -> Mul(scale/std) -> Add(-mean/std)``.  The bundle's spec then
says ``dtype: uint8``, ``layout: nhwc``, ``color: bgr`` and its shape is
``[N, H, W, C]``, so :func:`jetson_deploy.preprocess.preprocess` only resizes.
TensorRT parses uint8 network inputs from 8.5 on (JetPack 5), so the manifest
records ``min_tensorrt: 8.5``.

Postprocessing: classifiers get ``Softmax(axis=1) -> TopK(k)`` with outputs
``scores`` (float32 ``[N, k]``) and ``classes`` (int32 ``[N, k]``); segmenters
``ArgMax(axis=1)`` with output ``mask`` (int32 ``[N, H, W]``).  Indices are cast
to int32 because TensorRT has no int64 tensors before 10.  The spec records
``postprocess: {folded: ...}`` so runtimes read the outputs right.
"""
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._files import atomic_write_bytes
from .._lazy import require
from ..errors import BadInput
from ..preprocess import normalize_constants
from ..spec import ModelSpec
from .export import graph_io, model_opset

PRE_SUFFIX = "__normalized"
DEFAULT_TOP_K = 5
FOLDED_MIN_TRT = "8.5"

log = logging.getLogger(__name__)


def _onnx() -> Any:
    return require("onnx", "folding pre/postprocessing into the ONNX graph")


def _rename_tensor(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for i, n in enumerate(node.input):
            if n == old:
                node.input[i] = new
        for i, n in enumerate(node.output):
            if n == old:
                node.output[i] = new


def _const(name: str, arr: "np.ndarray") -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(arr, name=name)


def fold_model(path: Path, spec: "ModelSpec", preprocess: bool, postprocess: bool, top_k: "Optional[int]" = None) -> "Tuple[ModelSpec, Dict[str, Any]]":
    """Rewrite the ONNX file at ``path`` in place; return the bundle's spec and a record."""
    onnx = _onnx()
    model = onnx.load(str(path))
    opset = model_opset(model)
    if opset < 11:
        raise BadInput("folding needs opset 11 or newer; the model has opset {}".format(opset))
    record: "Dict[str, Any]" = {"steps": []}
    new_spec = spec
    if preprocess:
        new_spec = _fold_pre(model, spec, new_spec, record)
    if postprocess:
        new_spec = _fold_post(model, spec, new_spec, record, top_k)
    del model.graph.value_info[:]  # stale after renames; check_onnx re-infers them
    atomic_write_bytes(path, model.SerializeToString())
    return new_spec, record


def _input_value(graph: Any, name: str) -> Any:
    for v in graph.input:
        if v.name == name:
            return v
    raise BadInput("the ONNX graph has no input {!r}".format(name))


def _fold_pre(model: Any, spec: "ModelSpec", new_spec: "ModelSpec", record: "Dict[str, Any]") -> "ModelSpec":
    from onnx import TensorProto, helper

    g = model.graph
    name = spec.input_name
    inp = _input_value(g, name)
    dims = list(inp.type.tensor_type.shape.dim)
    batch_dim: Any = dims[0].dim_value if dims and dims[0].HasField("dim_value") else (dims[0].dim_param if dims else spec.batch)
    inner = name + PRE_SUFFIX
    _rename_tensor(g, name, inner)
    h, w, c = spec.height, spec.width, spec.channels
    mul, off = normalize_constants(spec)
    steps: "List[str]" = ["cast uint8->float32"]
    nodes = []
    cur = name + "__f32"
    nodes.append(helper.make_node("Cast", [name], [cur], to=TensorProto.FLOAT, name="fold_pre_cast"))
    if spec.layout == "nchw":
        nxt = name + "__nchw"
        nodes.append(helper.make_node("Transpose", [cur], [nxt], perm=[0, 3, 1, 2], name="fold_pre_nhwc_to_nchw"))
        cur = nxt
        steps.append("NHWC->NCHW")
        cshape = [1, c, 1, 1]
        c_axis = 1
    else:
        cshape = [1, 1, 1, c]
        c_axis = 3
    inits = []
    new_color = spec.color
    if spec.color == "rgb":
        # Camera frames (OpenCV, V4L2 BGR formats) arrive BGR: the graph reorders.
        idx = name + "__bgr_to_rgb"
        inits.append(_const(idx, np.array([2, 1, 0], dtype=np.int64)))
        nxt = name + "__rgb"
        nodes.append(helper.make_node("Gather", [cur, idx], [nxt], axis=c_axis, name="fold_pre_bgr_to_rgb"))
        cur = nxt
        new_color = "bgr"
        steps.append("BGR->RGB")
    mul_n, off_n = name + "__mul", name + "__add"
    inits.append(_const(mul_n, mul.reshape(cshape).astype(np.float32)))
    inits.append(_const(off_n, off.reshape(cshape).astype(np.float32)))
    scaled = name + "__scaled"
    nodes.append(helper.make_node("Mul", [cur, mul_n], [scaled], name="fold_pre_scale"))
    nodes.append(helper.make_node("Add", [scaled, off_n], [inner], name="fold_pre_offset"))
    steps.append("(x*scale-mean)/std")
    new_nodes = nodes + list(g.node)
    del g.node[:]
    g.node.extend(new_nodes)
    g.initializer.extend(inits)
    new_in = helper.make_tensor_value_info(name, TensorProto.UINT8, [batch_dim, h, w, c])
    for i, v in enumerate(g.input):
        if v.name == name:
            g.input.remove(v)
            g.input.insert(i, new_in)
            break
    record["preprocess"] = {
        "input": {"dtype": "uint8", "layout": "nhwc", "color": new_color, "shape": [spec.batch, h, w, c]},
        "was": {"dtype": spec.dtype, "layout": spec.layout, "color": spec.color, "shape": list(spec.shape)},
        "scale": spec.scale,
        "mean": list(spec.mean),
        "std": list(spec.std),
    }
    record["steps"].append("preprocessing (" + ", ".join(steps) + ")")
    record["min_tensorrt"] = FOLDED_MIN_TRT
    return new_spec.replace(dtype="uint8", layout="nhwc", color=new_color, shape=[spec.batch, h, w, c])


def _fold_post(model: Any, spec: "ModelSpec", new_spec: "ModelSpec", record: "Dict[str, Any]", top_k: "Optional[int]") -> "ModelSpec":
    from onnx import TensorProto, helper

    onnx = _onnx()
    g = model.graph
    if len(g.output) != 1:
        raise BadInput(
            "--fold-postprocess needs exactly one model output (the logits); the model has {} ({}): keep one with --select-output".format(
                len(g.output), ", ".join(o.name for o in g.output)
            )
        )
    inferred = onnx.shape_inference.infer_shapes(model)
    out = inferred.graph.output[0]
    shape = graph_io([out], ())[0]["shape"]
    logits = out.name
    batch_dim = shape[0] if shape else spec.batch
    extra = dict(new_spec.extra)
    if spec.task == "classify":
        if len(shape) != 2:
            raise BadInput("--fold-postprocess for classify needs logits of shape [N, classes]; {} has shape {}".format(logits, shape))
        classes = shape[1]
        if not isinstance(classes, int):
            raise BadInput("--fold-postprocess: the number of classes of {} is not static ({})".format(logits, classes))
        k = int(top_k) if top_k else min(DEFAULT_TOP_K, classes)
        if not 1 <= k <= classes:
            raise BadInput("--top-k {} must be between 1 and the number of classes ({})".format(k, classes))
        prob, k_name, idx64 = logits + "__prob", logits + "__k", logits + "__idx64"
        g.initializer.append(_const(k_name, np.array([k], dtype=np.int64)))
        g.node.extend(
            [
                helper.make_node("Softmax", [logits], [prob], axis=1, name="fold_post_softmax"),
                helper.make_node("TopK", [prob, k_name], ["scores", idx64], axis=1, largest=1, sorted=1, name="fold_post_topk"),
                helper.make_node("Cast", [idx64], ["classes"], to=TensorProto.INT32, name="fold_post_classes_int32"),
            ]
        )
        del g.output[:]
        g.output.extend(
            [
                helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch_dim, k]),
                helper.make_tensor_value_info("classes", TensorProto.INT32, [batch_dim, k]),
            ]
        )
        extra["postprocess"] = {"folded": "softmax-topk", "k": k, "outputs": {"scores": "probabilities, best first", "classes": "class indices (int32)"}}
        record["postprocess"] = {"kind": "softmax-topk", "k": k, "logits": logits}
        record["steps"].append("postprocessing (softmax, top-{})".format(k))
        return new_spec.replace(outputs=["scores", "classes"], extra=extra)
    # segment
    if len(shape) != 4:
        raise BadInput("--fold-postprocess for segment needs logits of shape [N, classes, H, W]; {} has shape {}".format(logits, shape))
    g.node.extend(
        [
            helper.make_node("ArgMax", [logits], [logits + "__argmax"], axis=1, keepdims=0, name="fold_post_argmax"),
            helper.make_node("Cast", [logits + "__argmax"], ["mask"], to=TensorProto.INT32, name="fold_post_mask_int32"),
        ]
    )
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info("mask", TensorProto.INT32, [batch_dim, shape[2], shape[3]])])
    extra["postprocess"] = {"folded": "argmax", "outputs": {"mask": "class index per pixel (int32)"}}
    record["postprocess"] = {"kind": "argmax", "logits": logits}
    record["steps"].append("postprocessing (argmax mask)")
    return new_spec.replace(outputs=["mask"], extra=extra)


def reference_postprocess(ref: "Dict[str, np.ndarray]", spec: "ModelSpec", new_spec: "ModelSpec", record: "Dict[str, Any]") -> "Dict[str, np.ndarray]":
    """What the folded graph must output, from the unfolded model's outputs (numpy)."""
    from .parity import argmax_mask, softmax_topk

    post = record.get("postprocess")
    if not post:
        return {new: ref[old] for new, old in zip(new_spec.outputs, spec.outputs)}
    logits = ref[spec.outputs[0]]
    if post["kind"] == "softmax-topk":
        return softmax_topk(logits, int(post["k"]))
    return argmax_mask(logits)


def select_onnx_outputs(path: Path, spec: "ModelSpec", selectors: "Optional[Sequence[Any]]") -> "List[str]":
    """``--select-output`` for an .onnx MODEL: keep the chosen graph outputs (by name or index), in order."""
    onnx = _onnx()
    model = onnx.load(str(path))
    names = [o.name for o in model.graph.output]
    if not selectors:
        return names
    from .outputs import describe_selection, select_outputs

    chosen = select_outputs(names, selectors, len(spec.outputs))
    by_name = {o.name: o for o in model.graph.output}
    keep = [by_name[n] for n in chosen]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    try:
        model = onnx.utils.Extractor(model).extract_model([i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}], chosen)
    except Exception:
        pass  # dead branches stay; harmless for ONNX Runtime and TensorRT
    atomic_write_bytes(path, model.SerializeToString())
    log.info(describe_selection(names, chosen, chosen))
    return chosen
