"""These tests kill mutmut survivors in jetson_deploy/runtime/ (run kept in /tmp/jd-mutmut-runtime-100).

Each test names the mutant(s) it kills in its docstring. They are fast, CPU-only and use no
wall-clock assumptions: what they check is the behaviour the mutant changed, on data made here.
Survivors that are recorded rather than killed are listed in docs/mutmut_equivalents.txt.
"""

import numpy as np
import pytest

from jetson_deploy.errors import BadInput
from jetson_deploy.runtime.batching import SourceState, engine_batch, resolve_batch, split_rows
from jetson_deploy.runtime.engine import Engine, TensorInfo
from jetson_deploy.runtime.metrics import Metrics
from jetson_deploy.runtime.options import RunOptions
from jetson_deploy.runtime.postprocess import Postprocessor

from test_runtime_postprocess import _spec  # the postprocess tests' spec builder: one definition


# ---- batching ------------------------------------------------------------------------------
def test_split_rows_shares_an_output_whose_leading_dim_is_not_the_batch():
    """Kills batching.x_split_rows__mutmut_7 (``and`` -> ``or``: every array would be sliced)."""
    outs = {"logits": np.arange(8, dtype=np.float32).reshape(2, 4), "anchors": np.arange(5, dtype=np.float32)}
    per = split_rows(outs, rows=2, batch=2)
    assert per[1]["logits"].tolist() == [[4.0, 5.0, 6.0, 7.0]]
    # (5,) has no batch axis: each row gets all of it, not a one-element slice
    assert per[0]["anchors"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert per[1]["anchors"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


class _ProfiledEngine:
    """A dynamic-batch engine whose optimization profile allows at most 4 rows."""

    def __init__(self) -> None:
        self.inputs = [TensorInfo("input", (-1, 3, 8, 8), np.dtype(np.float32))]
        self.asked = []

    def profile_shapes(self, name: str):
        self.asked.append(name)
        return ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))


def test_dynamic_batch_is_capped_at_the_profile_maximum():
    """Kills batching.x_engine_batch__mutmut_32 (the profile is never asked: 8 sources -> 8 rows)."""
    eng = _ProfiledEngine()
    assert engine_batch(eng) == (0, True, 4)
    assert eng.asked == ["input"]
    assert resolve_batch(eng, 8) == (4, True)
    assert resolve_batch(eng, 3) == (3, True)


def test_source_state_to_dict_without_a_capture_thread():
    """Kills batching.xǁSourceStateǁto_dict__mutmut_33 (``cap.captured`` read when cap is None)."""

    class _Src:
        uri = "file:///clip.mp4"

    d = SourceState(2, _Src()).to_dict()
    assert (d["index"], d["source"], d["frames"], d["captured"], d["dropped"], d["end_reason"]) == (
        2, "file:///clip.mp4", 0, 0, 0, "")


# ---- engine --------------------------------------------------------------------------------
def test_engine_describe_names_inputs_and_outputs():
    """Kills engine.xǁEngineǁdescribe__mutmut_6 (the inputs' "name" key renamed "NAME")."""
    e = Engine()
    e.inputs = [TensorInfo("input", (1, 3, 8, 8), np.dtype(np.float32))]
    e.outputs = [TensorInfo("logits", (1, 4), np.dtype(np.float16))]
    d = e.describe()
    assert d["inputs"] == [{"name": "input", "shape": [1, 3, 8, 8], "dtype": "float32"}]
    assert d["outputs"] == [{"name": "logits", "shape": [1, 4], "dtype": "float16"}]


# ---- metrics -------------------------------------------------------------------------------
def test_metrics_summary_before_any_frame():
    """Kills metrics.xǁMetricsǁ__init____mutmut_15 (t_last None: elapsed fails before the first frame)."""
    m = Metrics(interval=0.0)
    s = m.summary()
    assert (s["frames"], s["fps"], s["seconds"], s["dropped"]) == (0, 0.0, 0.0, 0)


def test_metrics_summary_seconds_to_four_decimals():
    """Kills metrics.xǁMetricsǁsummary__mutmut_16 (seconds rounded to 5 decimals)."""
    m = Metrics(interval=0.0)
    m.add(5.0, now=m.t_start + 0.123456)
    s = m.summary()
    assert s["frames"] == 1 and s["seconds"] == 0.1235


# ---- options -------------------------------------------------------------------------------
def test_depth_one_is_allowed_and_zero_is_not():
    """Kills options.xǁRunOptionsǁ__post_init____mutmut_39 (``< 1`` -> ``<= 1``: depth 1 refused)."""
    assert RunOptions(depth=1).depth == 1
    with pytest.raises(BadInput, match="at least 1 frame in flight"):
        RunOptions(depth=0)


# ---- postprocess ---------------------------------------------------------------------------
def test_detect_boxes_clipped_to_the_source_width():
    """Kills postprocess.xǁPostprocessorǁ_to_source__mutmut_52 (x no longer clipped at the frame width)."""
    pp = Postprocessor(_spec("detect"))
    boxes = np.array([[-8.0, -4.0, 80.0, 70.0], [10.0, 10.0, 20.0, 20.0]], np.float32)
    out = pp._to_source(boxes, (128, 32))  # 64x64 input -> 2x wider, half as tall source
    assert out.tolist() == [[0.0, 0.0, 128.0, 32.0], [20.0, 5.0, 40.0, 10.0]]


# ---- the frame loop (ONNX Runtime on the CPU) ---------------------------------------------
@pytest.fixture(scope="module")
def color_bundle(tmp_path_factory):
    from support.runtime import make_bundle

    return make_bundle(tmp_path_factory.mktemp("mutants") / "colors-1.0.0")


def _frames_source(frames, live=False, uri="frames://"):
    """A source that delivers ``frames`` ((bgr colour, truth) pairs) and ends; none at all when live and empty."""
    from jetson_deploy.media.sources import Frame, Source

    class _Frames(Source):
        scheme = "frames"

        def open_impl(self):
            self.todo = list(frames)

        def read_impl(self, timeout):
            if not self.todo:
                if not self.live:
                    self.end("end of list")
                return None
            color, truth = self.todo.pop(0)
            return Frame(np.full((24, 32, 3), color, np.uint8), truth=truth)

    src = _Frames(uri, {"width": 32, "height": 24})
    src.live = live
    return src


@pytest.mark.needs("onnx", "onnxruntime")
def test_accuracy_counts_each_frames_ground_truth(color_bundle):
    """Kills pipeline.xǁPipelineǁ_deliver_impl__mutmut_13 (the frame's truth dropped: no accuracy)."""
    from jetson_deploy.runtime.session import run_pipeline
    from support.runtime import COLORS

    src = _frames_source([(COLORS["red"], "red"), (COLORS["blue"], "red"), (COLORS["green"], "green"),
                          (COLORS["blue"], None)])
    s = run_pipeline(color_bundle, src, "null://", options=RunOptions(backend="onnxruntime"))
    assert s.frames == 4 and s.accuracy == pytest.approx(2 / 3.0)


@pytest.mark.needs("onnx", "onnxruntime")
def test_a_stalled_source_ends_the_run_and_names_itself(color_bundle):
    """Kills pipeline.xǁPipelineǁ_idle_end_reason__mutmut_15 (the stall reason's format lost the uri)."""
    from jetson_deploy.runtime.options import OutputOptions, SourceOptions
    from jetson_deploy.runtime.session import run_pipeline

    src = _frames_source([], live=True, uri="frames://quiet")
    s = run_pipeline(color_bundle, src, "null://", options=RunOptions(backend="onnxruntime"),
                     inputs=SourceOptions(stall_timeout=0.2), outputs=OutputOptions(metrics_interval=0))
    assert s.frames == 0
    assert s.end_reason.startswith("source stalled") and "frames://quiet" in s.end_reason


# ---- backends ------------------------------------------------------------------------------
@pytest.mark.needs("torch")
def test_torch_dtypes_map_to_numpy():
    """Kills backends.torch.x__np_dtype__mutmut_11 (``torch.`` prefix kept: every dtype read as float32)."""
    import torch
    from jetson_deploy.runtime.backends.torch import _np_dtype

    assert _np_dtype(torch.float16) == np.float16
    assert _np_dtype(torch.int64) == np.int64
    assert _np_dtype(torch.uint8) == np.uint8


def test_unknown_backend_is_named_in_the_error():
    """Kills backends.x_explain_backend__mutmut_5 (the backend asked for missing from the error)."""
    from jetson_deploy.runtime.backends import explain_backend

    with pytest.raises(BadInput, match="--backend 'tflite': choose one of"):
        explain_backend(object(), "tflite")


@pytest.mark.needs("torch", "onnx")
def test_fp16_torch_bundle_on_cpu_note_names_the_bundle_precision(tmp_path):
    """Kills backends.torch.xǁTorchEngineǁ_apply_precision__mutmut_14 (the note says "None bundle")."""
    from support.runtime import make_bundle

    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.runtime.backends import create_engine

    b = make_bundle(tmp_path / "colors-1.0.0", pt2=True, precision="fp16")
    with create_engine(open_bundle(b), RunOptions(backend="torch", device="cpu")) as te:
        d = te.describe()
    assert d["precision"] == "fp32"
    assert d["precision_note"] == "fp16 bundle on the CPU: the torch backend runs FP32"


# ---- GPU preprocessing's numpy reference ------------------------------------------------------
def test_preprocess_like_kernel_honours_the_output_dtype():
    """Kills gpu_preprocess.x_preprocess_like_kernel__mutmut_14 (out_dtype ignored: the spec's float32)."""
    from jetson_deploy.runtime.gpu_preprocess import preprocess_like_kernel

    spec = _spec("classify", size=(8, 6))
    frame = np.full((12, 16, 3), (10, 20, 30), np.uint8)
    a32 = preprocess_like_kernel(frame, spec)
    a16 = preprocess_like_kernel(frame, spec, "float16")
    assert a32.dtype == np.float32 and a16.dtype == np.float16
    assert a16.shape == a32.shape
    np.testing.assert_allclose(a16.astype(np.float32), a32, rtol=1e-3)


# ---- TensorRT backend (TensorRT and pycuda doubles) ------------------------------------------
def _two_profile_engine(monkeypatch, tmp_path):
    from doubles import onnx_models, pycuda_double, tensorrt_double as trtd

    from jetson_deploy.runtime.backends.tensorrt import TensorRTEngine
    from jetson_deploy.trt import build as tb

    pycuda_double.install(monkeypatch)
    trt = trtd.install(monkeypatch, "8.2")
    model = onnx_models.classifier(tmp_path / "dyn.onnx", batch=None)
    plan = tb.build_engine(model, "fp32", profiles=[{"input": ([1, 3, 8, 8], [1, 3, 8, 8], [2, 3, 8, 8])},
                                                     {"input": ([4, 3, 8, 8], [8, 3, 8, 8], [16, 3, 8, 8])}])
    return trt, model, TensorRTEngine(plan, profile=1)


@pytest.mark.needs("onnx", "onnxruntime")
def test_profile_set_through_the_attribute_on_bindings_without_the_async_call(monkeypatch, tmp_path):
    """Kills backends.tensorrt.xǁTensorRTEngineǁactivate_impl__mutmut_23 (the old bindings' path
    sets ``active_optimization_profile = None`` instead of the engine's profile)."""
    from doubles import onnx_models

    trt, model, eng = _two_profile_engine(monkeypatch, tmp_path)
    monkeypatch.delattr(trt.IExecutionContext, "set_optimization_profile_async")
    with eng:
        assert not hasattr(eng.context, "set_optimization_profile_async")
        assert eng.context.active_optimization_profile == 1
        x = np.random.RandomState(0).rand(12, 3, 8, 8).astype(np.float32)  # only profile 1 takes 12 rows
        np.testing.assert_allclose(eng.infer({"input": x})["logits"],
                                   onnx_models.reference(model, {"input": x})["logits"], rtol=1e-5, atol=1e-6)


@pytest.mark.needs("onnx", "onnxruntime")
def test_deactivated_tensorrt_engine_has_no_context(monkeypatch, tmp_path):
    """Kills backends.tensorrt.xǁTensorRTEngineǁdeactivate_impl__mutmut_3 (context left as "", which
    the "call activate() first" checks do not see)."""
    _, _, eng = _two_profile_engine(monkeypatch, tmp_path)
    with eng:
        eng.set_input_shapes({"input": (8, 3, 8, 8)})
    assert eng.context is None
    with pytest.raises(RuntimeError, match=r"call activate\(\) before set_input_shapes"):
        eng.set_input_shapes({"input": (8, 3, 8, 8)})


# ---- the pycuda path (pycuda double, compiler stand-in) ---------------------------------------
def test_prepared_launch_cache_is_trimmed_not_broken(monkeypatch):
    """Kills gpu_preprocess.x_launch_pycuda__mutmut_41 (the trim past 64 plans reads ``list(None)``)."""
    from jetson_deploy.runtime import gpu_preprocess as gp

    monkeypatch.setattr(gp, "_LAUNCH", {})
    calls = []

    class _Fn:
        arg_format = None

        def prepare(self, fmt):
            self.arg_format = fmt

        def prepared_async_call(self, grid, block, stream, src, dst, *scalars):
            calls.append((grid, src, dst))

    fn, spec = _Fn(), _spec("classify", size=(8, 6))
    plans = [gp.make_plan(spec, (10 + i, 12)) for i in range(70)]  # kept alive: ids stay distinct
    for i, p in enumerate(plans):
        gp.launch_pycuda(fn, p, 1000 + i, 2000, stream="s")
    assert len(calls) == 70 and calls[-1][1:] == (1069, 2000) and fn.arg_format == gp.ARG_FORMAT
    assert len(gp._LAUNCH) <= 64 and gp._LAUNCH[id(plans[-1])][0] is plans[-1]
    assert id(plans[0]) not in gp._LAUNCH  # the oldest went first


@pytest.mark.needs("onnx", "onnxruntime")
def test_kernel_preprocessing_asked_for_but_unavailable_says_why(monkeypatch, tmp_path):
    """Kills executors.x__pycuda_executor__mutmut_67 (the refusal's message replaced by None)."""
    from doubles import pycuda_double
    from support.runtime import PointerEngine, make_bundle

    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.runtime.backends import create_engine
    from jetson_deploy.runtime.executors import make_executor
    from jetson_deploy.runtime.executors import pycuda_kernel
    from jetson_deploy.runtime.memory import make_context

    drv = pycuda_double.install(monkeypatch, integrated=False)
    monkeypatch.setattr(pycuda_kernel, "gpu_preprocess_unavailable", lambda *a, **k: "nvcc not found")
    b = open_bundle(make_bundle(tmp_path / "colors-1.0.0"))
    ctx = make_context(cuda=drv)
    try:
        with PointerEngine(create_engine(b, RunOptions(backend="onnxruntime"))) as eng:
            with pytest.raises(BadInput, match="needs pycuda's SourceModule and nvcc: nvcc not found"):
                make_executor(eng, b.spec, RunOptions(memory="pycuda-pinned", gpu_preprocess="kernel"), cuda=drv)
    finally:
        ctx.pop()


@pytest.mark.needs("onnx", "onnxruntime", "cv2")
def test_pycuda_kernel_path_reduces_to_the_asked_top_k(tmp_path, monkeypatch):
    """Kills executors.pycuda_kernel.xǁPycudaGpuExecutorǁ__init____mutmut_30 (``topk`` not handed to
    the base: the GPU softmax/top-k kernel keeps its default 5)."""
    import json

    from doubles import cuda_driver_double, pycuda_double, tensorrt_double
    from support.runtime import make_many_class_bundle
    from test_runtime_gpu_topk import _frames_at_model_size
    from test_runtime_gpu_preprocess import install_compiler

    from jetson_deploy.runtime.memory import make_context
    from jetson_deploy.runtime.options import OutputOptions
    from jetson_deploy.runtime.session import run_pipeline

    frames = _frames_at_model_size(tmp_path / "f", 3, seed=1)
    b = make_many_class_bundle(tmp_path / "b", 100, softmax=True)
    drv = pycuda_double.install(monkeypatch, integrated=False)
    tensorrt_double.install(monkeypatch, "10.x")
    cuda_driver_double.install(monkeypatch)
    install_compiler(monkeypatch, [])
    ctx = make_context(cuda=drv)
    try:
        s = run_pipeline(b, frames, str(tmp_path / "gpu.jsonl"), outputs=OutputOptions(metrics_interval=0),
                         options=RunOptions(backend="tensorrt", cache_dir=str(tmp_path / "eng"), topk=8))
    finally:
        ctx.pop()
    assert s.executor["post"] == "cuda-kernel (pycuda)" and s.executor["preprocess"] == "cuda-kernel (pycuda)"
    rows = [json.loads(x) for x in (tmp_path / "gpu.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["topk"]) == 8 for r in rows)


@pytest.mark.needs("onnx", "onnxruntime")
def test_several_sources_on_the_kernel_path_pool_as_many_buffers_as_frames_held(tmp_path, monkeypatch):
    """Kills multi_pipeline.xǁMultiPipelineǁ_start__mutmut_26 (``pool_size`` not passed: each source
    pools the default 8 capture buffers, fewer than the frames a run holds at once)."""
    from doubles import pycuda_double
    from support.runtime import COLORS, PointerEngine, make_batch_bundle
    from test_runtime_gpu_preprocess import install_compiler

    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.runtime.backends import create_engine
    from jetson_deploy.runtime.memory import make_context
    from jetson_deploy.runtime.options import OutputOptions, SourceOptions
    from jetson_deploy.runtime.pipeline import _OutputWorker
    from jetson_deploy.runtime.session import run_pipeline

    pools = []
    srcs = []
    for name in ("red", "blue"):
        s = _frames_source([(COLORS[name], name)] * 3, uri="frames://" + name)
        real = s.use_allocator
        s.use_allocator = lambda alloc, pool_size=8, _real=real: (pools.append(pool_size), _real(alloc, pool_size))
        srcs.append(s)
    drv = pycuda_double.install(monkeypatch, integrated=False)
    install_compiler(monkeypatch, [])
    b = make_batch_bundle(tmp_path / "two", 2)
    ctx = make_context(cuda=drv)
    try:
        eng = PointerEngine(create_engine(open_bundle(b), RunOptions(backend="onnxruntime")))
        s = run_pipeline(b, srcs, "null://", engine=eng, inputs=SourceOptions(queue_size=4),
                         options=RunOptions(memory="pycuda-pinned", depth=3, gpu_preprocess="kernel", output_thread=True),
                         outputs=OutputOptions(metrics_interval=0))
    finally:
        ctx.pop()
    assert s.frames == 6 and s.accuracy == 1.0
    assert pools == [4 + 3 + 3 + _OutputWorker.MAXSIZE] * 2


# ---- cupy kernels on the torch CUDA path (a cupy stand-in; torch on the CPU) ---------------------
@pytest.fixture
def fake_cupy(monkeypatch):
    """``cupy`` as far as the torch CUDA path's kernels use it: RawKernel (counts compiles, records
    launches), cuda.runtime.getDevice, cuda.ExternalStream."""
    import sys
    import types

    from jetson_deploy.runtime import gpu_preprocess, gpu_topk

    cp = types.ModuleType("cupy")
    cp.made, cp.launches = [], []

    class RawKernel:
        def __init__(self, source, name):
            self.source, self.name, self.compiled = source, name, 0
            cp.made.append(self)

        def compile(self):
            self.compiled += 1

        def __call__(self, grid, block, args):
            cp.launches.append((grid, block, args))

    class ExternalStream:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    cp.RawKernel = RawKernel
    cp.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDevice=lambda: 0), ExternalStream=ExternalStream)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setattr(gpu_topk, "_COMPILED", {})
    monkeypatch.setattr(gpu_preprocess, "_COMPILED", {})
    return cp


def test_topk_kernel_compiled_once_per_dtype(fake_cupy):
    """Kills gpu_topk.x_cupy_kernel__mutmut_17 (the compiled kernel never cached: NVRTC on every call)."""
    from jetson_deploy.runtime.gpu_topk import cupy_kernel

    a, b, c = cupy_kernel("float32"), cupy_kernel("float32"), cupy_kernel("float16")
    assert a is b and c is not a
    assert len(fake_cupy.made) == 2 and a.compiled == 1


@pytest.mark.needs("torch")
def test_softmax_topk_passes_the_logits_row_stride(fake_cupy, monkeypatch):
    """Kills gpu_topk.xǁTorchSoftmaxTopkǁ__init____mutmut_7 (``import_module(None)``) and
    gpu_topk.xǁTorchSoftmaxTopkǁ__call____mutmut_66 (the row stride argument replaced by None)."""
    import types

    import torch
    from jetson_deploy.runtime.gpu_topk import TorchSoftmaxTopk

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: types.SimpleNamespace(cuda_stream=7))
    op = TorchSoftmaxTopk("cpu", torch.float32, k=3, n_classes=10, rows=2)
    assert op.cupy is fake_cupy and op.out_shape == (2, 2, 3)
    wide = torch.zeros((2, 16), dtype=torch.float32)
    logits = wide[:, :10]  # rows 16 elements apart: not copied (stride(1) == 1), the kernel gets the stride
    out = op(logits)
    grid, _, args = fake_cupy.launches[-1]
    assert grid == (2, 1, 1) and tuple(out.shape) == (2, 2, 3)
    assert (int(args[0]), int(args[1]), int(args[2]), int(args[3]), int(args[4])) == (
        logits.data_ptr(), out.data_ptr(), 10, 16, 3)


@pytest.mark.needs("torch")
def test_torch_kernel_preprocess_plans_per_frame_layout(fake_cupy):
    """Kills torch_preprocess.xǁTorchKernelPreprocessǁ__init____mutmut_35 (no plan cache),
    xǁTorchKernelPreprocessǁplan__mutmut_6 (``stride(None)`` in the key) and
    xǁTorchKernelPreprocessǁempty__mutmut_22 (the channels-last output not permuted to NCHW)."""
    import torch
    from jetson_deploy.runtime.torch_preprocess import TorchKernelPreprocess

    pre = TorchKernelPreprocess(_spec("classify", size=(8, 6)), "cpu", channels_last=True)
    assert pre.channels_last and pre.kspec.layout == "nhwc"
    frame = torch.zeros((12, 16, 3), dtype=torch.uint8)
    p = pre.plan(frame)
    assert pre.plan(frame) is p
    padded = torch.zeros((12, 20, 3), dtype=torch.uint8)[:, :16]  # same shape, rows 60 bytes apart
    q = pre.plan(padded)
    assert q is not p and q is pre.plan(padded)
    out = pre.empty(p)
    assert tuple(out.shape) == (1, 3, 6, 8) and out.dtype == torch.float32
    assert out.permute(0, 2, 3, 1).is_contiguous()  # NHWC memory seen as NCHW


@pytest.mark.needs("torch")
def test_torch_cuda_model_only_step_replays_its_graph_or_runs_the_model(monkeypatch):
    """Kills executors.torch_cuda.xǁTorchCudaExecutorǁmodel_only_step__mutmut_3 (``is not None`` ->
    ``is None``: no graph -> ``None.replay()``; a graph -> the eager model instead).  torch on the CPU."""
    import types

    import torch
    from test_runtime_gpu_topk import _cpu_executor

    ex = _cpu_executor(10)
    ran = []
    ex.engine = types.SimpleNamespace(forward=lambda x: ran.append(("model", tuple(x.shape))))
    ex.compute_stream = None
    ex.static_model_in = torch.zeros((1, 3, 4, 4))
    ex._model_graph = None
    ex.model_only_step()
    assert ran == [("model", (1, 3, 4, 4))]
    ex._model_graph = types.SimpleNamespace(replay=lambda: ran.append("replay"))
    ex.model_only_step()
    assert ran == [("model", (1, 3, 4, 4)), "replay"]


# ---- NMS -------------------------------------------------------------------------------------
def test_nms_never_suppresses_across_classes_even_with_negative_coordinates():
    """A real bug, fixed with this test: classes were offset by max |x| + 1, less than the span of
    boxes with negative coordinates, so at a low IoU threshold a box suppressed another class's.
    (postprocess.x_nms__mutmut_15, +1 -> +2 in that offset, is equivalent on the fixed offset.)"""
    from jetson_deploy.runtime.postprocess import nms

    boxes = np.array([[-10, -10, 10, 10], [-10, -10, 10, 10], [-9, -9, 11, 11]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert nms(boxes, scores, np.array([0, 1, 0]), 0.1).tolist() == [0, 1]  # 2 overlaps 0, same class
    assert nms(boxes, scores, np.array([0, 1, 2]), 0.01).tolist() == [0, 1, 2]


# ---- the frame loop's poll ------------------------------------------------------------------
@pytest.mark.needs("onnx", "onnxruntime")
def test_idle_loop_waits_on_the_capture_queue_at_most_a_tenth_of_a_second(color_bundle, monkeypatch):
    """Kills pipeline.xǁPipelineǁ_loop__mutmut_13 (0.1 s -> 1.1 s: with nothing in flight the loop
    would look at stop requests, stalls and the end of the stream ten times less often)."""
    from jetson_deploy.media.capture import CaptureThread
    from jetson_deploy.runtime.options import OutputOptions, SourceOptions
    from jetson_deploy.runtime.session import run_pipeline

    timeouts = []
    real_get = CaptureThread.get

    def get(self, timeout=None):
        timeouts.append(timeout)
        return real_get(self, timeout=0.0)  # no waiting here: the test records what was asked for

    monkeypatch.setattr(CaptureThread, "get", get)
    src = _frames_source([], live=True, uri="frames://idle")
    s = run_pipeline(color_bundle, src, "null://", options=RunOptions(backend="onnxruntime"),
                     inputs=SourceOptions(stall_timeout=0.05), outputs=OutputOptions(metrics_interval=0))
    assert s.end_reason.startswith("source stalled")
    assert timeouts and set(timeouts) == {0.1}  # nothing was ever in flight


@pytest.mark.needs("onnx", "onnxruntime")
def test_torch_capture_of_a_tensorrt_graph_runs_on_the_callers_stream(monkeypatch, tmp_path):
    """Kills backends.tensorrt.xǁTensorRTEngineǁ_capture_with_torch__mutmut_20 (the caller's stream
    not wrapped: ``ExternalStream(None)``).  No libcuda graph API here: the capture goes through a
    recording torch stand-in, as in test_runtime_backend_tensorrt's fake-torch capture test."""
    import contextlib
    import sys
    import types

    from doubles import onnx_models, pycuda_double, tensorrt_double as trtd

    from jetson_deploy.runtime.backends import tensorrt as trt_backend
    from jetson_deploy.trt import build as tb

    wrapped = []

    class Stream:
        def __init__(self, handle=0x5150):
            self.cuda_stream = handle

        def synchronize(self):
            pass

    def external(handle):
        wrapped.append(handle)
        return Stream(handle)

    class CUDAGraph:
        def replay(self):
            pass

    @contextlib.contextmanager
    def graph(g, stream=None, capture_error_mode=None):
        yield

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        is_available=lambda: True, Stream=Stream, ExternalStream=external, CUDAGraph=CUDAGraph,
        graph=graph, stream=lambda s: contextlib.ExitStack()))
    pycuda_double.install(monkeypatch)
    monkeypatch.setitem(sys.modules, "torch", fake)
    monkeypatch.setattr(trt_backend, "driver", lambda: None)  # no CUDA driver graph API: the torch capture
    trtd.install(monkeypatch, "10.x")
    model = onnx_models.classifier(tmp_path / "m.onnx")
    eng = trt_backend.TensorRTEngine(tb.build_engine(model, "fp32"))
    x, out = pycuda_double.device_array((1, 3, 8, 8)), pycuda_double.device_array((1, 4))
    x[...], out[...] = np.random.RandomState(0).rand(1, 3, 8, 8), 0
    with eng:
        g = eng.capture_graph({"input": x.ctypes.data, "logits": out.ctypes.data},
                              stream=types.SimpleNamespace(handle=0xBEEF))
        assert wrapped == [0xBEEF] and g.context.last_stream == 0xBEEF


@pytest.mark.needs("onnx", "onnxruntime")
def test_kernel_path_logs_the_new_frame_size_as_width_x_height(tmp_path, monkeypatch, caplog):
    """Kills executors.pycuda_kernel.xǁPycudaGpuExecutorǁsetup__mutmut_17 (the log's width read from
    the channel axis: "3x24" for a 40x24 frame)."""
    import logging

    from doubles import pycuda_double
    from support.runtime import COLORS, PointerEngine, make_bundle
    from test_runtime_gpu_preprocess import install_compiler

    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.media.sources import Frame, Source
    from jetson_deploy.runtime.backends import create_engine
    from jetson_deploy.runtime.memory import make_context
    from jetson_deploy.runtime.options import OutputOptions
    from jetson_deploy.runtime.session import run_pipeline

    class _TwoSizes(Source):
        def open_impl(self):
            self.todo = [(24, 32), (24, 32), (24, 40), (24, 40)]

        def read_impl(self, timeout):
            if not self.todo:
                self.end("end of list")
                return None
            h, w = self.todo.pop(0)
            return Frame(np.full((h, w, 3), COLORS["red"], np.uint8), truth="red")

    drv = pycuda_double.install(monkeypatch, integrated=False)
    install_compiler(monkeypatch, [])
    b = make_bundle(tmp_path / "colors-1.0.0")
    ctx = make_context(cuda=drv)
    caplog.set_level(logging.INFO, logger="jetson_deploy.runtime.executors.pycuda_kernel")
    try:
        eng = PointerEngine(create_engine(open_bundle(b), RunOptions(backend="onnxruntime")))
        s = run_pipeline(b, _TwoSizes("sizes://", {"width": 32, "height": 24}), "null://", engine=eng,
                         options=RunOptions(memory="pycuda-pinned", gpu_preprocess="kernel"),
                         outputs=OutputOptions(metrics_interval=0))
    finally:
        ctx.pop()
    assert s.frames == 4 and s.accuracy == 1.0 and s.executor["preprocess"] == "cuda-kernel (pycuda)"
    changed = [r.getMessage() for r in caplog.records if "frame size changed" in r.getMessage()]
    assert changed == ["frame size changed to 40x24: new GPU preprocessing plan"]


# ---- the torch CUDA executor's zero-copy paths, torch on the CPU ------------------------------------
def _uva_on_the_cpu(monkeypatch, torch):
    """``torch.as_tensor`` of a ``__cuda_array_interface__`` object -> a CPU tensor over the same
    memory: on the CPU the "device address" of pinned host memory is the memory itself (UVA)."""
    import ctypes

    real = torch.as_tensor
    made = []

    def as_tensor(obj, *a, **k):
        cai = getattr(obj, "__cuda_array_interface__", None)
        if cai is None:
            return real(obj, *a, **k)
        dt = np.dtype(cai["typestr"])
        shape = tuple(cai["shape"])
        n = int(np.prod(shape)) * dt.itemsize
        arr = np.frombuffer((ctypes.c_uint8 * n).from_address(cai["data"][0]), dtype=dt).reshape(shape)
        made.append(shape)
        return torch.from_numpy(arr)

    monkeypatch.setattr(torch, "as_tensor", as_tensor)
    return made


def _zero_copy_executor(torch, batch, **kw):
    import types

    from test_runtime_gpu_topk import _CpuEngine, _spec as topk_spec

    from jetson_deploy.runtime.executors.torch_cuda import TorchCudaExecutor
    from jetson_deploy.runtime.torch_preprocess import TorchPreprocess

    ex = TorchCudaExecutor(_CpuEngine(), topk_spec(10, batch), depth=2, topk=3, batch=batch, **kw)
    ex._topk_ops, ex._post_into = {}, None
    w = torch.from_numpy(np.random.RandomState(0).randn(3, 10).astype(np.float32))
    ex.engine = types.SimpleNamespace(forward=lambda x: {"logits": x.float().mean(dim=(2, 3)) @ w}, device="cpu",
                                      inputs=[])
    ex._pre = TorchPreprocess(ex.spec, torch.device("cpu"))
    rows = (24, 32, 3) if batch == 1 else (batch, 24, 32, 3)
    ex.frame_shape = (24, 32, 3)
    ex.staging = [torch.zeros(rows, dtype=torch.uint8) for _ in range(ex.depth)]
    ex.model_in = [ex._pre_rows(torch.zeros(rows, dtype=torch.uint8)) for _ in range(ex.depth)]
    shape = (2, 3) if batch == 1 else (batch, 2, 3)
    ex.host_out = [{"topk": torch.zeros(shape)} for _ in range(ex.depth)]
    ex.compute_stream = None
    ex.done = [types.SimpleNamespace(record=lambda s: None) for _ in range(ex.depth)]
    return ex, w


def _colour_frames():
    from jetson_deploy.media.sources import Frame
    from support.runtime import COLORS

    return [Frame(np.full((24, 32, 3), COLORS[c], np.uint8)) for c in ("red", "blue")]


@pytest.mark.needs("torch")
def test_torch_cuda_mapped_rows_preprocess_each_frame_into_its_row(monkeypatch):
    """Kills executors.torch_cuda.xǁTorchCudaExecutorǁsubmit_batch__mutmut_46 (the rows' frames
    replaced by None) and xǁTorchCudaExecutorǁ_submit_mapped_rows__mutmut_26 (``out=mi[i:i - 1]``:
    row 1 never written).  torch on the CPU; UVA views of the staging rows through _uva_on_the_cpu."""
    import torch
    made = _uva_on_the_cpu(monkeypatch, torch)
    ex, w = _zero_copy_executor(torch, 2, mapped_in=True)
    frames = _colour_frames()
    ex.submit_batch(1, frames)
    assert made == [(24, 32, 3), (24, 32, 3)]
    mi = ex.model_in[1]
    for i, f in enumerate(frames):
        want = ex._pre(torch.from_numpy(f.image))
        assert torch.equal(mi[i:i + 1], want), i
    np.testing.assert_allclose(ex.host_out[1]["topk"].numpy(), ex._torch_topk(mi.mean(dim=(2, 3)) @ w).numpy())


@pytest.mark.needs("torch")
def test_torch_cuda_mapped_frame_is_read_in_place(monkeypatch):
    """Kills executors.torch_cuda.xǁTorchCudaExecutorǁ_submit_mapped__mutmut_8 (the frame's UVA view
    made without its shape)."""
    import torch
    made = _uva_on_the_cpu(monkeypatch, torch)
    ex, w = _zero_copy_executor(torch, 1, mapped_in=True)
    f = _colour_frames()[0]
    ex.submit(0, f)
    assert made == [(24, 32, 3)]
    assert torch.equal(ex.model_in[0], ex._pre(torch.from_numpy(f.image)))
    np.testing.assert_allclose(ex.host_out[0]["topk"].numpy(),
                               ex._torch_topk(ex.model_in[0].mean(dim=(2, 3)) @ w)[0].numpy())


@pytest.mark.needs("torch")
def test_torch_cuda_capture_writes_results_through_host_views(monkeypatch):
    """Kills executors.torch_cuda.xǁTorchCudaExecutorǁ_capture__mutmut_8 (the host views built
    without their pointers: mapped output silently turned off).  torch.cuda's graph calls recorded,
    as in test_runtime_gpu_capture's thread-local capture test."""
    import contextlib
    import types

    import torch

    @contextlib.contextmanager
    def graph(g, pool=None, stream=None, capture_error_mode="global"):
        yield

    monkeypatch.setattr(torch.cuda, "graph", graph)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: object())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: types.SimpleNamespace())
    made = _uva_on_the_cpu(monkeypatch, torch)
    ex, w = _zero_copy_executor(torch, 1, mapped_in=False, mapped_out=True)
    ex.static_in = torch.from_numpy(_colour_frames()[0].image.copy())
    ex.dev_frames = [torch.from_numpy(f.image.copy()) for f in _colour_frames()]
    ex.static_model_in = ex._pre_rows(ex.static_in)
    ex._capture()
    assert ex.mapped_out is True and len(ex._slot_graphs) == ex.depth and made == [(2, 3)] * ex.depth
    for k in range(ex.depth):
        assert ex._host_views[k]["topk"].data_ptr() == ex.host_out[k]["topk"].data_ptr()
        # captured on the CPU = run once: the slot's result is already in its pinned host output
        want = ex._torch_topk(ex._pre(ex.dev_frames[k]).mean(dim=(2, 3)) @ w)[0]
        np.testing.assert_allclose(ex.host_out[k]["topk"].numpy(), want.numpy(), rtol=1e-6)


@pytest.mark.needs("torch")
def test_torch_cuda_setup_warms_up_then_captures_a_graph_per_slot(monkeypatch):
    """Kills executors.torch_cuda.xǁTorchCudaExecutorǁsetup__mutmut_91 and __mutmut_94 (the slots'
    and the static model inputs preprocessed from None) and __mutmut_98 (``_slot_graphs = None``:
    the capture fails and the executor silently runs eagerly).  Also pins that every graph shares one
    memory pool (the capture's ``pool``, once mutmut's _capture__mutmut_44).  torch on the CPU; the
    streams, events and graph capture of torch.cuda replaced by recording stand-ins."""
    import contextlib
    import types

    import torch
    from test_runtime_gpu_topk import _spec as topk_spec

    from jetson_deploy.runtime.executors.torch_cuda import TorchCudaExecutor

    pools = []

    @contextlib.contextmanager
    def graph(g, pool=None, stream=None, capture_error_mode="global"):
        pools.append(pool)
        yield

    real_empty = torch.empty

    def empty(*a, **k):
        k.pop("pin_memory", None)  # no page-locked memory without a GPU
        return real_empty(*a, **k)

    event = lambda *a, **k: types.SimpleNamespace(record=lambda s=None: None, query=lambda: True,  # noqa: E731
                                                  synchronize=lambda: None)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.cuda, "graph", graph)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: object())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: types.SimpleNamespace(replay=lambda: None))
    monkeypatch.setattr(torch.cuda, "Stream", lambda *a, **k: types.SimpleNamespace(synchronize=lambda: None))
    monkeypatch.setattr(torch.cuda, "Event", event)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.ExitStack())  # a null context (nullcontext is 3.7+)
    monkeypatch.setattr(torch, "empty", empty)
    w = torch.from_numpy(np.random.RandomState(0).randn(3, 10).astype(np.float32))
    engine = types.SimpleNamespace(forward=lambda x: {"logits": x.float().mean(dim=(2, 3)) @ w}, device="cpu",
                                   inputs=[])
    ex = TorchCudaExecutor(engine, topk_spec(10), depth=3, topk=3, graph=True, mapped_in=False, mapped_out=False,
                           preprocess_impl="torch-ops")
    ex.setup((24, 32, 3))
    assert ex.graph is True and ex.eager_reason == "" and len(ex._slot_graphs) == 3
    assert [tuple(m.shape) for m in ex.model_in] == [(1, 3, 16, 16)] * 3
    assert tuple(ex.static_model_in.shape) == (1, 3, 16, 16)
    # preprocessed from the (zero) static frame: (0 * scale - 0.5) / 0.25
    assert torch.equal(ex.static_model_in, torch.full((1, 3, 16, 16), -2.0))
    assert len(pools) == 3 + 2 and pools[0] is not None and all(p is pools[0] for p in pools)
