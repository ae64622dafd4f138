"""The fused GPU preprocessing kernel: its maths on the CPU (numpy port vs host ``preprocess()``,
top-1 agreement through ONNX Runtime on the demo model), the pycuda executor's frame path on the
pycuda double with a stand-in compiler that runs the numpy port, and the kernel itself on CUDA."""
import ctypes
import itertools
import json
import re
import sys
import types
from typing import Any, Dict

import numpy as np
import pytest

from support.runtime import PointerEngine, make_bundle, write_color_video  # noqa: E402
from doubles import pycuda_double  # noqa: E402

from jetson_deploy.runtime.options import OutputOptions, RunOptions  # noqa: E402
from jetson_deploy.preprocess import preprocess  # noqa: E402
from jetson_deploy.runtime.engine import Engine  # noqa: E402
from jetson_deploy.runtime.gpu_preprocess import (  # noqa: E402
    KernelSpec,
    Plan,
    kernel_spec,
    make_plan,
    numpy_kernel,
    preprocess_like_kernel,
)
from jetson_deploy.spec import ModelSpec  # noqa: E402


def _spec(color="rgb", keep=False, layout="nchw", dtype="float32", size=(224, 160)) -> "ModelSpec":
    c = 1 if color == "gray" else 3
    w, h = size
    shape = [1, c, h, w] if layout == "nchw" else [1, h, w, c]
    mean, std = ([0.5], [0.25]) if c == 1 else ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    return ModelSpec.from_dict({
        "task": "classify", "input": {"name": "input", "shape": shape, "dtype": dtype, "color": color, "layout": layout},
        "preprocess": {"resize": [w, h], "keep_aspect": keep, "scale": 1 / 255.0, "mean": mean, "std": std},
        "outputs": ["logits"], "labels": ["a", "b"]})


CASES = [(c, k, l, d) for c in ("rgb", "bgr", "gray") for k in (False, True) for l in ("nchw", "nhwc")
         for d in ("float32", "float16", "uint8")]


@pytest.mark.needs("cv2")
@pytest.mark.parametrize("color,keep,layout,dtype", CASES)
def test_numpy_port_matches_host_preprocess_within_one_level(color, keep, layout, dtype, record_property):
    spec = _spec(color, keep, layout, dtype)
    rs = np.random.RandomState(3)
    worst = 0.0
    for h, w, c in ((720, 1280, 3), (97, 41, 3), (160, 224, 3), (480, 640, 1), (300, 200, 4)):
        f = rs.randint(0, 256, (h, w, c), dtype=np.uint8)
        a = preprocess(f, spec)
        b = preprocess_like_kernel(f, spec)
        assert b.shape == a.shape and b.dtype == a.dtype
        a, b = a.astype(np.float32), b.astype(np.float32)
        # cv2's bit-exact bilinear (16-bit fixed-point weights) vs the kernel's float32: at most one
        # uint8 level apart per channel (two for gray, which sums three channels), never more, and
        # no bias between them (truncating either one would move the mean by half a level)
        mul = np.abs(make_plan(spec, f.shape).mul).max()
        level = 1.0 if dtype == "uint8" else mul
        tol = (2.0 if color == "gray" else 1.0) * level + (2e-3 if dtype == "float16" else 1e-5)
        d = float(np.abs(a - b).max())
        assert d <= tol, (h, w, c, d)
        assert abs(float((a - b).mean())) <= 0.02 * level + 1e-4, (h, w, c, float((a - b).mean()) / level)
        worst = max(worst, d)
        if (w, h) == spec.resize_wh:  # no resize: identical
            assert np.array_equal(a, b)
    record_property("max_abs_diff", worst)
    print("max |host - kernel maths| {} {} {} {}: {:.5f}".format(color, keep, layout, dtype, worst))


@pytest.mark.needs("cv2")
def test_letterbox_fill_and_region():
    spec = _spec(keep=True, size=(64, 64), dtype="uint8")
    f = np.full((50, 100, 3), 7, np.uint8)
    p = make_plan(spec, f.shape)
    assert (p.rw, p.rh, p.rx0, p.ry0) == (64, 32, 0, 16)
    out = numpy_kernel(f, p)
    assert (out[:, :16] == 114).all() and (out[:, 48:] == 114).all() and (out[:, 16:48] == 7).all()
    assert np.array_equal(out, preprocess(f, spec))


@pytest.mark.needs("cv2", "torch", "onnxruntime")
@pytest.mark.slow
def test_demo_top1_agreement_kernel_maths_vs_host_through_onnxruntime(tmp_path, record_property):
    """The acceptance figure: >= 0.99 top-1 agreement on generated 720p (and mixed-size) frames."""
    import onnxruntime as ort
    import torch

    from jetson_deploy import demo
    from jetson_deploy.media.shapes import ShapeGenerator

    spec = demo.load_spec()
    model = demo.load_model().eval()
    path = tmp_path / "demo.onnx"
    torch.onnx.export(model, (torch.zeros(spec.shape),), str(path), input_names=["input"], output_names=["logits"],
                      opset_version=13, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = ShapeGenerator(21)
    host, kern = [], []
    sizes = [(1280, 720)] * 150 + [(640, 480), (320, 240), (97, 61), (1920, 1080)] * 15
    for w, h in sizes:
        f, _ = gen.frame(w, h)
        host.append(preprocess(f, spec))
        kern.append(preprocess_like_kernel(f, spec))
    a = np.concatenate([sess.run(None, {"input": x[None]})[0] for x in host])
    b = np.concatenate([sess.run(None, {"input": x[None]})[0] for x in kern])

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    agree = float((a.argmax(1) == b.argmax(1)).mean())
    dscore = float(np.abs(softmax(a).max(1) - softmax(b).max(1)).max())
    dinput = float(max(np.abs(x - y).max() for x, y in zip(host, kern)))
    record_property("top1_agreement", agree)
    record_property("max_score_diff", dscore)
    print("demo, {} frames: top-1 agreement {:.4f}, max score diff {:.5f}, max input diff {:.5f}".format(
        len(sizes), agree, dscore, dinput))
    assert agree >= 0.99


# ---------------------------------------------------------------------------------------------
# the pycuda executor's GPU frame path, on the pycuda double
# ---------------------------------------------------------------------------------------------
def _plan_from_args(kspec: "KernelSpec", args) -> "Plan":
    v = [a.item() for a in args]
    return Plan(kspec, *v[2:14], mul=tuple(v[14:17]), off=tuple(v[17:20]), fill=v[20])


class _TopkFunction:
    """The softmax/top-k kernel on the double's (host) memory, with pycuda's prepared-call API as strict
    as pycuda (inducer/pycuda 19bed90 ``pycuda/driver.py`` ``function_prepared_async_call`` L616-646,
    ``src/cpp/cuda.hpp`` ``launch_kernel`` L1449-1497 and ``PYCUDA_PARSE_STREAM_PY`` L78-86): ``prepare``
    first; grid and block tuples of at most three unsigned ints; a pycuda Stream or None, not a handle;
    only ``shared_size`` as a keyword; the arguments packed with the prepared struct format (a wrong
    count or type raises).  The launch itself: at most 1024 threads a block (cuLaunchKernel's
    CUDA_ERROR_INVALID_VALUE), and the kernel's own contract (whole warps, 1 <= k <= MAX_K).  Its
    maths is the numpy reference's."""

    def __init__(self, dtype, launches):
        self.dtype, self.launches, self.arg_format = dtype, launches, None

    def prepare(self, fmt):
        self.arg_format = fmt
        return self

    def prepared_async_call(self, grid, block, stream, *args, **kwargs):
        import struct

        from jetson_deploy.runtime.gpu_topk import MAX_K, softmax_topk_reference

        drv = sys.modules["pycuda.driver"]
        assert self.arg_format is not None, "pycuda: prepared_async_call before prepare()"
        if set(kwargs) - {"shared_size"}:
            raise TypeError("unknown keyword arguments: " + ", ".join(kwargs))
        for dims in (grid, block):
            if not isinstance(dims, tuple) or not 1 <= len(dims) <= 3 or not all(
                    isinstance(d, int) and 0 <= d < 2 ** 32 for d in dims):
                raise TypeError("launch_kernel: grid and block must be tuples of at most 3 unsigned ints, got {!r}".format(dims))
        if stream is not None and not isinstance(stream, drv.Stream):
            raise TypeError("stream must be a pycuda.driver.Stream or None, not {}".format(type(stream).__name__))
        struct.pack(self.arg_format, *args)  # raises on a wrong count or type, as pycuda does
        threads = int(np.prod(block))
        if threads > 1024:
            raise drv.LogicError("cuLaunchKernel failed: invalid argument ({} threads a block)".format(threads))
        in_addr, out_addr, n, stride, k = args
        assert block[0] % 32 == 0 and 1 <= k <= MAX_K and stride >= n >= 1, (block, k, n, stride)
        rows = grid[0]

        def work() -> None:
            itemsize = np.dtype(self.dtype).itemsize
            raw = (ctypes.c_uint8 * (rows * stride * itemsize)).from_address(int(in_addr))
            x = np.frombuffer(raw, self.dtype).reshape(rows, stride)[:, :n]
            out = softmax_topk_reference(x, k)
            ctypes.memmove(int(out_addr), out.ctypes.data, out.nbytes)

        self.launches.append(("topk", rows, n, k))
        if stream is None or not pycuda_double.enqueue_on(stream.handle, work):
            work()


def install_compiler(monkeypatch, launches, compiles=None):
    """A stand-in ``pycuda.compiler``: 'compiles' the source by reading its #defines and runs the
    numpy port on the double's (host) memory, at the pointers the executor passes.  ``compiles``
    gets the kernel name of each SourceModule made (what costs an nvcc run on a board)."""
    mod = types.ModuleType("pycuda.compiler")
    names = {0: "bgr", 1: "rgb", 2: "gray"}
    drv = sys.modules["pycuda.driver"]

    class SourceModule:
        def __init__(self, source, **kw):
            if drv.Context.get_current() is None:  # pycuda: context_dependent needs a current context
                raise drv.LogicError("explicit_context_dependent failed: invalid device context - no currently active context?")
            d = dict(re.findall(r"#define (\w+) (\S+)", source))
            if compiles is not None:
                compiles.append("jd_softmax_topk" if "IN_KIND" in d else "jd_preprocess")
            self.topk_dtype = None
            if "IN_KIND" in d:  # the softmax/top-k kernel (runtime/gpu_topk.py)
                self.topk_dtype = np.float16 if int(d["IN_KIND"]) == 1 else np.float32
                return
            self.kspec = KernelSpec(color=names[int(d["COLOR"])], layout=["nchw", "nhwc"][int(d["LAYOUT"])],
                                    out_dtype=["float32", "float16", "uint8"][int(d["OUT_KIND"])])

        def get_function(self, name):
            if self.topk_dtype is not None:
                assert name == "jd_softmax_topk"
                return _TopkFunction(self.topk_dtype, launches)
            kspec = self.kspec

            def fn(*args, block=None, grid=None, stream=None):
                p = _plan_from_args(kspec, args)
                assert grid == p.grid and block is not None

                def work() -> None:  # a kernel runs when its stream reaches it, after earlier copies
                    n = p.src_h * p.src_pitch
                    src = np.frombuffer((ctypes.c_uint8 * n).from_address(int(args[0])), np.uint8)
                    frame = src.reshape(p.src_h, p.src_w, p.src_c)
                    out = numpy_kernel(frame, p)
                    ctypes.memmove(int(args[1]), out.ctypes.data, out.nbytes)

                launches.append((int(args[0]), (p.src_w, p.src_h)))
                if not pycuda_double.enqueue_on(getattr(stream, "handle", stream), work):
                    work()
            return fn

    mod.SourceModule = SourceModule
    monkeypatch.setitem(sys.modules, "pycuda.compiler", mod)
    sys.modules["pycuda"].compiler = mod


def _run_double(tmp_path, monkeypatch, source, memory, integrated, compiler=True, **kw):
    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.runtime.backends import create_engine
    from jetson_deploy.runtime.memory import make_context
    from jetson_deploy.runtime.session import run_pipeline

    drv = pycuda_double.install(monkeypatch, integrated=integrated)
    launches, htod = [], []
    if compiler:
        install_compiler(monkeypatch, launches)
    real = drv.memcpy_htod_async
    drv.memcpy_htod_async = lambda d, s, stream=None: (htod.append(s.shape), real(d, s, stream))
    from jetson_deploy.media import capture

    prepares = []
    orig = capture.CaptureThread.__init__

    def spy(self, *a, **k):
        prepares.append(k.get("prepare"))
        orig(self, *a, **k)

    monkeypatch.setattr(capture.CaptureThread, "__init__", spy)
    bundle = make_bundle(tmp_path / "b")
    ctx = make_context(cuda=drv)
    try:
        eng = PointerEngine(create_engine(open_bundle(bundle), RunOptions(backend="onnxruntime")))
        s = run_pipeline(bundle, source, str(tmp_path / "p.jsonl"), engine=eng, **kw, options=RunOptions(memory=memory, depth=3))
    finally:
        ctx.pop()
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    return s, rows, launches, htod, prepares


@pytest.mark.needs("onnxruntime", "cv2")
@pytest.mark.parametrize("integrated", [False, True], ids=["discrete-pinned", "integrated-mapped"])
def test_pycuda_gpu_preprocess_path(tmp_path, monkeypatch, integrated):
    seq = write_color_video(tmp_path / "c.avi", n=12, w=64, h=48)
    s, rows, launches, htod, prepares = _run_double(tmp_path, monkeypatch, str(tmp_path / "c.avi"), "pycuda", integrated)
    assert [r["label"] for r in rows] == seq
    ex = s.executor
    assert ex["executor"] == "pycuda" and ex["preprocess"] == "cuda-kernel (pycuda)" and ex["gpu_preprocess"] is True
    assert prepares == [None]  # the capture thread only captures
    assert all(size == (64, 48) for _, size in launches) and ex["cuda_graph"] is True
    if integrated:
        assert htod == [] and ex["memory"] == "pycuda-mapped"  # the kernel read the mapped frames in place
        assert len(launches) == 12 and ex["kernel_in_graph"] is False  # each frame's own address
    else:
        assert htod == [(48, 64, 3)] * 12  # the uint8 frame as captured, nothing preprocessed on the host
        # kernel + engine + copy-out captured once per ring slot, each from its own device frame
        # buffer; 12 frames were 12 graph launches (the labels above prove each read its own frame)
        assert len(launches) == 3 and len({src for src, _ in launches}) == 3 and ex["kernel_in_graph"] is True
    assert ex["staged_frames"] == 0  # frames were captured straight into page-locked memory


@pytest.mark.needs("onnxruntime", "cv2")
def test_pycuda_frame_size_change_gets_a_new_plan(tmp_path, monkeypatch):
    import cv2

    folder = tmp_path / "imgs"
    folder.mkdir()
    colours = {"blue": (255, 0, 0), "green": (0, 255, 0), "red": (0, 0, 255)}
    want = []
    for i, (name, (w, h)) in enumerate([("red", (64, 48)), ("green", (64, 48)), ("blue", (33, 90)), ("red", (33, 90)),
                                        ("green", (200, 20)), ("blue", (64, 48))]):
        cv2.imwrite(str(folder / "{:02d}.png".format(i)), np.full((h, w, 3), colours[name], np.uint8))
        want.append((name, (w, h)))
    s, rows, launches, htod, _ = _run_double(tmp_path, monkeypatch, str(folder), "pycuda-pinned", False)
    assert [r["label"] for r in rows] == [n for n, _ in want]
    # discrete GPU: each size change re-captured the three slot graphs with that size's kernel plan
    groups = [(size, len(list(g))) for size, g in itertools.groupby(size for _, size in launches)]
    assert groups == [((64, 48), 3), ((33, 90), 3), ((200, 20), 3), ((64, 48), 3)]


@pytest.mark.needs("onnxruntime", "cv2")
def test_pycuda_without_compiler_falls_back_to_host_preprocessing(tmp_path, monkeypatch):
    seq = write_color_video(tmp_path / "c.avi", n=6)
    s, rows, launches, htod, prepares = _run_double(tmp_path, monkeypatch, str(tmp_path / "c.avi"), "pycuda-pinned",
                                                    False, compiler=False)
    assert [r["label"] for r in rows] == seq
    assert s.executor["preprocess"] == "host (capture thread)" and "unavailable" in s.executor["preprocess_note"]
    assert "host preprocessing on the capture thread" in s.executor["preprocess_note"]
    assert prepares[0] is not None and launches == []


# ---------------------------------------------------------------------------------------------
# the kernel itself (a later GPU session; CI has no GPU)
# ---------------------------------------------------------------------------------------------
def _cuda_cases():
    return [("rgb", False, "nchw", "float32"), ("bgr", True, "nhwc", "float16"), ("gray", False, "nchw", "uint8"),
            ("rgb", True, "nchw", "float16")]


@pytest.mark.needs("cuda", "cupy")
@pytest.mark.parametrize("color,keep,layout,dtype", _cuda_cases())
def test_cuda_kernel_cupy_matches_numpy_port(color, keep, layout, dtype):
    import torch

    from jetson_deploy.runtime.torch_preprocess import TorchKernelPreprocess

    spec = _spec(color, keep, layout, dtype)
    pre = TorchKernelPreprocess(spec, torch.device("cuda"))
    rs = np.random.RandomState(5)
    for h, w, c in ((720, 1280, 3), (97, 41, 3), (480, 640, 1), (160, 224, 4)):
        f = rs.randint(0, 256, (h, w, c), dtype=np.uint8)
        got = pre(torch.from_numpy(f).cuda())[0].cpu().numpy().astype(np.float32)
        want = numpy_kernel(f, make_plan(spec, f.shape, kernel_spec(spec))).astype(np.float32)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.needs("cuda", "pycuda.compiler")
def test_cuda_kernel_pycuda_matches_numpy_port():
    import pycuda.driver as drv

    from jetson_deploy.runtime.gpu_preprocess import launch_pycuda, pycuda_kernel
    from jetson_deploy.runtime.memory import make_context

    ctx = make_context(cuda=drv)
    try:
        for color, keep, layout, dtype in _cuda_cases():
            spec = _spec(color, keep, layout, dtype)
            f = np.random.RandomState(7).randint(0, 256, (720, 1280, 3), dtype=np.uint8)
            plan = make_plan(spec, f.shape, kernel_spec(spec))
            want = numpy_kernel(f, plan)
            src, dst = drv.mem_alloc(f.nbytes), drv.mem_alloc(want.nbytes)
            drv.memcpy_htod(src, f)
            s = drv.Stream()
            launch_pycuda(pycuda_kernel(plan.kspec, cuda=drv), plan, int(src), int(dst), s)
            s.synchronize()
            got = np.empty_like(want)
            drv.memcpy_dtoh(got, dst)
            np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=0, atol=1e-5)
    finally:
        ctx.pop()


@pytest.mark.needs("cuda", "pycuda.compiler")
def test_driver_graph_of_kernel_and_copy_out_on_real_cuda():
    """The TensorRT path's graph without torch: the kernel and a D2H copy captured through libcuda
    (cuStreamBeginCapture .. cuGraphInstantiateWithFlags) and relaunched per frame give the kernel's
    result for each new frame copied into the captured source buffer."""
    import pycuda.driver as drv

    from jetson_deploy.runtime.cuda_graph import capture_on_stream, driver
    from jetson_deploy.runtime.gpu_preprocess import launch_pycuda, pycuda_kernel
    from jetson_deploy.runtime.memory import make_context

    ctx = make_context(cuda=drv)
    try:
        assert driver() is not None
        spec = _spec("rgb", True, "nchw", "float16")
        rs = np.random.RandomState(11)
        frames = [rs.randint(0, 256, (720, 1280, 3), dtype=np.uint8) for _ in range(3)]
        plan = make_plan(spec, frames[0].shape, kernel_spec(spec))
        want0 = numpy_kernel(frames[0], plan)
        src, dst = drv.mem_alloc(frames[0].nbytes), drv.mem_alloc(want0.nbytes)
        host_in = drv.pagelocked_empty(frames[0].shape, np.uint8)
        host_out = drv.pagelocked_empty(want0.shape, want0.dtype)
        s = drv.Stream()
        fn = pycuda_kernel(plan.kspec, cuda=drv)

        def body():
            launch_pycuda(fn, plan, int(src), int(dst), s)
            drv.memcpy_dtoh_async(host_out, dst, s)

        launch = capture_on_stream(s.handle, body).launcher()
        for f in frames:
            host_in[...] = f
            drv.memcpy_htod_async(src, host_in, s)
            launch()
            s.synchronize()
            np.testing.assert_allclose(host_out.astype(np.float32), numpy_kernel(f, plan).astype(np.float32),
                                       rtol=0, atol=1e-5)
    finally:
        ctx.pop()


@pytest.mark.needs("cuda", "onnxruntime", "cv2")
@pytest.mark.parametrize("mapped_in", [False, True])
def test_torch_cuda_path_with_gpu_preprocessing_agrees_with_host(tmp_path, mapped_in):
    from jetson_deploy.runtime.session import run_pipeline

    bundle = make_bundle(tmp_path / "b", pt2=True)
    seq = write_color_video(tmp_path / "c.avi", n=12)
    s = run_pipeline(bundle, str(tmp_path / "c.avi"), "null://", options=RunOptions(backend="torch", device="cuda", mapped_in=mapped_in), outputs=OutputOptions(keep_results=True, metrics_interval=0))
    assert [r["label"] for r in s.results] == seq
    assert s.executor["mapped_in"] is mapped_in and s.executor["preprocess"]


def test_prepared_launch_passes_what_the_plain_call_passes():
    """pycuda's prepared call (struct-packed, prepared once) carries exactly the plain call's arguments."""
    import struct

    from jetson_deploy.runtime.gpu_preprocess import ARG_FORMAT, BLOCK, launch_pycuda

    class Fn:
        def __init__(self):
            self.prepares, self.calls, self.plain = [], [], []

        def prepare(self, fmt):
            self.prepares.append(fmt)
            self.arg_format = fmt

        def prepared_async_call(self, grid, block, stream, *args):
            self.calls.append((grid, block, stream, args))

        def __call__(self, *args, block=None, grid=None, stream=None):
            self.plain.append((grid, block, stream, args))

    plan = make_plan(_spec("bgr", keep=True, size=(224, 160)), (720, 1280, 3))
    fn = Fn()
    for _ in range(3):
        launch_pycuda(fn, plan, 0x7f0000001000, 0x7f0000002000, "stream")
    assert fn.prepares == [ARG_FORMAT] and len(fn.calls) == 3 and not fn.plain
    grid, block, stream, args = fn.calls[-1]
    assert (grid, block, stream) == (plan.grid, BLOCK, "stream")
    struct.pack(ARG_FORMAT, *args)  # the values fit the C types
    plain = plan.args(0x7f0000001000, 0x7f0000002000)
    assert len(args) == len(plain) == len(ARG_FORMAT)
    np.testing.assert_array_equal(np.array(args[:2], np.uint64), np.array(plain[:2], np.uint64))
    for a, p, t in zip(args[2:], plain[2:], ARG_FORMAT[2:]):
        assert (np.float32(a) == p) if t == "f" else (a == int(p) and isinstance(a, int))
    fn2 = types.SimpleNamespace(plain=[])  # a stand-in without prepared calls gets the plain call
    launch_pycuda(lambda *a, **k: fn2.plain.append((k["grid"], a)), plan, 1, 2, None)
    assert fn2.plain[0][0] == plan.grid and len(fn2.plain[0][1]) == len(ARG_FORMAT)


@pytest.mark.needs("onnxruntime", "cv2")
def test_pycuda_memory_from_the_cli_makes_its_own_context(tmp_path, monkeypatch):
    """`bench/run --memory pycuda-pinned` from the CLI: no context is current until the runtime makes one
    (on the H200 this was 'explicit_context_dependent failed: invalid device context')."""
    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.runtime.backends import create_engine
    from jetson_deploy.runtime.session import run_pipeline

    drv = pycuda_double.install(monkeypatch, integrated=False)
    install_compiler(monkeypatch, [])
    seq = write_color_video(tmp_path / "c.avi", n=6, w=64, h=48)
    bundle = make_bundle(tmp_path / "b")
    assert drv.Context.get_current() is None
    eng = PointerEngine(create_engine(open_bundle(bundle), RunOptions(backend="onnxruntime")))
    s = run_pipeline(bundle, str(tmp_path / "c.avi"), str(tmp_path / "p.jsonl"), engine=eng, options=RunOptions(memory="pycuda-pinned"))
    assert [json.loads(x)["label"] for x in (tmp_path / "p.jsonl").read_text().splitlines()] == seq
    assert s.executor["executor"] == "pycuda" and drv.Context.get_current() is not None


@pytest.mark.needs("onnx", "onnxruntime")
def test_kernels_compile_once_per_context_whatever_wrapper_get_current_returns(tmp_path, monkeypatch):
    """pycuda hands out a new ``Context`` wrapper from each ``get_current()`` for a context not pushed
    from Python, equal to the others but neither the same object nor (for another pycuda context
    object of the same CUcontext) the same hash: the compiled kernels are found by the context's
    handle, so many executors on one context cost one compile of each kernel (an nvcc run, ~0.4 s)."""
    from doubles import tensorrt_double
    from support.runtime import many_class_onnx_bytes, spec_dict

    from jetson_deploy.runtime.backends.tensorrt import TensorRTEngine
    from jetson_deploy.runtime.executors.pycuda_kernel import PycudaGpuExecutor
    from jetson_deploy.runtime.gpu_preprocess import _COMPILED
    from jetson_deploy.runtime.memory import make_context
    from jetson_deploy.spec import load_spec
    from jetson_deploy.trt import build as tb

    drv = pycuda_double.install(monkeypatch, integrated=False)
    tensorrt_double.install(monkeypatch, "10.x")
    compiles = []
    install_compiler(monkeypatch, [], compiles)
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(many_class_onnx_bytes(100))
    spec = load_spec(dict(spec_dict(labels=["c{}".format(i) for i in range(100)])))
    ctx = make_context(cuda=drv)
    try:
        a, b = drv.Context.get_current(), drv.Context.get_current()
        assert a == b and a is not b  # fresh, equal wrappers
        executors = []
        for _ in range(3):
            eng = TensorRTEngine(tb.build_engine(onnx_path, "fp32")).activate()
            executors.append(PycudaGpuExecutor(eng, spec, cuda=drv, graph=False))
        size = len(_COMPILED)
        again = drv.Device(0).retain_primary_context()  # another pycuda context object, the same CUcontext
        again.push()
        try:
            assert again == a and hash(again) != hash(a)
            eng = TensorRTEngine(tb.build_engine(onnx_path, "fp32")).activate()
            executors.append(PycudaGpuExecutor(eng, spec, cuda=drv, graph=False))
        finally:
            drv.Context.pop()
    finally:
        ctx.pop()
    assert all(ex.reduce is not None for ex in executors)  # each has both kernels
    assert sorted(compiles) == ["jd_preprocess", "jd_softmax_topk"]  # one compile each, for four executors
    assert len(_COMPILED) == size
