"""Small real bundles for the export tests: an ONNX model per task (onnx.helper, no torch), its spec,
engines per TensorRT/SM (placeholder plans: exports only copy them), INT8 calibration caches.

Works on the device legs (Python 3.6/3.8 without torch): onnx builds the models there too.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from support.bundles import write_bundle

LABELS = {"classify": ["circle", "square", "triangle", "none"], "detect": ["person", "car", "dog"],
          "segment": ["background", "road", "sky"]}
# uniform std (nvinfer can express it), per-channel mean (offsets differ per channel); the detector's input is
# not square (infer-dims is c;h;w)
SPECS: "Dict[str, Dict[str, Any]]" = {
    "classify": {"task": "classify", "input": {"name": "input", "shape": [1, 3, 16, 16], "dtype": "float32", "color": "rgb"},
                 "preprocess": {"resize": [16, 16], "keep_aspect": False, "scale": 1 / 255.0,
                                "mean": [0.485, 0.456, 0.406], "std": [0.226, 0.226, 0.226]},
                 "outputs": ["logits"], "labels": LABELS["classify"]},
    "detect": {"task": "detect", "input": {"name": "images", "shape": [1, 3, 32, 48], "dtype": "float32", "color": "bgr"},
               "preprocess": {"resize": [48, 32], "keep_aspect": True, "scale": 1 / 255.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
               "outputs": ["output0"], "labels": LABELS["detect"]},
    "segment": {"task": "segment", "input": {"name": "input", "shape": [1, 1, 16, 16], "dtype": "float32", "color": "gray"},
                "preprocess": {"resize": [16, 16], "keep_aspect": False, "scale": 1.0, "mean": [114.0], "std": [58.0]},
                "outputs": ["logits"], "labels": LABELS["segment"]},
}
TARGETS = [("8.2.1", 53, "jetpack 4.6", "nano"), ("8.6.2", 87, "6.0", "orin"), ("8.5.2", 72, "5.1", "xavier")]


def _w(shape: "Sequence[int]", seed: int) -> "np.ndarray":
    return (np.random.RandomState(seed).standard_normal(shape) * 0.5).astype(np.float32)


def task_model(path: Path, task: str, spec: "Dict[str, Any]", dynamic: bool = False) -> Path:
    """An ONNX model with the spec's input/output names and shapes: Conv -> (GAP, Gemm | Reshape | nothing)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inp = spec["input"]
    n, c, h, w = inp["shape"]
    batch: Any = "batch" if dynamic else n
    k = len(spec["labels"])
    out_c = {"classify": 8, "detect": 4 + k, "segment": k}[task]
    inits = [numpy_helper.from_array(_w((out_c, c, 1, 1), 1), "conv.w"), numpy_helper.from_array(_w((out_c,), 2), "conv.b")]
    nodes = [helper.make_node("Conv", [inp["name"], "conv.w", "conv.b"], ["feat"], name="conv")]
    out = spec["outputs"][0]
    if task == "classify":
        inits += [numpy_helper.from_array(_w((k, out_c), 3), "fc.w"), numpy_helper.from_array(_w((k,), 4), "fc.b")]
        nodes += [helper.make_node("GlobalAveragePool", ["feat"], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
                  helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], [out], transB=1)]
        out_shape = [batch, k]
    elif task == "detect":  # YOLOv8-style head: (N, 4 + classes, anchors)
        inits.append(numpy_helper.from_array(np.array([0, out_c, -1], dtype=np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["feat", "shape"], [out]))
        out_shape = [batch, out_c, h * w]
    else:
        nodes.append(helper.make_node("Identity", ["feat"], [out]))
        out_shape = [batch, k, h, w]
    graph = helper.make_graph(nodes, task, [helper.make_tensor_value_info(inp["name"], TensorProto.FLOAT, [batch, c, h, w])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="jetson-deploy-tests")
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def folded_model(path: Path) -> Path:
    """A --fold-preprocess style classifier: uint8 NHWC BGR input -> Cast -> Transpose -> ... -> logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(_w((4, 3), 5), "fc.w")]
    nodes = [helper.make_node("Cast", ["input"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("GlobalAveragePool", ["t"], ["g"]), helper.make_node("Flatten", ["g"], ["fl"], axis=1),
             helper.make_node("Gemm", ["fl", "fc.w"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "folded", [helper.make_tensor_value_info("input", TensorProto.UINT8, [1, 16, 16, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


def export_bundle_dir(dest: Path, task: str = "classify", precision: str = "fp16", targets: "Optional[List[Tuple]]" = None,
                      calib: "Sequence[str]" = (), dynamic: bool = False, spec: "Optional[Dict[str, Any]]" = None,
                      name: str = "net", qdq: bool = False) -> Path:
    """A bundle of ``task``: model.onnx, labels, one engine per target (of ``precision``), caches, spec."""
    import copy

    spec = copy.deepcopy(spec or SPECS[task])
    onnx_path = task_model(dest.parent / "{}-{}.onnx".format(dest.name, task), task, spec, dynamic)
    files: "Dict[str, Any]" = {"model.onnx": onnx_path.read_bytes(), "labels.txt": ("\n".join(spec["labels"]) + "\n").encode()}
    for trt, sm, jetpack, platform in (TARGETS[1:2] if targets is None else targets):
        rel = "engines/{}_sm{}_{}.engine".format(trt, sm, precision)
        target = {"tensorrt": trt, "sm": sm, "precision": precision, "jetpack": jetpack, "platform": platform}
        files[rel] = (b"PLAN" + rel.encode(), "engine", target)
    for trt in calib:
        files["calibration/{}.cache".format(trt)] = (b"TRT-8601-EntropyCalibration2\ninput: 3c010a14\n", "calib-cache", {"tensorrt": trt})
    if qdq:
        files["model.qdq.onnx"] = (onnx_path.read_bytes(), "onnx-qdq", None)
    conversion: "Dict[str, Any]" = {"dynamic_batch": dynamic}
    if dynamic:
        shape = spec["input"]["shape"]
        conversion["build"] = {"profiles": [{spec["input"]["name"]: [[1] + shape[1:], shape, [8] + shape[1:]]}]}
    return write_bundle(dest, name, "1.0.0", files, {"spec": spec, "precision": precision, "conversion": conversion})


def folded_bundle_dir(dest: Path) -> Path:
    spec = {"task": "classify", "input": {"name": "input", "shape": [1, 16, 16, 3], "dtype": "uint8", "color": "bgr", "layout": "nhwc"},
            "preprocess": {"resize": [16, 16], "keep_aspect": False, "scale": 1 / 255.0, "mean": [0.485, 0.456, 0.406],
                           "std": [0.229, 0.224, 0.225]}, "outputs": ["logits"], "labels": LABELS["classify"]}
    onnx_path = folded_model(dest.parent / "{}-folded.onnx".format(dest.name))
    files = {"model.onnx": onnx_path.read_bytes(), "labels.txt": ("\n".join(spec["labels"]) + "\n").encode()}
    return write_bundle(dest, "folded", "1.0.0", files, {"spec": spec, "precision": "fp32"})


def tree_digest(root: Path) -> "Dict[str, bytes]":
    """Every file under ``root`` with its bytes (to show an export changed nothing)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}
