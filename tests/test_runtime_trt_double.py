"""The frame loop on the TensorRT backend, with the TensorRT and pycuda doubles (no GPU):
TensorRT 8.2 bindings and 10.x tensor names, pinned and mapped (zero-copy) memory."""
import json

import numpy as np

import pytest

pytestmark = pytest.mark.needs("onnx", "onnxruntime", "cv2")

from support.runtime import color_onnx_bytes, make_bundle, write_color_video  # noqa: E402
from doubles import pycuda_double, tensorrt_double as trtd  # noqa: E402

from jetson_deploy.runtime.options import RunOptions  # noqa: E402
from jetson_deploy.runtime.memory import make_context  # noqa: E402
from jetson_deploy.runtime.session import run_pipeline  # noqa: E402


def _colour_case(tmp_path, n=12):
    """The colour model as a TensorRT-double engine (install the double first), its bundle, and a
    video of ``n`` solid-colour frames: (engine, bundle, video, expected labels)."""
    from jetson_deploy.trt import build as tb
    from jetson_deploy.runtime.backends.tensorrt import TensorRTEngine

    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(color_onnx_bytes())
    eng = TensorRTEngine(tb.build_engine(onnx_path, "fp32"))
    return eng, make_bundle(tmp_path / "b"), str(tmp_path / "c.avi"), write_color_video(tmp_path / "c.avi", n=n)


@pytest.mark.parametrize("gen", ["8.2", "10.x"])
@pytest.mark.parametrize("memory", ["pycuda", "pycuda-pinned"])
def test_tensorrt_engine_in_the_pipeline(monkeypatch, tmp_path, gen, memory):
    drv = pycuda_double.install(monkeypatch, integrated=True)
    trtd.install(monkeypatch, gen)
    eng, bundle, video, seq = _colour_case(tmp_path)
    ctx = make_context(cuda=drv)
    try:
        syncs0 = drv._double.syncs
        # no CUDA graphs: the doubles' stream handles are not real streams (on a GPU machine torch would
        # be handed a fake cudaStream_t to capture on)
        s = run_pipeline(bundle, video, str(tmp_path / "p.jsonl"), engine=eng, options=RunOptions(memory=memory, cuda_graph=False))
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
        s = run_pipeline(bundle, str(tmp_path / "c.avi"), str(tmp_path / "p.jsonl"), engine=TensorRTEngine(plan), options=RunOptions(memory="pycuda-pinned", cuda_graph=False))
    finally:
        ctx.pop()
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == seq and s.frames == 6


def _graph_run(monkeypatch, tmp_path, gen, integrated, gpu_pre):
    """The colour model's TensorRT double engine in the pipeline with CUDA graphs through the driver
    double, torch made unimportable: (summary, labels, expected, driver, kernel launches)."""
    import sys

    from doubles import cuda_driver_double
    from test_runtime_gpu_preprocess import install_compiler

    drv = pycuda_double.install(monkeypatch, integrated=integrated)
    trtd.install(monkeypatch, gen)
    driver = cuda_driver_double.install(monkeypatch)
    monkeypatch.setitem(sys.modules, "torch", None)  # a board without torch: import torch fails
    launches = []
    if gpu_pre:
        install_compiler(monkeypatch, launches)
    eng, bundle, video, seq = _colour_case(tmp_path)
    from jetson_deploy.runtime import executors

    made = []
    real_make = executors.make_executor
    monkeypatch.setattr(executors, "make_executor", lambda *a, **k: made.append(real_make(*a, **k)) or made[-1])
    ctx = make_context(cuda=drv)
    try:
        s = run_pipeline(bundle, video, str(tmp_path / "p.jsonl"), engine=eng, options=RunOptions(memory="pycuda", gpu_preprocess="kernel" if gpu_pre else "host"))
        # the executor is still referenced here: its graphs went at close(), not with the object
        driver.left_after_close = (dict(driver.execs), dict(driver.graphs))
    finally:
        ctx.pop()
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    return s, [r["label"] for r in rows], seq, driver, launches


@pytest.mark.parametrize("gen", ["8.5", "10.x"])
@pytest.mark.parametrize("integrated", [False, True], ids=["discrete", "integrated"])
@pytest.mark.parametrize("gpu_pre", [True, False], ids=["gpu-pre", "host-pre"])
def test_tensorrt_graphs_through_the_driver_without_torch(monkeypatch, tmp_path, gen, integrated, gpu_pre):
    """TensorRT 8.5+/10.x on a board without torch: one graph per ring slot captured through the CUDA
    driver (thread-local mode), a frame = one launch; on a discrete GPU with GPU preprocessing the
    kernel is inside the graph (launched at capture only), on an integrated one it reads each frame."""
    s, labels, seq, driver, launches = _graph_run(monkeypatch, tmp_path, gen, integrated, gpu_pre)
    assert labels == seq
    ex = s.executor
    # host preprocessing into mapped inputs changes the input address per frame: no graphs there
    graphs = gpu_pre or not integrated
    assert ex["cuda_graph"] is graphs and ("note" not in ex)
    if not graphs:
        assert driver.captures == 0
        return
    assert driver.captures == 3 and set(driver.modes) == {1}  # CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
    assert driver.launches == 12  # one launch a frame
    assert driver.left_after_close == ({}, {})  # destroyed at close, while the context was current
    if gpu_pre:
        assert ex["kernel_in_graph"] is (not integrated)
        assert len(launches) == (12 if integrated else 3)


def test_tensorrt_82_has_no_graphs_and_says_why(monkeypatch, tmp_path):
    s, labels, seq, driver, _ = _graph_run(monkeypatch, tmp_path, "8.2", False, True)
    assert labels == seq and s.executor["cuda_graph"] is False and driver.captures == 0
    assert "execute_async_v3" in s.executor["note"]


def test_driver_capture_always_ends_and_reports_an_invalidated_capture(monkeypatch):
    """A synchronising call inside the capture fails and invalidates it; the capture is still ended
    (a stream left capturing is unusable) and the next capture on the stream works."""
    from doubles import cuda_driver_double

    from jetson_deploy.runtime.cuda_graph import capture_on_stream

    drv = pycuda_double.install(monkeypatch, integrated=False)
    driver = cuda_driver_double.install(monkeypatch)
    ctx = make_context(cuda=drv)
    try:
        st = drv.Stream()
        with pytest.raises(drv.LogicError, match="capturing"):
            capture_on_stream(st.handle, st.synchronize)
        assert not st._capturing
        with pytest.raises(RuntimeError, match="CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"):
            capture_on_stream(st.handle, lambda: driver.cuStreamSynchronize(st.handle))
        out = drv.pagelocked_empty((4,), "float32")
        dev = drv.mem_alloc(16)
        drv.memcpy_htod(dev, __import__("numpy").arange(4, dtype="float32"))
        out[:] = -1
        g = capture_on_stream(st.handle, lambda: drv.memcpy_dtoh_async(out, dev, st))
        st.synchronize()
        assert out.tolist() == [-1.0] * 4  # captured, not run
        launch = g.launcher()
        launch()
        st.synchronize()
        assert out.tolist() == [0.0, 1.0, 2.0, 3.0]
        del g
        import gc

        gc.collect()
        launch()  # the launcher keeps its graph alive: no destroyed-graph launch
        st.synchronize()
        assert driver.launches == 2
    finally:
        ctx.pop()


@pytest.mark.parametrize("gen", ["8.5", "10.x"])
def test_driver_capture_runs_the_callers_steps_inside_the_capture_only(monkeypatch, tmp_path, gen):
    """prologue/epilogue run once each, while the stream captures (never in the warm-up enqueue,
    whose copy-out would overwrite results still to be collected); the graph has its own context."""
    import numpy as np

    from doubles import cuda_driver_double

    from jetson_deploy.trt import build as tb
    from jetson_deploy.runtime.backends.tensorrt import TensorRTEngine

    drv = pycuda_double.install(monkeypatch, integrated=False)
    trtd.install(monkeypatch, gen)
    driver = cuda_driver_double.install(monkeypatch)
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(color_onnx_bytes())
    ctx = make_context(cuda=drv)
    try:
        eng = TensorRTEngine(tb.build_engine(onnx_path, "fp32"))
        st = drv.Stream()
        x, out = drv.mem_alloc(3 * 16 * 16 * 4), drv.mem_alloc(16)
        seen = []
        with eng:
            g = eng.capture_graph({"input": int(x), "logits": int(out)}, st.handle,
                                  prologue=lambda: seen.append(("prologue", st._capturing)),
                                  epilogue=lambda: seen.append(("epilogue", st._capturing)))
            assert g.context is not None and g.context is not eng.context and g.context.executions == 2
            drv.memcpy_htod(x, np.full((1, 3, 16, 16), 1.0, np.float32))
            g.launcher()()
            host = np.zeros((1, 4), np.float32)
            drv.memcpy_dtoh_async(host, out, st)
            st.synchronize()
    finally:
        ctx.pop()
    assert seen == [("prologue", True), ("epilogue", True)] and driver.captures == 1
    assert int(np.argmax(host)) == 3  # gray (1, 1, 1): the engine ran at the launch, on the new input


@pytest.mark.parametrize("how", ["auto-small", "forced-off", "auto-large"])
def test_outputs_mapped_when_small_copied_when_large_or_asked(monkeypatch, tmp_path, how):
    """Small outputs: the engine writes into mapped host memory (no D2H copy after it); outputs over
    MAPPED_OUT_MAX, or mapped_out=False: device buffers copied back. Same labels either way."""
    from jetson_deploy.runtime.executors.pycuda import PycudaExecutor

    drv = pycuda_double.install(monkeypatch, integrated=False)
    trtd.install(monkeypatch, "10.x")
    if how == "auto-large":
        monkeypatch.setattr(PycudaExecutor, "MAPPED_OUT_MAX", 8)  # the colour model's 16-byte logits are "large"
    dtoh = []
    real = drv.memcpy_dtoh_async
    monkeypatch.setattr(drv, "memcpy_dtoh_async", lambda d, s, stream=None: (dtoh.append(d.shape), real(d, s, stream)))
    eng, bundle, video, seq = _colour_case(tmp_path, n=9)
    ctx = make_context(cuda=drv)
    try:
        s = run_pipeline(bundle, video, str(tmp_path / "p.jsonl"), engine=eng,
                         options=RunOptions(memory="pycuda-pinned", cuda_graph=False,
                                            mapped_out=False if how == "forced-off" else None))
    finally:
        ctx.pop()
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == seq
    mapped = how == "auto-small"
    assert s.executor["mapped_out"] is mapped
    assert dtoh == ([] if mapped else [(1, 4)] * 9)


def test_bench_bare_model_writes_device_memory_not_the_mapped_outputs(monkeypatch, tmp_path):
    """bench's model_fps is the network alone: its outputs go to device buffers, never to the mapped
    host outputs the pipeline reads (writing those crosses the bus: a slower, unfair reference)."""
    from jetson_deploy.trt import build as tb
    from jetson_deploy.runtime.backends.tensorrt import TensorRTEngine
    from jetson_deploy.runtime.executors.pycuda import PycudaExecutor

    drv = pycuda_double.install(monkeypatch, integrated=False)
    trtd.install(monkeypatch, "10.x")
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(color_onnx_bytes())
    ctx = make_context(cuda=drv)
    try:
        from jetson_deploy.spec import load_spec
        from support.runtime import spec_dict

        eng = TensorRTEngine(tb.build_engine(onnx_path, "fp32")).activate()
        ex = PycudaExecutor(eng, load_spec(spec_dict()), cuda=drv, graph=False)
        assert ex.mapped_out is True
        seen = []
        real = eng.enqueue
        monkeypatch.setattr(eng, "enqueue", lambda buffers, stream=None: (seen.append(dict(buffers)), real(buffers, stream)))
        ex.model_only_step()
        ex.engine_only_step()
        ex.synchronize()
    finally:
        ctx.pop()
    host = {k: a.base.get_device_pointer() for k, a in ex.host_out[0].items()}
    assert seen[0]["logits"] != host["logits"] and pycuda_double.ALLOCATIONS.get(seen[0]["logits"]) is not None
    assert seen[1]["logits"] == host["logits"]  # the engine step writes where the pipeline reads


@pytest.mark.parametrize("sources,batch", [(1, 1), (4, "N"), (3, 2)])
def test_classify_reduction_on_the_gpu_matches_the_host(monkeypatch, tmp_path, sources, batch):
    """A 100-class TensorRT classifier on the pycuda path: the fused softmax/top-k kernel runs after
    the engine (in the slot's work) and writes the packed top-k into mapped host memory; the results
    equal ONNX Runtime's host postprocessing, labels, top-5 ids and scores (the four-camera path was
    host-bound by 1000-class softmaxes in numpy: 5.3k vs 9.5k frames/s on an H100)."""
    from support.runtime import make_many_class_bundle, write_sequence_video
    from test_runtime_gpu_preprocess import install_compiler

    from jetson_deploy.runtime.options import OutputOptions

    names = [["red", "green", "blue", "red"], ["blue", "blue", "green", "red"], ["green", "red", "blue", "blue"],
             ["red", "red", "green", "blue"]][:sources]
    clips = [str(write_sequence_video(tmp_path / "c{}.avi".format(i), n) and tmp_path / "c{}.avi".format(i))
             for i, n in enumerate(names)]
    b = make_many_class_bundle(tmp_path / "b", 100, batch=batch)
    sinks = ["{}={}".format(i, tmp_path / "gpu{}.jsonl".format(i)) for i in range(sources)]
    ref = run_pipeline(b, clips, ["{}={}".format(i, tmp_path / "host{}.jsonl".format(i)) for i in range(sources)],
                       options=RunOptions(backend="onnxruntime"), outputs=OutputOptions(metrics_interval=0))
    drv = pycuda_double.install(monkeypatch, integrated=False)
    trtd.install(monkeypatch, "10.x")
    launches = []
    install_compiler(monkeypatch, launches)
    dtoh = []
    real = drv.memcpy_dtoh_async
    monkeypatch.setattr(drv, "memcpy_dtoh_async", lambda d, s, stream=None: (dtoh.append(d.shape), real(d, s, stream)))
    ctx = make_context(cuda=drv)
    try:
        s = run_pipeline(b, clips, sinks, options=RunOptions(backend="tensorrt", cache_dir=str(tmp_path / "eng"),
                                                             cuda_graph=False), outputs=OutputOptions(metrics_interval=0))
    finally:
        ctx.pop()
    assert s.executor["post"] == "cuda-kernel (pycuda)" and s.executor["mapped_out"] is True
    assert dtoh == []  # the kernel wrote the results where the host reads them: no copy of 100 logits
    topk = [x for x in launches if x[0] == "topk"]
    assert topk and set(topk) == {("topk", s.batch["rows"], 100, 5)}  # one launch a batch, every row reduced
    assert ref.frames == s.frames == sum(len(n) for n in names)
    for i in range(sources):
        got = [json.loads(x) for x in (tmp_path / "gpu{}.jsonl".format(i)).read_text().splitlines()]
        want = [json.loads(x) for x in (tmp_path / "host{}.jsonl".format(i)).read_text().splitlines()]
        assert [r["label"] for r in got] == [r["label"] for r in want]
        for g, w in zip(got, want):
            assert [t[0] for t in g["topk"]] == [t[0] for t in w["topk"]]
            np.testing.assert_allclose([t[1] for t in g["topk"]], [t[1] for t in w["topk"]], atol=1e-5)
