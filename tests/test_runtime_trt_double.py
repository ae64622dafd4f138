"""The frame loop on the TensorRT backend, with the TensorRT and pycuda doubles (no GPU):
TensorRT 8.2 bindings and 10.x tensor names, pinned and mapped (zero-copy) memory."""
import json

import pytest

pytestmark = pytest.mark.needs("onnx", "onnxruntime", "cv2")

from support.runtime import color_onnx_bytes, make_bundle, write_color_video  # noqa: E402
from doubles import pycuda_double, tensorrt_double as trtd  # noqa: E402

from jetson_deploy.runtime.memory import make_context  # noqa: E402
from jetson_deploy.runtime.pipeline import run_pipeline  # noqa: E402


@pytest.mark.parametrize("gen", ["8.2", "10.x"])
@pytest.mark.parametrize("memory", ["pycuda", "pycuda-pinned"])
def test_tensorrt_engine_in_the_pipeline(monkeypatch, tmp_path, gen, memory):
    from jetson_deploy.trt import build as tb
    from jetson_deploy.runtime.backends.tensorrt import TensorRTEngine

    drv = pycuda_double.install(monkeypatch, integrated=True)
    trtd.install(monkeypatch, gen)
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(color_onnx_bytes())
    plan = tb.build_engine(onnx_path, "fp32")
    bundle = make_bundle(tmp_path / "b")
    seq = write_color_video(tmp_path / "c.avi", n=12)
    ctx = make_context(cuda=drv)
    try:
        syncs0 = drv._double.syncs
        # no CUDA graphs: the doubles' stream handles are not real streams (on a GPU machine torch would
        # be handed a fake cudaStream_t to capture on)
        s = run_pipeline(bundle, str(tmp_path / "c.avi"), str(tmp_path / "p.jsonl"), engine=TensorRTEngine(plan),
                         memory=memory, cuda_graph=False)
    finally:
        ctx.pop()
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == seq
    assert s.backend == "tensorrt" and s.executor["executor"] == "pycuda" and s.executor["cuda_graph"] is False
    assert s.executor["memory"] == ("pycuda-mapped" if memory == "pycuda" else "pycuda-pinned")
    assert s.syncs["in_loop"] == {}  # the double's events are always done: the loop never blocked
    assert drv._double.syncs - syncs0 == s.syncs["total"]  # all syncs went through the counter


def _dynamic_batch_onnx() -> bytes:
    """The colour model with a dynamic batch axis (what --dynamic-batch / torch2trt master's max_batch_size give)."""
    import onnx

    m = onnx.load_from_string(color_onnx_bytes())
    for v in list(m.graph.input[:1]) + list(m.graph.output):
        d = v.type.tensor_type.shape.dim[0]
        d.ClearField("dim_value")
        d.dim_param = "N"
    return m.SerializeToString()


@pytest.mark.parametrize("gen", ["8.2", "10.x"])
def test_pycuda_executor_sizes_buffers_from_activated_shapes(monkeypatch, tmp_path, gen):
    """Issue #12 item 1: a dynamic-batch engine (profile 1..8, opt 4) starts at the opt shape after
    activate(); the executor must run it at the spec's batch and size outputs from the context's
    shapes -- not from the engine's (-1 read as 1), which let TensorRT write 4 rows into a 1-row buffer."""
    from jetson_deploy.trt import build as tb
    from jetson_deploy.runtime.backends.tensorrt import TensorRTEngine

    drv = pycuda_double.install(monkeypatch, integrated=False)
    trtd.install(monkeypatch, gen)
    onnx_path = tmp_path / "dyn.onnx"
    onnx_path.write_bytes(_dynamic_batch_onnx())
    plan = tb.build_engine(onnx_path, "fp32", profiles={"input": ([1, 3, 16, 16], [4, 3, 16, 16], [8, 3, 16, 16])})
    bundle = make_bundle(tmp_path / "b")
    seq = write_color_video(tmp_path / "c.avi", n=6)
    ctx = make_context(cuda=drv)
    try:
        s = run_pipeline(bundle, str(tmp_path / "c.avi"), str(tmp_path / "p.jsonl"), engine=TensorRTEngine(plan),
                         memory="pycuda-pinned", cuda_graph=False)
    finally:
        ctx.pop()
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == seq and s.frames == 6
