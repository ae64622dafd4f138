"""Shared helpers for the runtime/media/bench tests (imported by tests/test_runtime_*.py etc.).

The test model is a real ONNX graph built with ``onnx.helper`` (no torch needed): it averages the
input's colour channels and scores them, so a solid-colour frame is classified by its colour.
Spec colour order is BGR, so the labels follow OpenCV's channel order.
"""
import ctypes
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from doubles import pycuda_double
from jetson_deploy.runtime.engine import Engine

LABELS = ["blue", "green", "red", "gray"]
COLORS = {"blue": (255, 0, 0), "green": (0, 255, 0), "red": (0, 0, 255)}
SIZE = 16


def spec_dict(task: str = "classify", size: int = SIZE, labels: "Sequence[str]" = LABELS, outputs: "Sequence[str]" = ("logits",)) -> "Dict[str, Any]":
    return {
        "task": task,
        "input": {"name": "input", "shape": [1, 3, size, size], "dtype": "float32", "color": "bgr"},
        "preprocess": {"resize": [size, size], "keep_aspect": False, "scale": 1 / 255.0, "mean": [0.0, 0.0, 0.0],
                       "std": [1.0, 1.0, 1.0]},
        "outputs": list(outputs),
        "labels": list(labels),
    }


def color_onnx_bytes(size: int = SIZE, batch: Any = 1) -> bytes:
    """input (B,3,S,S) -> GlobalAveragePool -> Flatten -> MatMul W + b -> logits (B,4).

    ``batch``: an int (fixed) or a name such as ``"N"`` (dynamic batch axis)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.array([[10, 0, 0, 3.2], [0, 10, 0, 3.2], [0, 0, 10, 3.2]], dtype=np.float32)
    b = np.array([0, 0, 0, 0.5], dtype=np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "color",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _many_class_weights(classes: int) -> "Any":
    rng = np.random.RandomState(7)
    return rng.randn(3, classes).astype(np.float32) * 4.0, rng.randn(classes).astype(np.float32)


def many_class_onnx_bytes(classes: int = 100, size: int = SIZE, batch: Any = 1, softmax: bool = False,
                          nan_below: "Optional[float]" = None) -> bytes:
    """input (B,3,S,S) -> GlobalAveragePool -> Flatten -> MatMul W (3 x classes, seeded) + b -> logits
    (or probabilities with ``softmax``): a classifier past the host's small-class shortcut.
    ``nan_below``: + 0 * sqrt(mean of channel 0 - t), so frames whose channel-0 mean is below t give
    NaN in every class (a model that breaks on some inputs)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, b = _many_class_weights(classes)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "W"], ["mm"]),
             helper.make_node("Add", ["mm", "B"], ["raw"])]
    last = "raw"
    if nan_below is not None:
        inits += [numpy_helper.from_array(np.array([0], np.int64), "C0"),
                  numpy_helper.from_array(np.array(nan_below, np.float32), "T"),
                  numpy_helper.from_array(np.array(0.0, np.float32), "Z")]
        nodes += [helper.make_node("Gather", ["flat", "C0"], ["c0"], axis=1),
                  helper.make_node("Sub", ["c0", "T"], ["d"]),
                  helper.make_node("Sqrt", ["d"], ["r"]),
                  helper.make_node("Mul", ["r", "Z"], ["z"]),
                  helper.make_node("Add", ["raw", "z"], ["nanned"])]
        last = "nanned"
    if softmax:
        nodes.append(helper.make_node("Softmax", [last], ["logits"], axis=1))
    else:
        nodes.append(helper.make_node("Identity", [last], ["logits"]))
    graph = helper.make_graph(
        nodes, "classes",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString()


def many_class_pt2_bytes(classes: int = 100, size: int = SIZE, softmax: bool = False,
                         nan_below: "Optional[float]" = None) -> bytes:
    """:func:`many_class_onnx_bytes`'s maths as a torch.export program (batch 1; needs torch)."""
    import io

    import torch

    w, b = _many_class_weights(classes)

    class ManyClass(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.from_numpy(w))
            self.b = torch.nn.Parameter(torch.from_numpy(b))

        def forward(self, x):
            f = x.mean(dim=(2, 3))
            y = f @ self.w + self.b
            if nan_below is not None:
                y = y + torch.sqrt(f[:, :1] - nan_below) * 0.0
            return torch.softmax(y, dim=1) if softmax else y

    ep = torch.export.export(ManyClass().eval(), (torch.zeros(1, 3, size, size),))
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    return buf.getvalue()


def make_many_class_bundle(dest: Path, classes: int = 100, batch: Any = 1, softmax: bool = False,
                           nan_below: "Optional[float]" = None, pt2: bool = False) -> Path:
    """:func:`many_class_onnx_bytes` as a bundle (labels ``c0``..; ``batch="N"``: dynamic batch;
    ``pt2``: with the same maths as ``model.pt2`` for the torch backend, batch 1)."""
    from support.bundles import write_bundle

    spec = spec_dict(labels=["c{}".format(i) for i in range(classes)])
    spec["input"]["shape"] = [batch if isinstance(batch, int) else 1, 3, SIZE, SIZE]
    extra: "Dict[str, Any]" = {"spec": spec, "precision": "fp32"}
    if not isinstance(batch, int):
        extra["conversion"] = {"dynamic_batch": True}
    files = {"model.onnx": many_class_onnx_bytes(classes, batch=batch, softmax=softmax, nan_below=nan_below)}
    if pt2:
        files["model.pt2"] = many_class_pt2_bytes(classes, softmax=softmax, nan_below=nan_below)
    return write_bundle(dest, "classes", "1.0.0", files, extra)


def make_bundle(dest: Path, pt2: bool = False, precision: str = "fp32", spec: "Optional[Dict[str, Any]]" = None) -> Path:
    from support.bundles import write_bundle

    files: "Dict[str, Any]" = {"model.onnx": color_onnx_bytes(), "labels.txt": ("\n".join(LABELS) + "\n").encode()}
    if pt2:
        files["model.pt2"] = color_pt2_bytes()
    return write_bundle(dest, "colors", "1.0.0", files, {"spec": spec or spec_dict(), "precision": precision})


def make_batch_bundle(dest: Path, batch: Any = "N", pt2: bool = False) -> Path:
    """The colour model with a dynamic batch axis (``batch="N"``, as ``convert --dynamic-batch``
    records it) or a fixed batch (an int): the bundles several sources are batched into."""
    from support.bundles import write_bundle

    spec = spec_dict()
    spec["input"]["shape"] = [batch if isinstance(batch, int) else 1, 3, SIZE, SIZE]
    files: "Dict[str, Any]" = {"model.onnx": color_onnx_bytes(batch=batch), "labels.txt": ("\n".join(LABELS) + "\n").encode()}
    if pt2:
        files["model.pt2"] = color_pt2_bytes(dynamic_batch=not isinstance(batch, int),
                                             batch=batch if isinstance(batch, int) else 1)
    extra: "Dict[str, Any]" = {"spec": spec, "precision": "fp32"}
    if not isinstance(batch, int):
        extra["conversion"] = {"dynamic_batch": True}
    return write_bundle(dest, "colors", "1.0.0", files, extra)


def write_sequence_video(path: Path, names: "Sequence[str]", w: int = 64, h: int = 48, fps: float = 10.0) -> "List[str]":
    """An MJPG .avi with one solid-colour frame per name (two clips that differ frame by frame)."""
    import cv2

    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    for name in names:
        vw.write(np.full((h, w, 3), COLORS[name], dtype=np.uint8))
    vw.release()
    return list(names)


def color_pt2_bytes(size: int = SIZE, dynamic_batch: bool = False, batch: int = 1) -> bytes:
    """The same model as a torch.export program (needs torch); ``dynamic_batch``: any batch, else
    exported at ``batch``."""
    import io

    import torch

    class Color(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([[10, 0, 0, 3.2], [0, 10, 0, 3.2], [0, 0, 10, 3.2]]))
            self.b = torch.nn.Parameter(torch.tensor([0, 0, 0, 0.5]))

        def forward(self, x):
            return x.mean(dim=(2, 3)) @ self.w + self.b

    if dynamic_batch:
        ep = torch.export.export(Color().eval(), (torch.zeros(2, 3, size, size),),
                                 dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    else:
        ep = torch.export.export(Color().eval(), (torch.zeros(batch, 3, size, size),))
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    return buf.getvalue()


def color_sequence(n: int) -> "List[str]":
    names = ["blue", "green", "red"]
    return [names[(i // 3) % 3] for i in range(n)]


def write_color_video(path: Path, n: int = 18, w: int = 64, h: int = 48, fps: float = 10.0) -> "List[str]":
    """An MJPG .avi of solid-colour frames (3 frames per colour); returns the colour names."""
    import cv2

    seq = color_sequence(n)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    for name in seq:
        vw.write(np.full((h, w, 3), COLORS[name], dtype=np.uint8))
    vw.release()
    return seq


def write_color_images(folder: Path, n: int = 6, w: int = 40, h: int = 30) -> "List[str]":
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    seq = color_sequence(n)
    for i, name in enumerate(seq):
        cv2.imwrite(str(folder / "img_{:03d}.png".format(i)), np.full((h, w, 3), COLORS[name], dtype=np.uint8))
    return seq


class SlowEngine:
    """Wraps an engine and sleeps in every inference (a slow device)."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def activate(self) -> Any:
        self.inner.activate()
        return self

    def deactivate(self) -> None:
        self.inner.deactivate()

    def infer(self, feeds: "Dict[str, np.ndarray]") -> "Dict[str, np.ndarray]":
        self.calls += 1
        time.sleep(self.delay)
        return self.inner.infer(feeds)


def segment_onnx_bytes(size: int = SIZE) -> bytes:
    """input (1,3,S,S) -> per-pixel class scores = the colour channels (BGR): argmax is the colour."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["scores"])], "seg",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3, size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _task_bundle(dest: Path, name: str, onnx_bytes: bytes, task: str, outputs: "List[str]") -> Path:
    """An fp32 bundle of one ONNX model for ``task`` with the blue/green/red labels."""
    from support.bundles import write_bundle

    return write_bundle(dest, name, "1.0.0", {"model.onnx": onnx_bytes},
                        {"spec": spec_dict(task=task, labels=["blue", "green", "red"], outputs=outputs), "precision": "fp32"})


def make_segment_bundle(dest: Path) -> Path:
    return _task_bundle(dest, "seg", segment_onnx_bytes(), "segment", ["scores"])


DETECT_HEAD = np.array([  # (4+3, N=3) YOLOv8-style raw head in 16x16 model pixels
    [8.0, 8.5, 4.0],   # cx
    [8.0, 8.5, 4.0],   # cy
    [8.0, 8.0, 4.0],   # w
    [8.0, 8.0, 4.0],   # h
    [0.0, 0.0, 0.6],   # class 0 ("blue")
    [0.0, 0.0, 0.0],   # class 1
    [0.9, 0.8, 0.0],   # class 2 ("red"); the second box overlaps the first: suppressed by NMS
], dtype=np.float32)


def detect_onnx_bytes(size: int = SIZE) -> bytes:
    """A detector whose raw head is constant (plus 0 x the input's mean, so it reads the input)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m", "shape3"], ["m3"]),
        helper.make_node("Mul", ["m3", "zero"], ["z"]),
        helper.make_node("Add", ["z", "head"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, "det",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 7, 3])],
        initializer=[numpy_helper.from_array(np.array([1, 1, 1], np.int64), "shape3"),
                     numpy_helper.from_array(np.zeros((1, 1, 1), np.float32), "zero"),
                     numpy_helper.from_array(DETECT_HEAD[None], "head")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString()


def make_detect_bundle(dest: Path) -> Path:
    return _task_bundle(dest, "det", detect_onnx_bytes(), "detect", ["output0"])


class PointerEngine(Engine):
    """TensorRT's calling convention (device pointers on a stream) computing with ONNX Runtime, for the
    pycuda double: its work runs when the stream reaches it, after the copies queued before it."""

    backend = "tensorrt"
    is_gpu = True

    def __init__(self, ort: Any) -> None:
        super().__init__()
        self.ort = ort
        self.enqueues = 0
        self.captures = 0
        self.pointers: "List[int]" = []

    def activate_impl(self) -> None:
        self.ort.activate()
        self.inputs, self.outputs = list(self.ort.inputs), list(self.ort.outputs)

    def enqueue_impl(self, buffers: "Dict[str, Any]", stream: Any) -> None:
        self.enqueues += 1
        inp = self.inputs[0]
        self.pointers.append(buffers[inp.name])
        n = int(np.prod(inp.shape))

        def kernel() -> None:
            x = np.frombuffer((ctypes.c_float * n).from_address(buffers[inp.name]), np.float32)
            for t, a in self.ort.infer({inp.name: x.reshape(inp.shape).copy()}).items():
                a = np.ascontiguousarray(a)
                ctypes.memmove(buffers[t], a.ctypes.data, a.nbytes)

        if not pycuda_double.enqueue_on(getattr(stream, "handle", stream), kernel):
            kernel()

    def capture_graph(self, buffers: "Dict[str, Any]", stream: Any = None, prologue: Any = None,
                      epilogue: Any = None) -> "pycuda_double.Graph":
        """The backends' contract on the pycuda double: prologue, enqueue and epilogue captured from
        ``stream`` into one graph double (nothing runs until it is launched)."""
        st = pycuda_double.STREAMS[int(getattr(stream, "handle", stream))]

        def body() -> None:
            for step in (prologue, lambda: self.enqueue_impl(buffers, st.handle), epilogue):
                if step is not None:
                    step()

        self.captures += 1
        return pycuda_double.Graph(st, pycuda_double.capture(st, body))
