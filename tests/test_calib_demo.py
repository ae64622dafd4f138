"""Must show (issue 3) on the embedded demo model: a calibration set from generated
images and a generated video, INT8 top-1 agreement with FP32 >= 0.99 on held-out
frames measured in ONNX Runtime, and caches that parse back to the same ranges."""
from pathlib import Path

import pytest

from support import optional_module

pytestmark = pytest.mark.needs("cv2", "onnxruntime", "torch")
torch = optional_module("torch")

from jetson_deploy.calibration.quantize import compute_int8  # noqa: E402
from jetson_deploy.calibration.cache import read_cache  # noqa: E402
from jetson_deploy.calibration.dataset import build_calibration_set  # noqa: E402
from jetson_deploy.calibration.ranges import Ranges  # noqa: E402

import jetson_deploy.demo as demo


def _export(path: Path) -> Path:
    model = demo.load_model().eval()
    spec = demo.load_spec()
    x = torch.zeros((2,) + tuple(spec.shape[1:]))
    torch.onnx.export(
        model, (x,), str(path), input_names=[spec.input_name], output_names=list(spec.outputs),
        dynamic_axes={spec.input_name: {0: "n"}, spec.outputs[0]: {0: "n"}}, opset_version=17, dynamo=False,
    )
    return path


def test_demo_model_int8_agreement_on_held_out_frames(tmp_path: Path) -> None:
    demo.write_images(tmp_path / "imgs", 120, width=128, height=96, seed=31)
    demo.write_clip(tmp_path / "clip.avi", 150, width=128, height=96, seed=32)
    cs = build_calibration_set(
        [tmp_path / "imgs", tmp_path / "clip.avi"], demo.spec_path(), tmp_path / "calib", num=200, seed=0, holdout=0.3, progress=False
    )
    kinds = {s["kind"]: s["samples"] for s in cs.manifest["sources"]}
    assert kinds.get("image", 0) > 0 and kinds.get("video", 0) > 0
    assert cs.num_holdout >= 40
    onnx_path = _export(tmp_path / "demo.onnx")
    r = compute_int8(onnx_path, tmp_path / "calib", progress=False)
    a = r.agreement
    assert a["on"] == "holdout" and a["samples"] == cs.num_holdout
    assert a["metric"] == "top1_agreement" and a["value"] >= 0.99, a
    assert r.passed
    ranges = Ranges.load(r.ranges_path)
    for v, p in r.cache_paths.items():
        info, amax = read_cache(p)
        assert info["tensorrt"] == v
        assert amax.keys() == ranges.amax().keys()
        for k, want in ranges.amax().items():
            assert amax[k] == pytest.approx(want, rel=1e-6)
