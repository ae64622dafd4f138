"""Tiny ONNX models for the TensorRT tests (made with onnx.helper, deterministic weights)."""
from pathlib import Path
from typing import Optional, Union

import numpy as np


def _w(shape, seed: int) -> "np.ndarray":
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(np.float32) * 0.5


def classifier(path: "Union[str, Path]", batch: "Optional[int]" = 1, classes: int = 4, hw: int = 8,
               opset: int = 13, extra_op: "Optional[str]" = None, extra_domain: str = "") -> Path:
    """input [N,3,hw,hw] -> Conv1x1(8) -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> logits [N,classes].

    ``batch=None`` makes the batch axis dynamic.  ``extra_op`` appends a node of that
    op (named ``Foo_3`` when it is the 4th node... i.e. index 5 here) for parser-error tests.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = batch if batch is not None else "N"
    inits = [
        numpy_helper.from_array(_w((8, 3, 1, 1), 1), "conv.w"),
        numpy_helper.from_array(_w((8,), 2), "conv.b"),
        numpy_helper.from_array(_w((classes, 8), 3), "fc.w"),
        numpy_helper.from_array(_w((classes,), 4), "fc.b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv.w", "conv.b"], ["conv_out"], name="Conv_0"),
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="Relu_1"),
        helper.make_node("GlobalAveragePool", ["relu_out"], ["gap_out"], name="GlobalAveragePool_2"),
        helper.make_node("Flatten", ["gap_out"], ["flat_out"], name="Flatten_3", axis=1),
        helper.make_node("Gemm", ["flat_out", "fc.w", "fc.b"], ["logits"], name="Gemm_4", transB=1),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, classes])]
    if extra_op:
        nodes.append(helper.make_node(extra_op, ["logits"], ["extra_out"], name="Foo_3", domain=extra_domain))
        outputs = [helper.make_tensor_value_info("extra_out", TensorProto.FLOAT, [n, classes])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, 3, hw, hw])],
                              outputs, inits)
    opsets = [helper.make_opsetid("", opset)]
    if extra_domain:
        opsets.append(helper.make_opsetid(extra_domain, 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="jetson-deploy-tests")
    model.ir_version = 7
    path = Path(path)
    onnx.save(model, str(path))
    return path


def two_outputs(path: "Union[str, Path]", batch: "Optional[int]" = 1) -> Path:
    """input [N,4] -> (scores = softmax(x @ W), boxes = x * 2 + 1) : two outputs, for IO-order tests."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = batch if batch is not None else "N"
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"], name="MatMul_0"),
        helper.make_node("Softmax", ["mm"], ["scores"], name="Softmax_1", axis=1),
        helper.make_node("Mul", ["x", "two"], ["x2"], name="Mul_2"),
        helper.make_node("Add", ["x2", "one"], ["boxes"], name="Add_3"),
    ]
    inits = [numpy_helper.from_array(_w((4, 3), 7), "W"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, 4])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [n, 3]),
                               helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [n, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    path = Path(path)
    onnx.save(model, str(path))
    return path


def qdq_classifier(path: "Union[str, Path]") -> Path:
    """The classifier with a QuantizeLinear/DequantizeLinear pair on its input (explicit INT8)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    src = classifier(Path(path).with_suffix(".fp32.onnx"))
    model = onnx.load(str(src))
    g = model.graph
    g.initializer.extend([numpy_helper.from_array(np.array(0.02, np.float32), "in.scale"),
                          numpy_helper.from_array(np.array(0, np.int8), "in.zp")])
    q = helper.make_node("QuantizeLinear", ["input", "in.scale", "in.zp"], ["input_q"], name="Q_in")
    dq = helper.make_node("DequantizeLinear", ["input_q", "in.scale", "in.zp"], ["input_dq"], name="DQ_in")
    for node in g.node:
        node.input[:] = ["input_dq" if i == "input" else i for i in node.input]
    nodes = [q, dq] + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.save(model, str(path))
    return Path(path)


def reference(path: "Union[str, Path]", feeds) -> dict:
    """ONNX Runtime outputs of the model (the numbers engines must reproduce)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))
