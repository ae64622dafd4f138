"""TensorRT versions compare as numbers, not text: TensorRT 10.x (JetPack 6.1/6.2) runs every bundle
an 8.x runs ("10.3" < "8.4" as strings would refuse them all)."""
import pytest

from jetson_deploy.bundle.opset import check_tensorrt_compat, compat_problem
from jetson_deploy.errors import BadInput


@pytest.mark.parametrize("opset", [11, 13, 17, 19, 20])
@pytest.mark.parametrize("trt", ["10.0.1", "10.3.0.30", "10.7"])
def test_tensorrt_10_runs_every_documented_opset(opset, trt):
    manifest = {"name": "m", "source": {"onnx_opset": opset}}
    assert compat_problem(manifest, trt) is None
    check_tensorrt_compat(manifest, trt)


def test_versions_compare_part_by_part():
    need_84 = {"name": "m", "requires": {"tensorrt_min": "8.4", "why": "ONNX opset 17"}}
    assert compat_problem(need_84, "8.10.0") is None  # 10 > 4, though "8.10" < "8.4" as text
    assert compat_problem(need_84, "9.0") is None
    with pytest.raises(BadInput, match=r"needs TensorRT >= 8\.4 .* this device has TensorRT 8\.2\.1"):
        check_tensorrt_compat(need_84, "8.2.1")
    need_10 = {"name": "m", "requires": {"tensorrt_min": "10.0", "why": "ONNX opset 20"}}
    assert compat_problem(need_10, "9.0.1") is not None and compat_problem(need_10, "10.0.0") is None


@pytest.mark.needs("onnx", "onnxruntime")
def test_bundle_engine_builds_an_opset_17_bundle_on_tensorrt_10(tmp_path, monkeypatch):
    """The journey: ``bundle engine`` on a JetPack 6 board (TensorRT 10.3, the double) builds."""
    from click.testing import CliRunner

    from doubles import onnx_models
    from doubles import tensorrt_double as td
    from jetson_deploy.bundle.opset import min_tensorrt_for_opset
    from jetson_deploy.bundle import BundleWriter
    from jetson_deploy.cli import cli
    from support.bundles import SPEC

    onnx = onnx_models.classifier(tmp_path / "m.onnx", hw=16, opset=17)
    with BundleWriter(tmp_path / "attn-0.1.0", name="attn", version="0.1.0", precision="fp16") as w:
        w.add_file(onnx, "model.onnx", kind="onnx")
        w.manifest["spec"] = dict(SPEC)
        w.manifest["source"] = {"opset": 17, "onnx_opset": 17, "exporter": "torchscript"}
        w.manifest["requires"] = {"tensorrt_min": min_tensorrt_for_opset(17), "why": "ONNX opset 17"}
    trt = td.install(monkeypatch, "10.x")
    r = CliRunner().invoke(cli, ["bundle", "engine", str(tmp_path / "attn-0.1.0"), "--sm", "87",
                                 "--cache-dir", str(tmp_path / "cache")])
    assert r.exit_code == 0 and "built" in r.output, r.output
    assert len(trt._double.builds) == 1
