"""The TensorRT runtime backend against the TensorRT double (8.2 bindings, 8.5/10.x tensor names).

Plans come from ``build_engine`` on the double; device memory is the pycuda double's
(host memory), so ``infer``/``enqueue`` produce real numbers compared with ONNX Runtime.
"""
import numpy as np
import pytest

pytestmark = pytest.mark.needs("onnx", "onnxruntime")

from doubles import onnx_models, pycuda_double, tensorrt_double as trtd  # noqa: E402

from jetson_deploy.runtime.options import RunOptions  # noqa: E402
from jetson_deploy.trt import build as tb  # noqa: E402
from jetson_deploy.errors import BadInput, CheckFailed, MissingDependency  # noqa: E402
from jetson_deploy.runtime.backends.tensorrt import TensorRTEngine, device_pointer, stream_handle  # noqa: E402

GENS = ["8.2", "8.5", "10.x"]


@pytest.fixture
def cuda(monkeypatch):
    return pycuda_double.install(monkeypatch)


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("gen", GENS)
def test_infer_matches_onnxruntime(monkeypatch, cuda, tmp_path, gen):
    trt = trtd.install(monkeypatch, gen)
    model = onnx_models.classifier(tmp_path / "m.onnx", batch=2)
    plan = tb.build_engine(model, "fp32")
    eng = TensorRTEngine(plan)
    assert [(t.name, t.shape, t.dtype) for t in eng.inputs] == [("input", (2, 3, 8, 8), np.dtype(np.float32))]
    assert [(t.name, t.shape) for t in eng.outputs] == [("logits", (2, 4))]
    assert eng.describe()["api"] == ("bindings" if gen == "8.2" else "tensor-name")
    x = _x((2, 3, 8, 8))
    with eng:
        out = eng.infer({"input": x})
        out2 = eng.infer({"input": x * 2})
    ref = onnx_models.reference(model, {"input": x})["logits"]
    np.testing.assert_allclose(out["logits"], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out2["logits"], onnx_models.reference(model, {"input": x * 2})["logits"], rtol=1e-5, atol=1e-6)
    assert len(trt._double.engines) == 1  # one deserialization, reused across infer() calls


@pytest.mark.parametrize("gen", GENS)
def test_two_outputs_in_engine_order_from_a_file(monkeypatch, cuda, tmp_path, gen):
    trtd.install(monkeypatch, gen)
    model = onnx_models.two_outputs(tmp_path / "two.onnx")
    path = tb.save_engine(tb.build_engine(model, "fp32"), tmp_path / "engines" / "two.engine")
    eng = TensorRTEngine(path)
    assert [t.name for t in eng.outputs] == ["scores", "boxes"]
    x = _x((1, 4), 3)
    with eng:
        out = eng.infer({"x": x})
    ref = onnx_models.reference(model, {"x": x})
    for k in ("scores", "boxes"):
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gen", GENS)
def test_enqueue_uses_caller_buffers_and_never_syncs(monkeypatch, cuda, tmp_path, gen):
    trt = trtd.install(monkeypatch, gen)
    model = onnx_models.classifier(tmp_path / "m.onnx")
    eng = TensorRTEngine(tb.build_engine(model, "fp32"))
    eng.activate()
    x = _x((1, 3, 8, 8), 1)
    d_in, d_out = cuda.mem_alloc(x.nbytes), cuda.mem_alloc(16)
    cuda.memcpy_htod(d_in, x)
    stream = cuda.Stream()
    syncs = cuda._double.syncs
    eng.enqueue({"input": d_in, "logits": int(d_out)}, stream)  # DeviceAllocation and int both work
    assert eng.context.last_stream == stream.handle  # TensorRT got the caller's stream
    eng.enqueue({"input": int(d_in), "logits": d_out}, stream.handle)  # addresses unchanged: not re-set
    assert cuda._double.syncs == syncs  # no host synchronisation inside enqueue
    out = np.empty((1, 4), np.float32)
    cuda.memcpy_dtoh(out, d_out)
    np.testing.assert_allclose(out, onnx_models.reference(model, {"input": x})["logits"], rtol=1e-5, atol=1e-6)
    ctx = trt._double.engines[-1]
    assert eng.context.executions == 2 and ctx is eng.engine
    with pytest.raises(BadInput, match=r"no buffer for \['logits'\]"):
        eng.enqueue({"input": d_in}, stream)
    with pytest.raises(BadInput, match="not a host ndarray"):
        eng.enqueue({"input": x, "logits": d_out}, stream)
    with pytest.raises(RuntimeError, match="TensorRT execution failed: .*null"):
        eng.enqueue({"input": 0, "logits": d_out}, stream)
    eng.deactivate()
    with pytest.raises(RuntimeError, match="activate"):
        eng.enqueue({"input": d_in, "logits": d_out}, stream)


@pytest.mark.parametrize("gen", ["8.2", "10.x"])
def test_dynamic_batch_within_profile(monkeypatch, cuda, tmp_path, gen):
    trtd.install(monkeypatch, gen)
    model = onnx_models.classifier(tmp_path / "dyn.onnx", batch=None)
    plan = tb.build_engine(model, "fp32", profiles={"input": ([1, 3, 8, 8], [4, 3, 8, 8], [8, 3, 8, 8])})
    eng = TensorRTEngine(plan)
    assert eng.dynamic and eng.inputs[0].shape == (-1, 3, 8, 8)
    assert eng.profile_shapes("input") == [(1, 3, 8, 8), (4, 3, 8, 8), (8, 3, 8, 8)]
    with eng:
        assert eng.output_shapes() == {"logits": (4, 4)}  # starts at the profile's opt shape
        x4, d_out = pycuda_double.device_array((4, 3, 8, 8)), pycuda_double.device_array((4, 4))
        x4[...], d_out[...] = _x((4, 3, 8, 8)), 0
        eng.enqueue({"input": x4.ctypes.data, "logits": d_out.ctypes.data}, 0)  # plain device pointers
        np.testing.assert_allclose(d_out, onnx_models.reference(model, {"input": x4})["logits"], rtol=1e-5, atol=1e-6)
        for n in (3, 5, 3):
            x = _x((n, 3, 8, 8), n)
            out = eng.infer({"input": x})["logits"]
            assert out.shape == (n, 4)
            np.testing.assert_allclose(out, onnx_models.reference(model, {"input": x})["logits"], rtol=1e-5, atol=1e-6)
        with pytest.raises(BadInput, match=r"outside optimization profile 0 \(\(1, 3, 8, 8\) .. \(8, 3, 8, 8\)\)"):
            eng.infer({"input": _x((9, 3, 8, 8))})


def test_second_profile_on_82_bindings(monkeypatch, cuda, tmp_path):
    """8.x replicates bindings per profile: profile 1's pointers go at offset num_io."""
    trt = trtd.install(monkeypatch, "8.2")
    model = onnx_models.classifier(tmp_path / "dyn.onnx", batch=None)
    plan = tb.build_engine(model, "fp32", profiles=[{"input": ([1, 3, 8, 8], [1, 3, 8, 8], [2, 3, 8, 8])},
                                                     {"input": ([4, 3, 8, 8], [8, 3, 8, 8], [16, 3, 8, 8])}])
    eng = TensorRTEngine(plan, profile=1)
    assert eng.engine.num_bindings == 4
    with eng:
        x = _x((12, 3, 8, 8))
        out = eng.infer({"input": x})["logits"]
        np.testing.assert_allclose(out, onnx_models.reference(model, {"input": x})["logits"], rtol=1e-5, atol=1e-6)
        assert eng.context.active_optimization_profile == 1
    with pytest.raises(BadInput, match="profile 2 does not exist"):
        TensorRTEngine(plan, profile=2)


def test_bad_or_foreign_plans_are_refused_with_reason(monkeypatch, cuda, tmp_path):
    trtd.install(monkeypatch, "10.x")
    with pytest.raises(CheckFailed, match=r"could not be deserialized by TensorRT 10.3.0.30: .*Magic tag does not match.*rebuild"):
        TensorRTEngine(b"\x00" * 64)
    trt85 = trtd.make_tensorrt("8.5")
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", trt85)
    plan85 = tb.build_engine(onnx_models.classifier(tmp_path / "m.onnx"), "fp16")
    trtd.install(monkeypatch, "10.x")
    (tmp_path / "old.engine").write_bytes(plan85)
    with pytest.raises(CheckFailed, match=r"old.engine could not be deserialized .*expecting library version 10.3.0.30 got 8.5.2.2"):
        TensorRTEngine(tmp_path / "old.engine")
    with pytest.raises(BadInput, match="cannot read TensorRT engine"):
        TensorRTEngine(tmp_path / "missing.engine")


def test_capture_graph_preconditions(monkeypatch, cuda, tmp_path):
    trtd.install(monkeypatch, "8.2")
    eng = TensorRTEngine(tb.build_engine(onnx_models.classifier(tmp_path / "m.onnx"), "fp16"))
    with eng:
        with pytest.raises(BadInput, match="execute_async_v3"):
            eng.capture_graph({"input": 1, "logits": 2})
    trtd.install(monkeypatch, "10.x")
    dyn = onnx_models.classifier(tmp_path / "d.onnx", batch=None)
    eng = TensorRTEngine(tb.build_engine(dyn, "fp16", profiles={"input": ([1, 3, 8, 8], [1, 3, 8, 8], [2, 3, 8, 8])}))
    with eng:
        with pytest.raises(BadInput, match="static shapes"):
            eng.capture_graph({"input": 1, "logits": 2})


@pytest.mark.needs("torch")
def test_infer_without_pycuda_or_cuda_torch(monkeypatch, tmp_path):
    trtd.install(monkeypatch, "10.x")
    pycuda_double.uninstall(monkeypatch)
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    eng = TensorRTEngine(tb.build_engine(onnx_models.classifier(tmp_path / "m.onnx"), "fp16"))
    with eng:
        with pytest.raises(MissingDependency, match="pycuda"):
            eng.infer({"input": _x((1, 3, 8, 8))})


def test_missing_tensorrt(monkeypatch):
    trtd.uninstall(monkeypatch)
    with pytest.raises(MissingDependency, match="tensorrt"):
        TensorRTEngine(b"plan")


def test_pointer_and_stream_helpers(cuda):
    class TorchLike:
        is_cuda = True

        def data_ptr(self):
            return 4096

    class Mapped:
        device_ptr = 8192

    class TorchStream:
        cuda_stream = 77

    assert device_pointer(5) == 5 and device_pointer(TorchLike()) == 4096 and device_pointer(Mapped()) == 8192
    assert stream_handle(None) == 0 and stream_handle(9) == 9 and stream_handle(TorchStream()) == 77
    cuda.init()
    ctx = cuda.Device(0).make_context(cuda.ctx_flags.MAP_HOST)
    s = cuda.Stream()
    assert stream_handle(s) == s.handle
    ctx.pop()


@pytest.mark.parametrize("gen", ["8.2", "10.x"])
def test_from_bundle_builds_caches_then_uses_bundled_engine(monkeypatch, cuda, tmp_path, gen):
    """Engine selection on a device: build from model.onnx once, reuse the cache, prefer an exact bundled plan."""
    from support.runtime import color_onnx_bytes, make_bundle

    from jetson_deploy.bundle import add_engine, open_bundle
    from jetson_deploy.runtime.backends import create_engine

    trt = trtd.install(monkeypatch, gen)
    bdir = make_bundle(tmp_path / "colors-1.0.0", precision="fp16")
    x = np.zeros((1, 3, 16, 16), np.float32)
    x[:, 2] = 1.0  # red
    (tmp_path / "c.onnx").write_bytes(color_onnx_bytes())
    ref = onnx_models.reference(tmp_path / "c.onnx", {"input": x})["logits"]
    hows = []
    for _ in range(2):
        eng = create_engine(open_bundle(bdir), RunOptions(backend="tensorrt", cache_dir=tmp_path / "cache"))
        assert eng.target == {"tensorrt": trt.__version__, "sm": 87, "precision": "fp16"}  # SM from the pycuda double
        hows.append(eng.resolved)
        with eng:
            np.testing.assert_allclose(eng.infer({"input": x})["logits"], ref, rtol=2e-3, atol=2e-3)
    assert hows == ["built", "cache-hit"]
    plan = tb.build_engine(open_bundle(bdir).path("onnx"), "fp16")
    add_engine(bdir, plan, {"tensorrt": trt.__version__, "sm": 87, "precision": "fp16"})
    eng = TensorRTEngine.from_bundle(open_bundle(bdir), device=87, cache_dir=tmp_path / "cache")
    assert eng.resolved == "bundled"


@pytest.mark.needs("cv2")
@pytest.mark.parametrize("gen,memory", [("8.2", "pycuda-pinned"), ("10.x", "pycuda-mapped")])
def test_frame_pipeline_on_the_tensorrt_backend(monkeypatch, tmp_path, gen, memory):
    """run_pipeline with backend=tensorrt: the engine built on the device, enqueue() per frame on the
    executor's stream, results read a frame later -- and the host never synchronises a stream."""
    import cv2  # noqa: F401
    import json

    from support.runtime import make_bundle, write_color_video

    from jetson_deploy.runtime.session import run_pipeline

    trtd.install(monkeypatch, gen)
    drv = pycuda_double.install(monkeypatch, integrated=(memory == "pycuda-mapped"))
    bdir = make_bundle(tmp_path / "colors-1.0.0")
    seq = write_color_video(tmp_path / "c.avi", n=9)
    s = run_pipeline(str(bdir), str(tmp_path / "c.avi"), str(tmp_path / "p.jsonl"), options=RunOptions(backend="tensorrt", memory=memory, depth=3, cache_dir=str(tmp_path / "cache")))
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == seq and s.frames == 9
    assert s.executor["memory"] == memory
    assert drv._double.syncs == s.syncs["total"]  # only the executor's counted event waits: no stream/context syncs


class _FakeCudaTorch:
    """torch with CUDA calls answered on the CPU: tests TorchAllocator's byte copies without a GPU."""

    def __init__(self, torch):
        import contextlib
        import types

        self._t = torch
        self.uint8 = torch.uint8
        self.from_numpy = torch.from_numpy
        self.syncs = 0
        outer = self

        class Stream:
            cuda_stream = 0xBEEF

            def synchronize(self):
                outer.syncs += 1

        self.cuda = types.SimpleNamespace(is_available=lambda: True, Stream=Stream,
                                          stream=lambda s: contextlib.ExitStack())

    def empty(self, n, dtype=None, device=None, pin_memory=False):
        # "CUDA" memory: device memory as the TensorRT double sees it (aligned, registered)
        return self._t.from_numpy(pycuda_double.device_array((n,), np.uint8))


@pytest.mark.needs("torch")
def test_infer_falls_back_to_torch_cuda_memory(monkeypatch, tmp_path):
    import torch
    trtd.install(monkeypatch, "10.x")
    pycuda_double.uninstall(monkeypatch)
    fake = _FakeCudaTorch(torch)
    import jetson_deploy.trt.cuda as tc

    monkeypatch.setattr(tc, "require", lambda name, purpose=None: fake)
    model = onnx_models.two_outputs(tmp_path / "two.onnx", batch=None)
    eng = TensorRTEngine(tb.build_engine(model, "fp32", profiles={"x": ([1, 4], [2, 4], [4, 4])}))
    with eng:
        for n in (2, 4, 1):  # buffers grow once, then are reused
            x = _x((n, 4), n)
            out = eng.infer({"x": x})
            ref = onnx_models.reference(model, {"x": x})
            for k in ("scores", "boxes"):
                np.testing.assert_allclose(out[k], ref[k], rtol=1e-5, atol=1e-6)
        assert eng._allocator.kind == "torch" and eng.context.last_stream == 0xBEEF
    assert fake.syncs == 3  # infer() syncs once per call (the simple API); enqueue never does


def test_plan_from_another_gpu_is_refused(monkeypatch, cuda, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", trtd.make_tensorrt("8.5", sm=72))  # built on Xavier
    plan = tb.build_engine(onnx_models.classifier(tmp_path / "m.onnx"), "fp16")
    trtd.install(monkeypatch, "8.5", sm=87)  # run on Orin
    with pytest.raises(CheckFailed, match=r"incompatible device, expecting compute 8.7 got compute 7.2"):
        TensorRTEngine(plan)


def test_capture_graph_sequence_with_a_fake_torch(monkeypatch, cuda, tmp_path):
    """Warm-up enqueue, then one enqueue inside torch.cuda.graph on the same stream; replay relaunches."""
    import contextlib
    import types

    events = []

    class Stream:
        cuda_stream = 0x5150

        def synchronize(self):
            events.append("sync")

    class CUDAGraph:
        def replay(self):
            events.append("replay")

    @contextlib.contextmanager
    def graph(g, stream=None, capture_error_mode=None):
        events.append(("capture", stream.cuda_stream, capture_error_mode))
        yield
        events.append("end-capture")

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        is_available=lambda: True, Stream=Stream, ExternalStream=lambda h: Stream(), CUDAGraph=CUDAGraph,
        graph=graph, stream=lambda s: contextlib.ExitStack()))
    # through sys.modules only (require() reads it): patching require itself would leak the fake into
    # any module first imported during this test (``from .._lazy import require`` binds the patch)
    monkeypatch.setitem(__import__("sys").modules, "torch", fake)
    trtd.install(monkeypatch, "10.x")
    model = onnx_models.classifier(tmp_path / "m.onnx")
    eng = TensorRTEngine(tb.build_engine(model, "fp16"))
    x, out = pycuda_double.device_array((1, 3, 8, 8)), pycuda_double.device_array((1, 4))
    x[...], out[...] = _x((1, 3, 8, 8)), 0
    with eng:
        # the caller's prologue (preprocessing kernel) and epilogue (copy-out) run inside the capture
        # only: the warm-up enqueue must not run a copy-out over results still to be collected
        g = eng.capture_graph({"input": x.ctypes.data, "logits": out.ctypes.data},
                              prologue=lambda: events.append("prologue"), epilogue=lambda: events.append("epilogue"))
        assert g.context.executions == 2 and g.context.last_stream == 0x5150  # the graph's own context
        g.replay()
    assert events == ["sync", ("capture", 0x5150, "thread_local"), "prologue", "epilogue", "end-capture", "replay"]
    np.testing.assert_allclose(out, onnx_models.reference(model, {"input": x})["logits"], rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("gen", ["8.2", "8.5", "10.x"])
def test_profile_that_cannot_be_set_is_one_line_check_failed(monkeypatch, cuda, tmp_path, gen):
    """Issue #12 item 5: set_optimization_profile_async raises RuntimeError (it never returns False);
    activate() turns that into CheckFailed carrying TensorRT's log line."""
    trt = trtd.install(monkeypatch, gen)
    model = onnx_models.classifier(tmp_path / "dyn.onnx", batch=None)
    plan = tb.build_engine(model, "fp32", profiles=[{"input": ([1, 3, 8, 8], [1, 3, 8, 8], [2, 3, 8, 8])},
                                                     {"input": ([4, 3, 8, 8], [8, 3, 8, 8], [16, 3, 8, 8])}])
    eng = TensorRTEngine(plan, profile=1)
    trt._double.fail_profile_async = True
    with pytest.raises(CheckFailed, match=r"refused optimization profile 1: setOptimizationProfileAsync: profile 1 cannot be selected"):
        eng.activate()


@pytest.mark.parametrize("gen", ["8.2", "10.x"])
def test_bundled_plan_that_does_not_deserialize_is_rebuilt_from_onnx(monkeypatch, cuda, tmp_path, gen):
    """Issue #12 item 9: a bundled plan named for this target but built by another TensorRT build
    (deserialize_cuda_engine returns None) is rebuilt from model.onnx with a one-line reason."""
    import logging

    from support.runtime import make_bundle

    from jetson_deploy.bundle import add_engine, open_bundle

    trt = trtd.install(monkeypatch, gen)
    bdir = make_bundle(tmp_path / "colors-1.0.0", precision="fp16")
    add_engine(bdir, b"a plan from another build of TensorRT", {"tensorrt": trt.__version__, "sm": 87, "precision": "fp16"})
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[assignment] -- independent of any CLI handler left installed
    lg = logging.getLogger("jetson_deploy.runtime.backends.tensorrt")
    lg.addHandler(handler)
    try:
        eng = TensorRTEngine.from_bundle(open_bundle(bdir), device=87, cache_dir=tmp_path / "cache")
    finally:
        lg.removeHandler(handler)
    assert eng.resolved == "built"
    msgs = [r.getMessage() for r in records if "does not load here" in r.getMessage()]
    assert len(msgs) == 1 and "could not be deserialized" in msgs[0] and "\n" not in msgs[0]
    with eng:
        assert eng.infer({"input": np.zeros((1, 3, 16, 16), np.float32)})["logits"].shape == (1, 4)


def test_failure_reason_reaches_us_while_another_logger_is_alive_on_82(monkeypatch, cuda, tmp_path):
    """Issue #12 item 4: before 8.4.1 TensorRT keeps one logger per process while any builder/runtime
    lives (NVIDIA/TensorRT#1475, #1539); a per-call logger then hears nothing and failures read
    'no error logged'.  selftest's check_build kept such a Builder alive."""
    from jetson_deploy.trt.logger import process_logger

    trt = trtd.install(monkeypatch, "8.2")
    first = TensorRTEngine(tb.build_engine(onnx_models.classifier(tmp_path / "m.onnx"), "fp32"))  # its Runtime lives on
    with pytest.raises(CheckFailed, match=r"Magic tag does not match"):
        TensorRTEngine(b"not a plan")
    keep = trt.Builder(process_logger(trt))  # noqa: F841 -- what selftest's check_build now keeps alive
    with pytest.raises(CheckFailed, match=r"Magic tag does not match"):
        TensorRTEngine(b"still not a plan")


def test_dla_core_is_set_on_the_runtime_before_deserializing(monkeypatch, cuda, tmp_path):
    """Issue #12 item 10: IRuntime.DLA_core picks the core a DLA plan runs on at deserialization
    (NvInferRuntime.h 8.2 L645-652; trtexec sets it first); unset, the plan runs on core 0."""
    trtd.install(monkeypatch, "8.5", num_dla_cores=2)
    plan = tb.build_engine(onnx_models.classifier(tmp_path / "m.onnx"), "fp16", dla_core=1)
    assert TensorRTEngine(plan, dla_core=1).engine._dla_core == 1
    assert TensorRTEngine(plan).engine._dla_core == 0


def test_parser_error_codes_per_generation(monkeypatch):
    """trt.ErrorCode is the ONNX parser's enum (pyOnnx.cpp): 10.x adds six members; the core enum is ErrorCodeTRT."""
    t8 = trtd.make_tensorrt("8.6")
    t10 = trtd.make_tensorrt("10.x")
    assert hasattr(t10.ErrorCode, "UNSUPPORTED_NODE_ATTR") and hasattr(t10.ErrorCode, "REFIT_FAILED")
    assert not hasattr(t8.ErrorCode, "UNSUPPORTED_NODE_ATTR") and not hasattr(t8.ErrorCode, "FAILED_EXECUTION")
    assert len(t8.ErrorCodeTRT) == len(t10.ErrorCodeTRT) == 11


def test_one_execution_context_per_captured_graph(monkeypatch, cuda, tmp_path):
    """Issue #12 item 10: one CUDA graph per ring slot, each from its own execution context (trtexec:
    one context <-> one stream <-> one graph, sampleInference.cpp 10.3 L371-411, L952-1011)."""
    import contextlib
    import types

    class Stream:
        cuda_stream = 0x5150

        def synchronize(self):
            pass

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        is_available=lambda: True, Stream=Stream, ExternalStream=lambda h: Stream(),
        CUDAGraph=lambda: types.SimpleNamespace(replay=lambda: None),
        graph=lambda g, stream=None, capture_error_mode=None: contextlib.ExitStack(), stream=lambda s: contextlib.ExitStack()))
    monkeypatch.setitem(__import__("sys").modules, "torch", fake)  # through sys.modules: see above
    trtd.install(monkeypatch, "10.x")
    eng = TensorRTEngine(tb.build_engine(onnx_models.classifier(tmp_path / "m.onnx"), "fp16"))
    slots = [(pycuda_double.device_array((1, 3, 8, 8)), pycuda_double.device_array((1, 4))) for k in range(3)]
    with eng:
        graphs = [eng.capture_graph({"input": x.ctypes.data, "logits": o.ctypes.data}) for x, o in slots]
        contexts = [g.context for g in graphs]
        assert len({id(c) for c in contexts}) == 3 and all(c is not None and c is not eng.context for c in contexts)
        for c, (x, o) in zip(contexts, slots):
            assert c.get_tensor_address("input") == x.ctypes.data  # each context keeps its slot's addresses
