"""A calibration cache is read only by the exact TensorRT release that wrote it (major.minor.patch,
the header's NV_TENSORRT_VERSION): an 8.5.2 cache on 8.5.3 is refused in one line, not half-trusted."""
import pytest

pytestmark = pytest.mark.needs("onnx", "onnxruntime")

from doubles import onnx_models, tensorrt_double as trtd  # noqa: E402

from jetson_deploy.errors import BadInput  # noqa: E402
from jetson_deploy.trt import build as tb  # noqa: E402


@pytest.mark.parametrize("gen,device,cache,ok", [
    ("8.5", "8.5.3.1", "TRT-8502", False),   # same minor, another patch
    ("8.5", "8.5.2.2", "TRT-8502", True),
    ("8.6", "8.6.1.6", "TRT-8602", False),
    ("10.x", "10.3.0.30", "TRT-100301", False),
    ("10.x", "10.3.0.30", "TRT-100300", True),
])
def test_cache_header_must_name_this_exact_release(monkeypatch, tmp_path, gen, device, cache, ok):
    trtd.install(monkeypatch, gen, version=device)
    model = onnx_models.classifier(tmp_path / "model.onnx")
    path = tmp_path / "calib.cache"
    path.write_text(cache + "-EntropyCalibration2\ninput: 3c010a14\n")
    if ok:
        spec = trtd.read_plan(tb.build_engine(model, "int8", calib_cache=path))
        assert spec["int8"]["source"] == "cache"
        return
    with pytest.raises(BadInput, match=r"(?s)^calibration cache .*written for TensorRT .* \(header {}\) but this is "
                                       r"TensorRT {}".format(cache, device.replace(".", r"\."))):
        tb.build_engine(model, "int8", calib_cache=path)
