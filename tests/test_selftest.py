"""``jetson-deploy selftest``: SKIPs with reasons on this machine, PASSes on the doubles, FAILs exit 1."""
import base64
import json

import numpy as np
import pytest

from support import cli_runner

from doubles import pycuda_double, tensorrt_double as trtd

from jetson_deploy.cli import cli
from jetson_deploy.selftest import EMBEDDED_ONNX_B64, numpy_reference, run_selftest, selftest_input


def _invoke(args):
    # stdout apart from the progress records on stderr (click < 8.2 mixes them by default)
    return cli_runner().invoke(cli, ["selftest"] + args, catch_exceptions=False)


def test_without_tensorrt_everything_skips_with_reasons(monkeypatch):
    trtd.uninstall(monkeypatch)
    pycuda_double.uninstall(monkeypatch)
    res = _invoke([])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "Traceback" not in out
    text = out
    assert "platform       PASS    not a Jetson" in text
    assert "tensorrt       SKIP    TensorRT not installed" in text
    assert "cuda context   SKIP    pycuda not installed" in text
    assert "engine build   SKIP    needs tensorrt, which was skipped" in text
    assert "engine run     SKIP    needs engine build, which was skipped" in text
    assert "frame path     SKIP    needs engine run, which was skipped" in text
    assert "camera         SKIP    not requested" in text
    assert out.rstrip().endswith("1 passed, 0 failed, 7 skipped")


@pytest.mark.needs("onnx", "onnxruntime")
@pytest.mark.parametrize("gen", ["8.2", "10.x"])
def test_all_device_checks_pass_on_the_doubles(monkeypatch, gen):
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    from doubles import cuda_driver_double
    from test_runtime_gpu_preprocess import install_compiler

    trt = trtd.install(monkeypatch, gen)
    cuda = pycuda_double.install(monkeypatch)
    driver = cuda_driver_double.install(monkeypatch)
    launches = []
    install_compiler(monkeypatch, launches)  # the kernel's numpy port standing in for nvcc's build
    res = _invoke(["--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)  # --json: stdout is one JSON object
    status = {c["name"]: (c["status"], c["detail"]) for c in rep["checks"]}
    assert status["tensorrt"] == ("PASS", "TensorRT {} ({})".format(
        trt.__version__, "binding API, execute_async_v2" if gen == "8.2" else "tensor-name API, execute_async_v3"))
    assert status["cuda context"] == ("PASS", "Orin (double) (SM 8.7, integrated), context with MAP_HOST")
    assert status["mapped memory"][0] == "PASS" and "reads back" in status["mapped memory"][1]
    assert status["engine build"][0] == "PASS" and status["engine build"][1].startswith("fp16 engine")
    assert status["engine run"][0] == "PASS" and "ONNX Runtime reference" in status["engine run"][1]
    frame = status["frame path"]
    assert frame[0] == "PASS" and frame[1].startswith("pycuda-mapped memory, ") and "matches the reference" in frame[1]
    if gen == "8.2":  # no execute_async_v3: no graphs, said why
        assert "no CUDA graph (CUDA graph capture unavailable" in frame[1] and driver.captures == 0
    else:  # the Orin double is integrated: the kernel reads the mapped frame, then the slot's graph
        assert "kernel, then engine + copy-out in one CUDA graph per slot" in frame[1] and driver.captures == 3
    assert len(launches) == 60 and all(size == (1280, 720) for _, size in launches)
    assert status["camera"][0] == "SKIP"
    assert (rep["passed"], rep["failed"], rep["skipped"], rep["ok"]) == (7, 0, 1, True)
    assert cuda._double.contexts[0].flags & cuda.ctx_flags.MAP_HOST
    assert cuda.Context.get_current() is None or cuda.Context.get_current().primary  # the selftest's context was popped


@pytest.mark.needs("onnxruntime")
def test_wrong_engine_output_fails_with_exit_1(monkeypatch):
    import onnxruntime  # noqa: F401
    trt = trtd.install(monkeypatch, "10.x")
    pycuda_double.install(monkeypatch)
    orig = trt.IExecutionContext._run

    def broken(self, addr, stream_handle=0):
        ok = orig(self, addr, stream_handle)
        out = addr["output"]

        def corrupt():  # a miscompiled engine, its kernel queued after the real one
            trtd.write_pointer(out, np.full((1, 3), 7.0, np.float32))

        if not pycuda_double.enqueue_on(stream_handle, corrupt):
            corrupt()
        return ok

    monkeypatch.setattr(trt.IExecutionContext, "_run", broken)
    res = _invoke([])
    assert res.exit_code == 1
    assert "engine run     FAIL    RuntimeError: output differs from the ONNX Runtime reference" in res.output
    assert res.output.rstrip().endswith("5 passed, 1 failed, 2 skipped")
    res = _invoke(["--json"])
    assert res.exit_code == 1 and json.loads(res.stdout)["ok"] is False


@pytest.mark.needs("cv2")
def test_camera_check(monkeypatch, tmp_path):
    import cv2
    trtd.uninstall(monkeypatch)
    pycuda_double.uninstall(monkeypatch)
    video = tmp_path / "cam.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (32, 24))
    for i in range(3):
        vw.write(np.full((24, 32, 3), 40 * i, np.uint8))
    vw.release()
    rep = run_selftest(camera=str(video))
    cam = rep["checks"][-1]
    assert (cam["name"], cam["status"]) == ("camera", "PASS") and cam["detail"].endswith("32x24 frame")
    res = _invoke(["--camera", str(tmp_path / "no-such-camera")])
    assert res.exit_code == 1
    assert "camera         FAIL    RuntimeError: cannot open camera" in res.output


def test_platform_on_a_jetson_root(monkeypatch, tmp_path):
    trtd.uninstall(monkeypatch)
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref\n")
    rep = run_selftest(root=str(tmp_path))
    assert rep["checks"][0] == {"name": "platform", "status": "PASS", "seconds": rep["checks"][0]["seconds"],
                                "detail": "NVIDIA Jetson AGX Orin Developer Kit (L4T 35.4.1, JetPack 5.1.2)"}


@pytest.mark.needs("onnx", "onnxruntime")
def test_embedded_model_matches_generator_and_reference():
    import onnx
    import onnxruntime as ort
    from jetson_deploy.selftest import _tiny_onnx_bytes

    shipped = base64.b64decode(EMBEDDED_ONNX_B64)
    assert onnx.load_from_string(shipped).graph == onnx.load_from_string(_tiny_onnx_bytes()).graph
    x = selftest_input()
    out = ort.InferenceSession(shipped, providers=["CPUExecutionProvider"]).run(["output"], {"input": x})[0]
    np.testing.assert_allclose(out, numpy_reference(x), rtol=1e-5, atol=1e-6)
    assert np.abs(out).max() > 0.1  # a reference that is not all zeros


@pytest.mark.needs("onnx")
@pytest.mark.parametrize("asked", ["auto", "int8"])
def test_on_a_nano_the_engine_rows_run_fp16(monkeypatch, tmp_path, asked):
    """SM 5.3 has fast FP16 and no fast INT8: selftest says so and builds FP16 even when INT8 is asked."""
    import onnx  # noqa: F401
    trtd.install(monkeypatch, "8.2")
    pycuda_double.install(monkeypatch)
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson Nano Developer Kit\x00")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref\n")
    rep = run_selftest(root=str(tmp_path), precision=asked)
    status = {c["name"]: (c["status"], c["detail"]) for c in rep["checks"]}
    assert status["platform"][0] == "PASS" and "JetPack 4.6.1" in status["platform"][1]
    assert "has fast FP16 and no fast INT8" in status["platform"][1]
    assert status["engine build"][0] == "PASS" and status["engine build"][1].startswith("fp16 engine")
    assert status["engine run"][0] == "PASS"


@pytest.mark.needs("onnx", "onnxruntime")
def test_frame_path_skips_with_the_fix_when_the_kernel_cannot_compile(monkeypatch):
    trtd.install(monkeypatch, "10.x")
    pycuda_double.install(monkeypatch)  # no pycuda.compiler (no nvcc on the board's PATH)
    rep = json.loads(_invoke(["--json"]).stdout)
    frame = {c["name"]: c for c in rep["checks"]}["frame path"]
    assert frame["status"] == "SKIP" and "does not compile here" in frame["detail"]
    assert "PATH=/usr/local/cuda/bin" in frame["detail"]


@pytest.mark.needs("onnx", "onnxruntime")
def test_frame_path_fails_when_the_kernel_writes_the_wrong_colour_order(monkeypatch):
    """The check compares with the kernel's specification: a kernel that swaps R and B is caught."""
    from test_runtime_gpu_preprocess import install_compiler

    from jetson_deploy.runtime import gpu_preprocess

    trtd.install(monkeypatch, "10.x")
    pycuda_double.install(monkeypatch)
    install_compiler(monkeypatch, [])
    real = gpu_preprocess.numpy_kernel
    monkeypatch.setattr("test_runtime_gpu_preprocess.numpy_kernel", lambda frame, p: real(frame[:, :, ::-1].copy(), p))
    rep = json.loads(_invoke(["--json"]).stdout)
    frame = {c["name"]: c for c in rep["checks"]}["frame path"]
    assert frame["status"] == "FAIL" and "differs from the reference" in frame["detail"] and rep["ok"] is False
