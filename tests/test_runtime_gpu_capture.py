"""CUDA graph capture on the GPU frame paths (issue #28 items 5-7): the waits that release the GIL,
thread-local capture, non-blocking capture streams, and the capture rules of the CUDA driver and
TensorRT as the doubles enforce them (tests/doubles/: pycuda_double, cuda_driver_double,
tensorrt_double), with the fallbacks the runtime takes when a capture cannot be had.  The last
tests run the same on a real GPU."""
import ctypes
import ctypes.util
import json
import sys
import threading
import time
import types

import numpy as np
import pytest

from doubles import cuda_driver_double, pycuda_double, tensorrt_double

from jetson_deploy.runtime import cuda_graph
from jetson_deploy.runtime.memory import make_context
from jetson_deploy.runtime.options import OutputOptions, RunOptions

QUIET = OutputOptions(metrics_interval=0)


def _images(folder, sizes):
    """Solid-colour PNGs, one per (name, (w, h)): (folder, expected labels)."""
    import cv2

    from support.runtime import COLORS

    folder.mkdir()
    for i, (name, (w, h)) in enumerate(sizes):
        cv2.imwrite(str(folder / "{:02d}.png".format(i)), np.full((h, w, 3), COLORS[name], np.uint8))
    return str(folder), [n for n, _ in sizes]


SIZES = [("red", (64, 48)), ("green", (64, 48)), ("blue", (64, 48)), ("red", (64, 48)),
         ("green", (33, 90)), ("blue", (33, 90)), ("red", (33, 90))]  # a mid-stream size change


def _trt_run(tmp_path, monkeypatch, gen="10.x", before=None, gpu_pre=True, integrated=False, missing=()):
    """The colour model as a TensorRT-double engine on the pycuda path (discrete GPU: per-slot graphs
    of kernel + engine + copy-out, re-captured at the size change), captured through the libcuda
    double, torch unimportable (a board without torch).  ``before(trt, driver, drv)`` adjusts the
    doubles first.  Returns (summary, labels, expected, driver, trt module)."""
    from support.runtime import make_bundle
    from test_runtime_gpu_preprocess import install_compiler

    from jetson_deploy.runtime.session import run_pipeline

    drv = pycuda_double.install(monkeypatch, integrated=integrated)
    trt = tensorrt_double.install(monkeypatch, gen)
    driver = cuda_driver_double.install(monkeypatch, missing=missing)
    monkeypatch.setitem(sys.modules, "torch", None)
    if gpu_pre:
        install_compiler(monkeypatch, [])
    if before is not None:
        before(trt, driver, drv)
    folder, seq = _images(tmp_path / "imgs", SIZES)
    bundle = make_bundle(tmp_path / "b")
    ctx = make_context(cuda=drv)
    try:
        s = run_pipeline(bundle, folder, str(tmp_path / "p.jsonl"), outputs=QUIET,
                         options=RunOptions(backend="tensorrt", cache_dir=str(tmp_path / "eng"),
                                            gpu_preprocess="kernel" if gpu_pre else "host"))
    finally:
        ctx.pop()
    labels = [json.loads(x)["label"] for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    return s, labels, seq, driver, trt


# ---------------------------------------------------------------------------------------------
# item 5: waits release the GIL
# ---------------------------------------------------------------------------------------------
@pytest.mark.needs("onnx", "onnxruntime", "cv2")
def test_capture_warm_ups_wait_with_the_gil_released(tmp_path, monkeypatch):
    """Every capture's warm-up wait (cuStreamSynchronize, after TensorRT's first enqueue), at the start
    and again at the mid-stream size change, goes through the CDLL handle, which releases the GIL so
    capture and output threads keep running; the calls that only queue work keep it (PyDLL)."""
    s, labels, seq, driver, _ = _trt_run(tmp_path, monkeypatch)
    assert labels == seq and s.executor["cuda_graph"] is True and driver.captures == 6  # 3 slots x 2 sizes
    assert sorted(set(driver.opened)) == [("libcuda.so.1", False), ("libcuda.so.1", True)]
    waits = [rel for name, rel in driver.calls if name == "cuStreamSynchronize"]
    assert len(waits) == 6 and all(waits)
    assert not any(rel for name, rel in driver.calls if name != "cuStreamSynchronize")
    assert {name for name, _ in driver.calls} >= {"cuStreamBeginCapture_v2", "cuStreamEndCapture",
                                                  "cuGraphInstantiateWithFlags", "cuGraphLaunch"}


def test_the_gil_releasing_handle_lets_other_threads_run():
    """What the two handles do, on a real library (libc ``usleep``): while a call made through the
    ``_open(..., releases_gil=True)`` handle blocks, a Python thread counting in a loop gets the GIL
    and counts; through the GIL-keeping handle not one bytecode of it runs."""
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    count, stop = [0], threading.Event()

    def counter():
        while not stop.is_set():
            count[0] += 1
            time.sleep(0)  # hands the GIL back at once; no thread is preempted otherwise (switch interval)

    def usleep(releases_gil):
        fn = cuda_graph._open(libc_name, releases_gil).usleep
        fn.argtypes, fn.restype = [ctypes.c_uint], ctypes.c_int
        return fn

    interval = sys.getswitchinterval()
    sys.setswitchinterval(60.0)  # no forced switches: the GIL changes hands only where a call releases it
    t = threading.Thread(target=counter)
    t.start()
    try:
        held, free = usleep(False), usleep(True)
        before = count[0]
        held(50000)
        assert count[0] == before  # the GIL stayed with this thread for the whole call
        for _ in range(100):  # the counter runs during a releasing call (bounded: no timing assumed)
            before = count[0]
            free(20000)
            if count[0] != before:
                break
        assert count[0] != before
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(interval)


# ---------------------------------------------------------------------------------------------
# item 6: thread-local capture, non-blocking capture streams
# ---------------------------------------------------------------------------------------------
def test_torch_capture_asks_for_thread_local_mode_and_copes_with_old_torch():
    seen = []

    def graph(g, stream=None, pool=None, capture_error_mode="global"):
        seen.append((g, stream, pool, capture_error_mode))
        return "ctx"

    new = types.SimpleNamespace(cuda=types.SimpleNamespace(graph=graph))
    assert cuda_graph.torch_capture(new, "g", "s", "p") == "ctx" and seen[-1] == ("g", "s", "p", "thread_local")

    def old_graph(g, stream=None, pool=None):  # torch < 2.1: no capture_error_mode
        seen.append((g, stream, pool, "global"))
        return "ctx"

    old = types.SimpleNamespace(cuda=types.SimpleNamespace(graph=old_graph))
    assert cuda_graph.torch_capture(old, "g", "s") == "ctx" and seen[-1] == ("g", "s", None, "global")


@pytest.mark.needs("torch")
def test_torch_cuda_executor_captures_every_graph_thread_locally(monkeypatch):
    """The torch CUDA executor's graphs (slot graphs, the whole-step and the model-only graph) are
    captured in thread-local mode, as the TensorRT paths are (torch's default, global, makes every
    other thread's cudaMalloc or pinned allocation fail while it captures).  torch runs on the CPU
    here; torch.cuda's graph calls are recorded."""
    import contextlib

    import torch

    from jetson_deploy.runtime.torch_preprocess import TorchPreprocess
    from test_runtime_gpu_topk import _cpu_executor

    modes = []

    @contextlib.contextmanager
    def graph(g, pool=None, stream=None, capture_error_mode="global"):
        modes.append(capture_error_mode)
        yield

    monkeypatch.setattr(torch.cuda, "graph", graph)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: object())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: types.SimpleNamespace())
    ex = _cpu_executor(10)
    w = torch.from_numpy(np.random.RandomState(0).randn(3, 10).astype(np.float32))
    ex.engine = types.SimpleNamespace(forward=lambda x: {"logits": x.float().mean(dim=(2, 3)) @ w}, device="cpu",
                                      inputs=[])
    ex._pre = TorchPreprocess(ex.spec, torch.device("cpu"))
    ex.static_in = torch.zeros((48, 64, 3), dtype=torch.uint8)
    ex.dev_frames = [torch.zeros((48, 64, 3), dtype=torch.uint8) for _ in range(ex.depth)]
    ex.model_in = [ex._pre_rows(ex.static_in) for _ in range(ex.depth)]
    ex.static_model_in = ex._pre_rows(ex.static_in)
    ex.host_out = [{"topk": torch.zeros((2, 5))} for _ in range(ex.depth)]
    ex.mapped_out, ex.compute_stream = False, None
    ex._capture()
    assert len(ex._slot_graphs) == ex.depth and modes == ["thread_local"] * (ex.depth + 2)


@pytest.mark.needs("onnx", "onnxruntime", "cv2")
def test_pycuda_capture_survives_another_threads_legacy_stream_call(tmp_path, monkeypatch):
    """While the slot graphs are captured (at the start and at the size change), another thread makes a
    legacy-stream call (a synchronous ``memcpy_htod``, as a sink or a second pipeline might): on a
    blocking capture stream that fails with CUDA_ERROR_STREAM_CAPTURE_IMPLICIT and invalidates the
    capture; the executor's streams are non-blocking, so both the copy and the capture succeed."""
    from jetson_deploy.runtime.executors import pycuda_kernel

    outcomes = []

    def before(trt, driver, drv):
        real = pycuda_kernel.launch_pycuda

        def launch(fn, plan, src, dst, stream):
            if pycuda_double.STREAMS[stream.handle]._capturing:  # inside a capture: another thread copies
                ctx = drv.Context.get_current()

                def other():
                    ctx.push()
                    try:
                        dev = drv.mem_alloc(16)
                        drv.memcpy_htod(dev, np.arange(4, dtype=np.float32))
                        outcomes.append("ok")
                    except drv.LogicError as exc:
                        outcomes.append(str(exc))
                    finally:
                        drv.Context.pop()

                t = threading.Thread(target=other)
                t.start()
                t.join()
            return real(fn, plan, src, dst, stream)

        monkeypatch.setattr(pycuda_kernel, "launch_pycuda", launch)

    s, labels, seq, driver, _ = _trt_run(tmp_path, monkeypatch, before=before)
    assert outcomes == ["ok"] * 6, outcomes
    assert labels == seq and s.executor["cuda_graph"] is True and "note" not in s.executor and driver.captures == 6


# ---------------------------------------------------------------------------------------------
# item 7: the doubles are as strict as the driver and TensorRT; the runtime copes
# ---------------------------------------------------------------------------------------------
def test_stream_capture_rules(monkeypatch):
    """The driver's capture rules, as the doubles apply them: a capture whose body allocates or copies
    on the legacy stream fails (it does not "succeed" with nothing in it); unsafe calls are refused on
    the capturing thread only (thread-local) or on every thread (global); legacy-stream calls from any
    thread break a blocking stream's capture, not a non-blocking one's; ending from another thread and
    unknown modes are refused."""
    from jetson_deploy.runtime.cuda_graph import capture_on_stream

    drv = pycuda_double.install(monkeypatch, integrated=False)
    driver = cuda_driver_double.install(monkeypatch)
    lib = cuda_graph.driver()
    ctx = make_context(cuda=drv)
    try:
        blocking, free = drv.Stream(), drv.Stream(flags=1)
        dev = drv.mem_alloc(16)
        host = np.arange(4, dtype=np.float32)
        with pytest.raises(drv.LogicError, match="not permitted when stream is capturing"):
            capture_on_stream(free.handle, lambda: drv.mem_alloc(16))  # cuMemAlloc on the capturing thread
        with pytest.raises(drv.LogicError, match="not permitted when stream is capturing"):
            capture_on_stream(free.handle, lambda: drv.pagelocked_empty((4,), np.float32))
        with pytest.raises(drv.LogicError, match="legacy stream depend on a capturing blocking stream"):
            capture_on_stream(blocking.handle, lambda: drv.memcpy_htod(dev, host))
        with pytest.raises(drv.LogicError, match="legacy stream depend on a capturing blocking stream"):
            capture_on_stream(blocking.handle, lambda: drv.Context.synchronize())
        with pytest.raises(drv.LogicError, match="not permitted when stream is capturing"):
            capture_on_stream(free.handle, lambda: drv.Context.synchronize())
        assert driver.captures == 0 and not blocking._capturing and not free._capturing

        def from_another_thread(call):
            out = []

            def run():
                ctx.push()
                try:
                    out.append(call())
                except drv.LogicError as exc:
                    out.append(exc)
                finally:
                    drv.Context.pop()

            t = threading.Thread(target=run)
            t.start()
            t.join()
            return out[0]

        # thread-local capture: another thread may allocate and use the legacy stream (non-blocking capture)
        assert capture_on_stream(free.handle, lambda: from_another_thread(lambda: (
            drv.mem_alloc(16), drv.memcpy_htod(dev, host)))) is not None
        # a blocking stream's capture is broken by another thread's legacy-stream copy
        with pytest.raises(RuntimeError, match="CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"):
            capture_on_stream(blocking.handle, lambda: from_another_thread(lambda: drv.memcpy_htod(dev, host)))
        # global mode: another thread's allocation is refused too
        assert lib.cuStreamBeginCapture_v2(ctypes.c_void_p(free.handle), 0) == 0
        assert isinstance(from_another_thread(lambda: drv.mem_alloc(16)), drv.LogicError)
        graph = ctypes.c_void_p()
        assert lib.cuStreamEndCapture(ctypes.c_void_p(free.handle), ctypes.byref(graph)) == cuda_driver_double.CAPTURE_INVALIDATED
        # ending on another thread than the one that began (not relaxed): refused, the capture goes on
        assert lib.cuStreamBeginCapture_v2(ctypes.c_void_p(free.handle), 1) == 0
        rc = from_another_thread(lambda: lib.cuStreamEndCapture(ctypes.c_void_p(free.handle), ctypes.byref(graph)))
        assert rc == cuda_driver_double.CAPTURE_WRONG_THREAD and free._capturing
        assert lib.cuStreamEndCapture(ctypes.c_void_p(free.handle), ctypes.byref(graph)) == 0 and graph.value
        assert lib.cuStreamBeginCapture_v2(ctypes.c_void_p(free.handle), 7) == cuda_driver_double.INVALID_VALUE
    finally:
        ctx.pop()


def test_libcuda_is_called_through_its_symbol_table_and_prototypes(monkeypatch):
    """The double is loaded as the real library is: by name, with argtypes set by the runtime; a name
    libcuda does not export (a misspelling, or a call newer than the driver) leaves ``driver()`` None,
    and a call with wrong arguments is ctypes' ArgumentError."""
    driver = cuda_driver_double.install(monkeypatch)
    lib = cuda_graph.driver()
    assert lib is not None and set(vars(lib)) == set(cuda_driver_double.SYMBOLS)
    for name in cuda_driver_double.SYMBOLS:
        fn = getattr(lib, name)
        assert fn.argtypes is not None and fn.restype is ctypes.c_int
    with pytest.raises(ctypes.ArgumentError):
        lib.cuGraphLaunch(ctypes.c_void_p(1), 2.5)
    with pytest.raises(TypeError):
        lib.cuStreamSynchronize()
    assert driver.calls == []
    monkeypatch.setattr(cuda_graph, "_DRIVER", [])
    monkeypatch.setitem(cuda_graph._QUEUE_CALLS, "cuGraphLauch", [ctypes.c_void_p, ctypes.c_void_p])
    assert cuda_graph.driver() is None


@pytest.mark.needs("onnx", "onnxruntime", "cv2")
def test_cuda_10_2_without_instantiate_with_flags_runs_without_graphs(tmp_path, monkeypatch):
    """JetPack 4.6's driver (CUDA 10.2) has no cuGraphInstantiateWithFlags: no driver graphs, torch is
    absent, so the frames run eagerly -- said in the summary, labels right."""
    s, labels, seq, driver, _ = _trt_run(tmp_path, monkeypatch, missing=("cuGraphInstantiateWithFlags",))
    assert labels == seq and s.executor["cuda_graph"] is False and driver.calls == []
    assert "CUDA graph capture unavailable" in s.executor["note"]


@pytest.mark.needs("onnx", "onnxruntime", "cv2")
def test_graph_instantiation_failure_falls_back_to_eager_enqueue(tmp_path, monkeypatch):
    s, labels, seq, driver, _ = _trt_run(
        tmp_path, monkeypatch, before=lambda trt, d, drv: setattr(d, "fail_instantiate", cuda_driver_double.OUT_OF_MEMORY))
    assert labels == seq and s.executor["cuda_graph"] is False
    assert "cuGraphInstantiateWithFlags failed: CUDA_ERROR_OUT_OF_MEMORY" in s.executor["note"]
    assert driver.graphs == {} and driver.execs == {}  # the captured graphs were destroyed


@pytest.mark.needs("onnx", "onnxruntime", "cv2")
def test_engine_that_cannot_be_captured_runs_eagerly(tmp_path, monkeypatch):
    """trtexec's case (sampleInference.cpp 10.3 L971-990): execute_async_v3 returns False inside a
    capture; the capture is ended (not left open on the stream), and the frames run with eager
    enqueues on the same streams."""
    s, labels, seq, driver, _ = _trt_run(tmp_path, monkeypatch,
                                         before=lambda trt, d, drv: setattr(trt._double, "uncapturable", True))
    assert labels == seq and s.executor["cuda_graph"] is False and driver.captures == 0
    assert "TensorRT execution failed" in s.executor["note"] and "capturing" in s.executor["note"]
    assert not any(st._capturing for st in pycuda_double.STREAMS.values())


@pytest.mark.needs("onnx", "onnxruntime", "cv2")
def test_no_execution_context_for_a_graph_runs_eagerly(tmp_path, monkeypatch):
    """create_execution_context returns None (no device memory for another context): the graph's
    context cannot be made, so no graphs; the engine's own context runs the frames."""
    s, labels, seq, driver, _ = _trt_run(tmp_path, monkeypatch,
                                         before=lambda trt, d, drv: setattr(trt._double, "context_budget", 1))
    assert labels == seq and s.executor["cuda_graph"] is False and driver.captures == 0
    assert "could not create an execution context for a CUDA graph" in s.executor["note"]


@pytest.mark.needs("onnx", "onnxruntime")
def test_tensorrt_double_refuses_what_tensorrt_refuses(tmp_path, monkeypatch):
    """set_tensor_address: 256-byte alignment and device memory (NvInferRuntime.h); the first enqueue
    of a context allocates, so it cannot be the one captured; create_execution_context may return None."""
    from support.runtime import color_onnx_bytes

    from jetson_deploy.errors import CheckFailed
    from jetson_deploy.runtime.backends.tensorrt import TensorRTEngine
    from jetson_deploy.trt import build as tb

    drv = pycuda_double.install(monkeypatch, integrated=True)
    trt = tensorrt_double.install(monkeypatch, "10.x")
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(color_onnx_bytes())
    plan = tb.build_engine(onnx_path, "fp32")
    ctx = make_context(cuda=drv)
    try:
        eng = TensorRTEngine(plan).activate()
        c = eng.context
        x, out = drv.mem_alloc(3 * 16 * 16 * 4), drv.mem_alloc(16)
        assert int(x) % 256 == 0 and c.set_tensor_address("input", int(x))
        assert not c.set_tensor_address("input", int(x) + 16)  # misaligned
        assert not c.set_tensor_address("logits", np.zeros(64, np.float32).ctypes.data)  # host memory
        pinned = drv.pagelocked_empty((4,), np.float32)
        assert not c.set_tensor_address("logits", pinned.ctypes.data)  # pinned but not mapped: not device-visible
        mapped = drv.pagelocked_empty((64,), np.float32, mem_flags=drv.host_alloc_flags.DEVICEMAP)
        assert c.set_tensor_address("logits", mapped.base.get_device_pointer())  # mapped: device-visible
        st = drv.Stream(flags=1)
        fresh = eng.engine.create_execution_context()
        fresh.set_tensor_address("input", int(x))
        fresh.set_tensor_address("logits", int(out))
        pycuda_double.begin_capture(st, pycuda_double.CAPTURE_THREAD_LOCAL)
        try:
            assert fresh.execute_async_v3(st.handle) is False  # its first enqueue would cudaMalloc
        finally:
            pycuda_double.end_capture(st)
        assert st._invalidated
        assert fresh.execute_async_v3(st.handle) is True  # outside a capture it allocates and runs
        eng.deactivate()
        trt._double.context_budget = 0
        with pytest.raises(CheckFailed, match="could not create an execution context"):
            eng.activate()
    finally:
        ctx.pop()


@pytest.mark.needs("onnx", "onnxruntime", "cv2")
def test_queries_report_not_ready_until_the_work_has_run(tmp_path, monkeypatch):
    """cuEventQuery/cuStreamQuery say CUDA_ERROR_NOT_READY while the work before them is queued: the
    double's first look finds it unfinished (the GPU then gets on with it), so the pipeline's
    not-ready branch runs on the CPU and its results still come out right and in order."""
    drv = pycuda_double.install(monkeypatch, integrated=False)
    ctx = make_context(cuda=drv)
    try:
        st, ev = drv.Stream(flags=1), drv.Event()
        dev, host = drv.mem_alloc(16), drv.pagelocked_empty((4,), np.float32)
        host[:] = 7
        drv.memcpy_htod_async(dev, host, st)
        ev.record(st)
        assert st.is_done() is False and st.is_done() is True  # ran after the first look
        drv.memcpy_dtoh_async(host, dev, st)
        ev.record(st)
        assert ev.query() is False and ev.query() is True and host.tolist() == [7.0] * 4
    finally:
        ctx.pop()
    seen = []
    real = pycuda_double.make_pycuda

    def recording(**kw):
        pkg = real(**kw)
        q = pkg.driver.Event.query
        pkg.driver.Event.query = lambda self: seen.append(q(self)) or seen[-1]
        return pkg

    monkeypatch.setattr(pycuda_double, "make_pycuda", recording)
    s, labels, seq, _, _ = _trt_run(tmp_path, monkeypatch)
    assert labels == seq and False in seen and True in seen


# ---------------------------------------------------------------------------------------------
# the same on a real GPU (the lead's GPU session; CI has none)
# ---------------------------------------------------------------------------------------------
def _alloc_on_another_thread():
    """cuMemAlloc + cuMemFree on a new thread (with the device's primary context current there):
    the CUresult of the allocation.  A "potentially unsafe" call: refused (900) while any thread
    captures in global mode, allowed while others capture thread-locally."""
    rcs = []

    def run():
        lib = ctypes.CDLL("libcuda.so.1")
        ctx, dev, ptr = ctypes.c_void_p(), ctypes.c_int(), ctypes.c_uint64()
        lib.cuCtxGetCurrent(ctypes.byref(ctx))
        if not ctx.value:
            lib.cuDeviceGet(ctypes.byref(dev), 0)
            lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev)
            lib.cuCtxSetCurrent(ctx)
        rc = lib.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(1 << 20))
        if rc == 0:
            lib.cuMemFree_v2(ctypes.c_uint64(ptr.value))
        rcs.append(rc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return rcs[0]


@pytest.mark.needs("cuda", "torch")
def test_torch_cuda_capture_lets_another_thread_allocate_on_real_cuda():
    """While the torch CUDA executor captures its graphs, another thread allocates device memory (as
    the capture thread's pinned pool or a second pipeline may): legal in thread-local mode, so the
    allocation succeeds and every graph is captured (global mode: CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED)."""
    import torch

    from jetson_deploy.media.sources import Frame
    from jetson_deploy.runtime.backends.torch import TorchEngine
    from jetson_deploy.runtime.executors.torch_cuda import TorchCudaExecutor
    from test_runtime_gpu_topk import _pointwise_model, _spec

    engine = TorchEngine(_pointwise_model(10), device="cuda", input_shape=(1, 3, 16, 16),
                         output_names=["logits"]).activate()
    rcs = []
    forward = engine.forward

    def forward_and_allocate_elsewhere(x):
        if torch.cuda.is_current_stream_capturing():
            rcs.append(_alloc_on_another_thread())
        return forward(x)

    engine.forward = forward_and_allocate_elsewhere
    ex = TorchCudaExecutor(engine, _spec(10), depth=3, mapped_in=False)
    ex.setup((48, 64, 3))
    assert rcs and set(rcs) == {0}, rcs
    assert len(ex._slot_graphs) == 3 and not ex.eager_reason
    frame = Frame(np.full((48, 64, 3), 100, np.uint8))
    ex.submit(0, frame)
    ex.wait(0)
    assert ex.outputs(0)["topk"].shape == (2, 5)
    ex.close()


@pytest.mark.needs("cuda", "pycuda.driver")
def test_frame_stream_capture_survives_a_legacy_copy_on_another_thread_on_real_cuda():
    """The real driver's rule the pycuda double applies: another thread's synchronous memcpy_htod (on
    the legacy stream) during a capture on a blocking stream (pycuda's default) invalidates it; on the
    executor's non-blocking frame stream both the copy and the capture succeed."""
    import pycuda.driver as cuda

    from jetson_deploy.runtime.cuda_graph import capture_on_stream
    from jetson_deploy.runtime.memory import frame_stream

    ctx = make_context()
    try:
        src, dst = cuda.mem_alloc(16), cuda.mem_alloc(16)
        host = np.arange(4, dtype=np.float32)
        errors = []

        def body(stream):
            def other():
                ctx.push()
                try:
                    cuda.memcpy_htod(src, host)
                except cuda.Error as exc:
                    errors.append(str(exc))
                finally:
                    cuda.Context.pop()

            t = threading.Thread(target=other)
            t.start()
            t.join()
            cuda.memcpy_dtod_async(dst, src, 16, stream)

        st = frame_stream(cuda)
        g = capture_on_stream(st.handle, lambda: body(st))
        assert errors == []
        g.launcher()()
        st.synchronize()
        out = np.zeros(4, np.float32)
        cuda.memcpy_dtoh(out, dst)
        assert out.tolist() == host.tolist()
        blocking = cuda.Stream()
        with pytest.raises(Exception):
            capture_on_stream(blocking.handle, lambda: body(blocking))
        assert errors and "capturing" in errors[0]
        blocking.synchronize()  # the stream is usable again: the capture was ended
    finally:
        ctx.pop()


@pytest.mark.needs("cuda", "pycuda.compiler")
def test_pycuda_kernels_compile_once_per_context_on_real_pycuda():
    """Real pycuda: wrappers from get_current() and a second pycuda context object of the primary
    context all find the one compiled kernel (no second nvcc run, no growth of the cache)."""
    import pycuda.driver as cuda

    from jetson_deploy.runtime.gpu_preprocess import _COMPILED, KernelSpec, pycuda_kernel

    ctx = make_context()
    try:
        fn = pycuda_kernel(KernelSpec())
        size = len(_COMPILED)
        assert all(pycuda_kernel(KernelSpec()) is fn for _ in range(3))
        again = cuda.Device(0).retain_primary_context()
        again.push()
        try:
            assert again == cuda.Context.get_current() and pycuda_kernel(KernelSpec()) is fn
        finally:
            cuda.Context.pop()
        assert len(_COMPILED) == size
    finally:
        ctx.pop()
