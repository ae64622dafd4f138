"""``jetson-deploy selftest``: exercise the real device path and say what works.

Run on a Jetson after installing: it detects the platform, imports TensorRT,
makes a pycuda context with MAP_HOST, checks a mapped pinned allocation and its
device pointer, builds a tiny engine from an embedded ONNX model, runs it and
compares the output with a reference (ONNX Runtime when installed, else numpy),
drives a 1280x720 frame through the GPU frame path ``run`` uses (fused preprocessing
kernel, engine, copy-out; CUDA graphs where TensorRT 8.5+ allows), and opens a camera
when asked.  Every check ends PASS, FAIL or SKIP with a reason;
nothing raises a traceback at the user.  A check whose prerequisite did not pass
is skipped, naming the prerequisite.

A selftest passes only on what it proved: the report ends with what was proven and what was
not.  On a Jetson (or with ``require=("tensorrt",)``) a TensorRT this Python cannot import is a
FAIL, not a SKIP: a venv made without ``--system-site-packages`` would otherwise "pass" having
built nothing.
"""
import base64
import importlib
import importlib.util
import logging
import os
import stat
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

log = logging.getLogger(__name__)

from ._files import is_utf8_path

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"

# The selftest model, serialized once (onnx.helper, opset 13, IR 7: every TensorRT from
# 8.2 parses it).  Used when the onnx package is absent; _tiny_onnx_bytes() makes the
# same graph at run time when it is present (a test checks they agree).
# input [1,3,8,8] -> Conv 1x1 (4) -> Relu -> GlobalAveragePool -> Flatten -> Gemm (3) -> output [1,3]
EMBEDDED_ONNX_B64 = (
    "CAcSFmpldHNvbi1kZXBsb3ktc2VsZnRlc3QaATE6uAMKIQoFaW5wdXQKAncxCgJiMRIEY29udhoEY29udiIEQ29udgoYCgRjb252EgRyZWx1"
    "GgRyZWx1IgRSZWx1CiMKBHJlbHUSA2dhcBoDZ2FwIhFHbG9iYWxBdmVyYWdlUG9vbAoqCgNnYXASBGZsYXQaB2ZsYXR0ZW4iB0ZsYXR0ZW4q"
    "CwoEYXhpcxgBoAECCi8KBGZsYXQKAncyCgJiMhIGb3V0cHV0GgJmYyIER2VtbSoNCgZ0cmFuc0IYAaABAhIIc2VsZnRlc3QqQAgECAMIAQgB"
    "EAFCAncxSjAAAAC/AACAvgAAAAAAAIA+AAAAPwAAAL8AAIC+AAAAAAAAgD4AAAA/AAAAvwAAgL4qGggEEAFCAmIxShDNzMw9zcxMvs3MTD0A"
    "AAAAKjwIAwgEEAFCAncySjCamRm/zczMvs3MTL4AAAAAzcxMPs3MzD6amRk/mpkZv83MzL7NzEy+AAAAAM3MTD4qFggDEAFCAmIySgwAAAA/"
    "AAAAvwAAgD5aHwoFaW5wdXQSFgoUCAESEAoCCAEKAggDCgIICAoCCAhiGAoGb3V0cHV0Eg4KDAgBEggKAggBCgIIA0IECgAQDQ=="
)
INPUT_SHAPE = (1, 3, 8, 8)


def _weights():
    w1 = ((np.arange(12, dtype=np.float32).reshape(4, 3) % 5) - 2.0) * 0.25
    b1 = np.array([0.1, -0.2, 0.05, 0.0], np.float32)
    w2 = ((np.arange(12, dtype=np.float32).reshape(3, 4) % 7) - 3.0) * 0.2
    b2 = np.array([0.5, -0.5, 0.25], np.float32)
    return w1, b1, w2, b2


def _tiny_onnx_bytes() -> bytes:
    """The selftest model built with onnx.helper (needs onnx)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1, b1, w2, b2 = _weights()
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["conv"], name="conv"),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "w2", "b2"], ["output"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "selftest", [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(INPUT_SHAPE))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(w1.reshape(4, 3, 1, 1), "w1"), numpy_helper.from_array(b1, "b1"),
         numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="jetson-deploy-selftest",
                              producer_version="1")
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString()


def selftest_onnx_bytes() -> bytes:
    if importlib.util.find_spec("onnx") is not None:
        try:
            return _tiny_onnx_bytes()
        except Exception:  # noqa: BLE001 -- an old/broken onnx: the shipped bytes are the same model
            pass
    return base64.b64decode(EMBEDDED_ONNX_B64)


def selftest_input() -> "np.ndarray":
    return (np.sin(np.arange(int(np.prod(INPUT_SHAPE)), dtype=np.float32) * 0.37) * 2.0).reshape(INPUT_SHAPE)


def numpy_reference(x: "np.ndarray") -> "np.ndarray":
    w1, b1, w2, b2 = _weights()
    conv = np.einsum("oc,nchw->nohw", w1, x) + b1[None, :, None, None]
    pooled = np.maximum(conv, 0.0).mean(axis=(2, 3))
    return (pooled @ w2.T + b2).astype(np.float32)


#: the selftest model behind the frame path check: a 1280x720 BGR frame -> 8x8 RGB, (x/255-0.5)/0.25
SELFTEST_SPEC = {"task": "classify", "input": {"name": "input", "shape": list(INPUT_SHAPE), "dtype": "float32", "color": "rgb"},
                 "preprocess": {"resize": [8, 8], "keep_aspect": False, "scale": 1 / 255.0, "mean": [0.5, 0.5, 0.5],
                                "std": [0.25, 0.25, 0.25]},
                 "outputs": ["output"], "labels": ["a", "b", "c"]}
FRAME_PATH_FRAMES = 60
#: What ``--require`` can make mandatory (missing -> FAIL instead of SKIP).
REQUIRABLE = ("tensorrt", "pycuda")
#: What each check proves when it passes (the summary's "proven"); the platform check proves nothing.
PROVES = {"tensorrt": "TensorRT importable", "cuda context": "a CUDA context with MAP_HOST",
          "mapped memory": "mapped (zero-copy) pinned memory", "engine build": "a TensorRT engine build",
          "engine run": "the engine's output against a reference", "frame path": "the GPU frame path run uses",
          "camera": "a camera frame"}


def selftest_frame() -> "np.ndarray":
    """A 1280x720 BGR frame, each channel with its own structure and level (so a colour-order,
    layout or geometry slip changes the output)."""
    yy, xx = np.mgrid[0:720, 0:1280]
    return np.stack([(xx * 255) // 1279, (yy * 127) // 719, 230 - (xx + yy) % 40], axis=2).astype(np.uint8)


@dataclass
class Check:
    name: str
    status: str
    detail: str
    seconds: float = 0.0


def _one_line(exc: "BaseException") -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return "{}: {}".format(type(exc).__name__, text)[:300] if text else type(exc).__name__


class _Skip(Exception):
    pass


class SelfTest:
    """Runs the checks in order; results in ``checks``."""

    def __init__(self, camera: "Optional[str]" = None, root: str = "/", precision: str = "auto",
                 require: "Sequence[str]" = ()) -> None:
        self.camera = camera
        self.require = tuple(require)
        self.jetson: "Optional[str]" = None
        self.root = root
        self.precision = precision
        self.checks: "List[Check]" = []
        self.trt: Any = None
        self.cuda: Any = None
        self.ctx: Any = None
        self.plan: "Optional[bytes]" = None
        self.built_precision = ""
        self.sm: "Optional[int]" = None

    # ---- plumbing -----------------------------------------------------------------------
    def _status(self, name: str) -> "Optional[str]":
        for c in self.checks:
            if c.name == name:
                return c.status
        return None

    def _need(self, *names: str) -> None:
        for n in names:
            if self._status(n) != PASS:
                why = {SKIP: "was skipped", FAIL: "failed"}.get(self._status(n) or "", "did not run")
                raise _Skip("needs {}, which {}".format(n, why))

    def _run(self, name: str, fn: "Callable[[], str]") -> "Check":
        t0 = time.monotonic()
        try:
            detail = fn()
            status = PASS
        except _Skip as s:
            status, detail = SKIP, str(s)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 -- report, never traceback (a module may sys.exit)
            status, detail = FAIL, _one_line(exc)
        check = Check(name, status, detail, round(time.monotonic() - t0, 3))
        self.checks.append(check)
        log.info("%s: %s", name, status)  # progress, one line a check (the CLI prints it on stderr)
        return check

    # ---- checks ---------------------------------------------------------------------------
    def check_platform(self) -> str:
        from .machine import NANO_NOTE, probe, sm_for_model

        info = probe(self.root, with_gpu=False)
        j = info["jetson"]
        if j["model"]:
            self.jetson = j["model"]
            self.sm = sm_for_model(j["model"])
            note = "; " + NANO_NOTE if self.sm == 53 else ""
            return "{} (L4T {}, JetPack {}){}".format(j["model"], j["l4t"] or "?", j["jetpack"] or "unknown", note)
        return "not a Jetson ({}, Python {})".format(info["machine"], info["python"]["version"])

    def _missing(self, what: str, why: str) -> "Exception":
        """A missing piece: FAIL on a Jetson or when required, else SKIP (``why``)."""
        if self.jetson or what in self.require:
            where = "on this {}".format(self.jetson) if self.jetson else "(--require {})".format(what)
            return RuntimeError("{} not installed {}: {}".format(_NAMES[what], where, _venv_hint(what)))
        return _Skip(why)

    def check_tensorrt(self) -> str:
        if importlib.util.find_spec("tensorrt") is None:
            raise self._missing("tensorrt", "TensorRT not installed (it ships with JetPack on a Jetson)")
        from .trt.compat import features

        self.trt = importlib.import_module("tensorrt")  # a broken install raises here: FAIL with the reason
        f = features(self.trt)
        api = "tensor-name API, execute_async_v3" if f.execute_async_v3 else "binding API, execute_async_v2"
        return "TensorRT {} ({})".format(f.version_string, api)

    def check_cuda_context(self) -> str:
        if importlib.util.find_spec("pycuda") is None:
            raise self._missing("pycuda", "pycuda not installed (pip install pycuda)")
        cuda = importlib.import_module("pycuda.driver")
        cuda.init()
        if cuda.Device.count() < 1:
            raise RuntimeError("no CUDA device found")
        dev = cuda.Device(0)
        self.ctx = dev.make_context(cuda.ctx_flags.MAP_HOST)
        self.cuda = cuda
        major, minor = dev.compute_capability()
        integrated = bool(dev.get_attribute(cuda.device_attribute.INTEGRATED))
        return "{} (SM {}.{}, {}), context with MAP_HOST".format(dev.name(), major, minor, "integrated" if integrated else "discrete")

    def check_mapped_memory(self) -> str:
        self._need("cuda context")
        cuda = self.cuda
        host = cuda.pagelocked_empty((1024,), np.float32, mem_flags=cuda.host_alloc_flags.DEVICEMAP)
        ptr = int(host.base.get_device_pointer())
        if not ptr:
            raise RuntimeError("mapped allocation has a null device pointer")
        host[:] = np.arange(1024, dtype=np.float32)
        back = np.empty_like(host)
        cuda.memcpy_dtoh(back, ptr)  # read through the device pointer
        if not np.array_equal(back, host):
            raise RuntimeError("reading the mapped buffer through its device pointer gave different data")
        return "4 KiB mapped pinned buffer, device pointer 0x{:x} reads back what the host wrote".format(ptr)

    def check_build(self) -> str:
        self._need("tensorrt")
        from .trt.build import build_engine

        from .trt.logger import process_logger

        builder = self.trt.Builder(process_logger(self.trt))  # the one logger (TensorRT < 8.4.1 keeps only one)
        prec = self.precision
        if self.sm == 53 and prec in ("auto", "int8"):
            prec = "fp16"  # the Nano: FP16 is its fast path, INT8 is not (no DP4A on SM 5.3)
        elif prec == "auto":
            prec = "fp16" if getattr(builder, "platform_has_fast_fp16", False) else "fp32"
        with tempfile.TemporaryDirectory(prefix="jd-selftest-") as tmp:
            path = Path(tmp) / "selftest.onnx"
            path.write_bytes(selftest_onnx_bytes())
            t0 = time.monotonic()
            self.plan = build_engine(path, prec, workspace_mb=64)
            took = time.monotonic() - t0
        self.built_precision = prec
        return "{} engine from the embedded ONNX model, {:.1f} KiB in {:.1f} s".format(prec, len(self.plan) / 1024.0, took)

    def check_run(self) -> str:
        self._need("engine build")
        if self.cuda is None and importlib.util.find_spec("torch") is None:
            raise _Skip("needs pycuda (or torch with CUDA) for device buffers")
        from .runtime.backends.tensorrt import TensorRTEngine

        x = selftest_input()
        with TensorRTEngine(self.plan) as eng:
            got = eng.infer({"input": x})["output"]
        ref, what = numpy_reference(x), "numpy"
        if importlib.util.find_spec("onnxruntime") is not None:
            import onnxruntime as ort

            sess = ort.InferenceSession(selftest_onnx_bytes(), providers=["CPUExecutionProvider"])
            ref, what = sess.run(["output"], {"input": x})[0], "ONNX Runtime"
        diff = float(np.abs(got - ref).max())
        tol = 2e-2 if self.built_precision == "fp16" else 1e-4
        if not np.isfinite(diff) or diff > tol:
            raise RuntimeError("output differs from the {} reference by {:.3g} (tolerance {:g}): {} vs {}".format(
                what, diff, tol, np.round(got.ravel(), 4).tolist(), np.round(ref.ravel(), 4).tolist()))
        return "output matches the {} reference (max |diff| {:.2g}, tolerance {:g})".format(what, diff, tol)

    def check_frame_path(self) -> str:
        """What ``run`` does per frame on this board, through the same run session: a 1280x720
        uint8 frame in page-locked memory (mapped on a Jetson) -> the fused preprocessing kernel ->
        the engine -> copy-out (one CUDA graph per ring slot where TensorRT 8.5+ can be captured),
        compared with the kernel's numpy port + the reference model."""
        self._need("engine run")
        from .runtime.backends.tensorrt import TensorRTEngine
        from .runtime.executors.pycuda_kernel import gpu_preprocess_unavailable
        from .runtime.gpu_preprocess import make_plan, numpy_kernel
        from .runtime.options import RunOptions
        from .runtime.session import open_session
        from .media.sources import Frame
        from .spec import load_spec

        spec = load_spec(SELFTEST_SPEC)
        img = selftest_frame()
        with tempfile.TemporaryDirectory(prefix="jd-selftest-") as tmp:
            eng = TensorRTEngine(self.plan)
            why = gpu_preprocess_unavailable(spec, eng.activate(), cuda=self.cuda)
            if why:
                eng.deactivate()
                raise _Skip("the GPU preprocessing kernel does not compile here ({}); pycuda needs nvcc "
                            "(export PATH=/usr/local/cuda/bin:$PATH)".format(why))
            options = RunOptions(backend="tensorrt", memory="pycuda", gpu_preprocess="kernel")
            with _quiet("jetson_deploy.runtime"), open_session(_selftest_bundle(Path(tmp) / "selftest-bundle"), options, engine=eng,
                              cuda=self.cuda) as session:
                ex = session.executor
                got, per_frame = _drive(ex, img, Frame)
                desc = ex.describe()
                kspec = ex.kspec
        plan = make_plan(spec, img.shape, kspec)
        ref = numpy_reference(numpy_kernel(img, plan).astype(np.float32).reshape(INPUT_SHAPE))
        diff = float(np.abs(got.reshape(ref.shape) - ref).max())
        tol = 3e-2 if self.built_precision == "fp16" else 1e-3
        if not np.isfinite(diff) or diff > tol:
            raise RuntimeError("frame path output differs from the reference by {:.3g} (tolerance {:g})".format(diff, tol))
        how = ("kernel + engine + copy-out in one CUDA graph per slot" if desc.get("kernel_in_graph") else
               "kernel, then engine + copy-out in one CUDA graph per slot" if desc.get("cuda_graph") else
               "kernel + engine + copy-out, no CUDA graph ({})".format(desc.get("note", "not capturable here")))
        return "{} memory, {}; {} frames, {:.0f} us each; matches the reference (max |diff| {:.2g})".format(
            desc.get("memory"), how, FRAME_PATH_FRAMES, per_frame * 1e6, diff)

    def check_camera(self) -> str:
        if not self.camera:
            raise _Skip("not requested (--camera SRC, e.g. csi://0 or /dev/video0)")
        if importlib.util.find_spec("cv2") is None:
            raise _Skip("OpenCV not installed (apt install python3-opencv on a Jetson)")
        import cv2

        src = self.camera
        if src.startswith("csi://"):
            sensor = int(src[len("csi://"):] or 0)
            pipe = ("nvarguscamerasrc sensor-id={} ! video/x-raw(memory:NVMM), width=1280, height=720, framerate=30/1 ! "
                    "nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1").format(sensor)
            cap = cv2.VideoCapture(pipe, cv2.CAP_GSTREAMER)
        else:
            dev: Any = src[len("v4l2://"):] if src.startswith("v4l2://") else src
            if isinstance(dev, str) and dev.isdigit():
                dev = int(dev)
            elif not is_utf8_path(dev):  # OpenCV/FFmpeg segfault on such a name
                raise RuntimeError("camera {!r} is not valid UTF-8: rename it".format(src))
            elif isinstance(dev, str) and os.path.exists(dev) and not (stat.S_ISCHR(os.stat(dev).st_mode) or os.path.isfile(dev)):
                raise RuntimeError("{} is not a camera device or a video file (a pipe or socket would block)".format(src))
            cap = cv2.VideoCapture(dev)
        try:
            if not cap.isOpened():
                raise RuntimeError("cannot open camera {}".format(src))
            ok, frame = False, None
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and not ok:
                ok, frame = cap.read()
            if not ok or frame is None:
                raise RuntimeError("camera {} opened but gave no frame within 5 s".format(src))
            return "{}: {}x{} frame".format(src, frame.shape[1], frame.shape[0])
        finally:
            cap.release()

    # ---- all ----------------------------------------------------------------------------------
    def run(self) -> "List[Check]":
        self._run("platform", self.check_platform)
        self._run("tensorrt", self.check_tensorrt)
        self._run("cuda context", self.check_cuda_context)
        try:
            self._run("mapped memory", self.check_mapped_memory)
            self._run("engine build", self.check_build)
            self._run("engine run", self.check_run)
            self._run("frame path", self.check_frame_path)
        finally:
            if self.ctx is not None:
                try:
                    self.ctx.pop()
                except Exception:  # noqa: BLE001
                    pass
                self.ctx = None
        self._run("camera", self.check_camera)
        return self.checks


@contextmanager
def _quiet(name: str) -> "Iterator[None]":
    """The run session's own INFO lines (backend chosen, ...) stay out of the check table."""
    import logging

    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _selftest_bundle(dest: Path) -> Path:
    """The self-test model as a bundle (spec, ONNX, labels): what a run session opens."""
    import json

    from .bundle import BundleWriter

    with BundleWriter(dest, name="selftest", version="1.0.0") as w:
        w.add_bytes(selftest_onnx_bytes(), "model.onnx", kind="onnx")
        w.add_bytes(("\n".join(SELFTEST_SPEC["labels"]) + "\n").encode(), "labels.txt", kind="labels")
        w.manifest["spec"] = json.loads(json.dumps(SELFTEST_SPEC))
    return dest


def _drive(ex: Any, img: "np.ndarray", frame_cls: Any) -> "Tuple[np.ndarray, float]":
    """Push the frame through the executor's ring as the frame loop does; (last output, seconds a frame)."""
    ex.setup(img.shape)
    buf = ex.frame_allocator.empty(img.shape, np.uint8)
    np.copyto(buf.array, img)
    frame = frame_cls(buf.array, buffer=buf)
    t0 = time.perf_counter()
    for i in range(FRAME_PATH_FRAMES):
        slot = i % ex.depth
        if i >= ex.depth:
            ex.wait(slot)  # the ring's one wait: the oldest slot
        ex.submit(slot, frame)
    last = (FRAME_PATH_FRAMES - 1) % ex.depth
    for slot in range(ex.depth):
        ex.wait(slot)
    per_frame = (time.perf_counter() - t0) / FRAME_PATH_FRAMES
    return np.array(next(iter(ex.outputs(last).values())), copy=True), per_frame


_NAMES = {"tensorrt": "TensorRT", "pycuda": "pycuda"}


def _venv_hint(what: str) -> str:
    import sys

    if what == "tensorrt":
        return ("{} cannot import it; JetPack's TensorRT is a system package: make the venv with "
                "python3 -m venv --system-site-packages".format(sys.executable))
    return "install it into {}: pip install pycuda (with nvcc on PATH)".format(sys.executable)


def run_selftest(camera: "Optional[str]" = None, root: str = "/", precision: str = "auto",
                 require: "Sequence[str]" = ()) -> "Dict[str, Any]":
    """Run every check; ``{"checks": [...], "passed", "failed", "skipped", "ok", "proven", "not_proven"}``.

    ``require``: pieces (:data:`REQUIRABLE`) whose absence is a FAIL here (on a Jetson TensorRT and
    pycuda always are)."""
    bad = [r for r in require if r not in REQUIRABLE]
    if bad:
        from .errors import BadInput

        raise BadInput("--require {}: choose from {}".format(bad[0], ", ".join(REQUIRABLE)))
    checks = SelfTest(camera=camera, root=root, precision=precision, require=require).run()
    counts = {s: sum(1 for c in checks if c.status == s) for s in (PASS, FAIL, SKIP)}
    return {
        "checks": [asdict(c) for c in checks],
        "passed": counts[PASS],
        "failed": counts[FAIL],
        "skipped": counts[SKIP],
        "ok": counts[FAIL] == 0,
        "proven": [_proven(c) for c in checks if c.name in PROVES and c.status == PASS],
        "not_proven": [PROVES[c.name] for c in checks if c.name in PROVES and c.status != PASS],
    }


def _proven(c: "Check") -> str:
    """What a passed check proved, with the version or precision it names (``TensorRT 8.6.2 importable``)."""
    if c.name == "tensorrt":
        return c.detail.split(" (")[0] + " importable"
    if c.name == "engine build":
        return "a TensorRT engine build ({})".format(c.detail.split(" ")[0])
    return PROVES[c.name]


def summary_lines(report: "Dict[str, Any]") -> "List[str]":
    """``proven: ...`` and ``not proven: ...``: what a pass means here."""
    proven = report.get("proven") or []
    lines = ["proven: " + ("; ".join(proven) if proven else "nothing of the device path")]
    if report.get("not_proven"):
        lines.append("not proven: " + "; ".join(report["not_proven"]) + " (see the SKIP/FAIL reasons above)")
    return lines


def format_report(report: "Dict[str, Any]") -> str:
    """The table a person reads: CHECK, STATUS, DETAIL; what was proven; then the counts."""
    rows = [(c["name"], c["status"], c["detail"]) for c in report["checks"]]
    w = max(len("CHECK"), max(len(r[0]) for r in rows)) if rows else 5
    lines = ["{}  {}  {}".format("CHECK".ljust(w), "STATUS", "DETAIL")]
    for name, status, detail in rows:
        lines.append("{}  {}  {}".format(name.ljust(w), status.ljust(6), detail))
    lines.extend(summary_lines(report))
    lines.append("{} passed, {} failed, {} skipped".format(report["passed"], report["failed"], report["skipped"]))
    return "\n".join(lines)
