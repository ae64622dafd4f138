"""convert with TensorRT present: engines in the bundle, against the TensorRT double (8.2, 8.5, 8.6, 10.x)."""
import logging
from pathlib import Path

import pytest

from support import optional_module
from click.testing import CliRunner

pytestmark = pytest.mark.needs("torch", "onnx", "onnxruntime")
torch = optional_module("torch")

from support.convert import assert_checksums, load_manifest, model_ref, spec_file  # noqa: E402
from doubles import tensorrt_double as trtd  # noqa: E402
from jetson_deploy.cli import cli  # noqa: E402
from jetson_deploy.trt import build as tb  # noqa: E402
from jetson_deploy.convert.pipeline import convert  # noqa: E402
from jetson_deploy.errors import BadInput, MissingDependency  # noqa: E402

VERSIONS = {"8.2": "8.2.1", "8.5": "8.5.2", "8.6": "8.6.2", "10.x": "10.3.0"}


@pytest.fixture
def orin(monkeypatch):
    """Pretend the GPU is an Orin (SM 8.7)."""
    monkeypatch.setattr(tb, "_detect_sm", lambda: 87)


@pytest.mark.parametrize("gen", trtd.GENERATIONS)
def test_engine_built_for_each_generation(tmp_path: Path, monkeypatch, orin, gen: str) -> None:
    trt = trtd.install(monkeypatch, gen)
    spec_path = spec_file(tmp_path, "residual_cnn")
    res = convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", precision="fp16", build_engine="auto", workspace_mb=256)
    rel = "engines/{}_sm87_fp16.engine".format(VERSIONS[gen])
    assert res.engine_built is True and res.engines == [rel]
    assert res.engine_note == "engine built here: " + rel
    assert_checksums(tmp_path / "b")
    man = load_manifest(tmp_path / "b")
    art = [a for a in man["artifacts"] if a["kind"] == "engine"]
    assert len(art) == 1 and art[0]["path"] == rel
    assert art[0]["target"]["sm"] == 87 and art[0]["target"]["precision"] == "fp16"
    assert man["conversion"]["engine"]["built"] is True
    assert man["conversion"]["build"]["tensorrt"] == trt.__version__
    plan = trtd.read_plan((tmp_path / "b" / rel).read_bytes())
    assert plan["flags"] == ["FP16"] and plan["trt_version"] == trt.__version__
    assert plan["workspace"] == 256 << 20
    assert plan["inputs"] == [{"dtype": "FLOAT", "name": "input", "shape": [1, 3, 32, 32]}]
    assert plan["profiles"] == []


def test_engine_with_dynamic_batch_has_a_profile(tmp_path: Path, monkeypatch, orin, caplog) -> None:
    trtd.install(monkeypatch, "10.x")
    monkeypatch.setattr(logging.getLogger("jetson_deploy"), "propagate", True)  # a CLI run earlier turns it off
    spec_path = spec_file(tmp_path, "mobilenet_tiny")
    with caplog.at_level("INFO", logger="jetson_deploy.convert.engine_step"):
        res = convert(model_ref("mobilenet_tiny"), spec_path, tmp_path / "b", precision="fp16", dynamic_batch=True, build_engine=True)
    assert "building a TensorRT 10.3.0.30 fp16 engine from model.onnx" in caplog.messages
    plan = trtd.read_plan((tmp_path / "b" / res.engines[0]).read_bytes())
    assert plan["profiles"] == [{"input": [[1, 3, 64, 64], [1, 3, 64, 64], [8, 3, 64, 64]]}]
    assert plan["inputs"][0]["shape"] == [-1, 3, 64, 64]
    assert load_manifest(tmp_path / "b")["conversion"]["build"]["profiles"] == plan["profiles"]


def test_no_build_engine_with_tensorrt_present(tmp_path: Path, monkeypatch, orin) -> None:
    trtd.install(monkeypatch, "8.6")
    spec_path = spec_file(tmp_path, "residual_cnn")
    res = convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", build_engine=False)
    assert res.engine_built is False and res.engines == []
    assert "device at first load" in res.engine_note
    assert not any(a["kind"] == "engine" for a in load_manifest(tmp_path / "b")["artifacts"])


def test_without_tensorrt_auto_says_device_builds(tmp_path: Path, monkeypatch) -> None:
    trtd.uninstall(monkeypatch)
    spec_path = spec_file(tmp_path, "residual_cnn")
    res = convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", precision="fp16")
    assert res.engine_built is False
    assert res.engine_note == "TensorRT is not installed here: engines will be built on the device at first load"
    with pytest.raises(BadInput, match="--build-engine needs TensorRT, which is not installed here"):
        convert(model_ref("residual_cnn"), spec_path, tmp_path / "c", precision="fp16", build_engine=True)


@pytest.mark.parametrize("gen", ["8.2", "10.x"])
def test_unsupported_onnx_node_is_a_clear_error(tmp_path: Path, monkeypatch, orin, gen: str) -> None:
    trtd.install(monkeypatch, gen)
    spec_path = spec_file(tmp_path, "with_unique")
    res = CliRunner().invoke(cli, ["convert", model_ref("with_unique"), "--spec", str(spec_path), "-o", str(tmp_path / "b"), "--build-engine"])
    assert res.exit_code == 2, res.output
    err = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(err) == 1, res.output
    assert "TensorRT's ONNX parser failed at node '/Unique' (op Unique)" in err[0], err[0]
    assert "has no importer for this op" in err[0]
    assert not (tmp_path / "b").exists()


def test_folded_preprocessing_needs_trt_85(tmp_path: Path, monkeypatch, orin) -> None:
    trtd.install(monkeypatch, "8.2")
    spec_path = spec_file(tmp_path, "residual_cnn")
    with pytest.raises(BadInput, match=r"needs TensorRT >= 8.5 \(uint8 network input from --fold-preprocess\) but TensorRT 8.2.1.8"):
        convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", precision="fp16", fold_preprocess=True, build_engine=True)
    trtd.install(monkeypatch, "8.5")
    res = convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", precision="fp16", fold_preprocess=True, build_engine=True)
    assert res.engines == ["engines/8.5.2_sm87_fp16.engine"]


def test_torch2trt_missing_is_exit_2_with_install_hint(tmp_path: Path, monkeypatch, orin) -> None:
    trtd.install(monkeypatch, "8.6")
    from doubles import torch2trt_double as t2d

    t2d.uninstall(monkeypatch)
    spec_path = spec_file(tmp_path, "residual_cnn")
    with pytest.raises(MissingDependency, match=r"torch2trt is needed for --converter torch2trt.*git clone https://github.com/NVIDIA-AI-IOT/torch2trt"):
        convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", converter="torch2trt", precision="fp16")


# ---- --converter torch2trt ----------------------------------------------------------------------
@pytest.mark.parametrize("gen,legacy", [("8.2", True), ("10.x", False)])
def test_torch2trt_engine_in_the_bundle(tmp_path: Path, monkeypatch, orin, gen: str, legacy: bool) -> None:
    from doubles import torch2trt_double as t2d

    trt = trtd.install(monkeypatch, gen)
    t2 = t2d.install(monkeypatch, legacy_signature=legacy)
    spec_path = spec_file(tmp_path, "tiny_detector")
    res = convert(model_ref("tiny_detector"), spec_path, tmp_path / "b", precision="fp16", converter="torch2trt")
    rel = "engines/{}_sm87_fp16.engine".format(VERSIONS[gen])
    assert res.engines == [rel] and res.engine_note == "engine built here with torch2trt: " + rel
    man = load_manifest(tmp_path / "b")
    assert man["conversion"]["converter"] == "torch2trt" and man["conversion"]["build"]["converter"] == "torch2trt"
    assert man["conversion"]["parity"]["passed"] is True  # the ONNX in the bundle is still checked
    assert_checksums(tmp_path / "b")
    call = t2._double.calls[-1]
    assert call["fp16_mode"] is True and call["int8_mode"] is False
    assert call["input_names"] == ["input"] and call["output_names"] == ["boxes", "scores", "objectness"]
    plan = trtd.read_plan((tmp_path / "b" / rel).read_bytes())
    assert "FP16" in plan["flags"] and plan["trt_version"] == trt.__version__
    assert [o["name"] for o in plan["outputs"]] == ["boxes", "scores", "objectness"]


def test_torch2trt_rejects_onnx_models_and_folding(tmp_path: Path, monkeypatch, orin) -> None:
    from doubles import torch2trt_double as t2d

    trtd.install(monkeypatch, "8.6")
    t2d.install(monkeypatch)
    spec_path = spec_file(tmp_path, "residual_cnn")
    torch.onnx.export(__import__("models").residual_cnn(), (torch.zeros(1, 3, 32, 32),), str(tmp_path / "r.onnx"), dynamo=False,
                      opset_version=13, input_names=["input"], output_names=["logits"])
    with pytest.raises(BadInput, match="--converter torch2trt needs a PyTorch model"):
        convert(str(tmp_path / "r.onnx"), spec_path, tmp_path / "b", precision="fp16", converter="torch2trt")
    with pytest.raises(BadInput, match="--fold-preprocess/--fold-postprocess work on the ONNX graph"):
        convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", converter="torch2trt", fold_preprocess=True)


def test_dla_core_and_timing_cache_reach_the_builder(tmp_path: Path, monkeypatch, orin) -> None:
    trtd.install(monkeypatch, "8.5", num_dla_cores=2)
    spec_path = spec_file(tmp_path, "mobilenet_tiny")
    cache = tmp_path / "timing.cache"
    res = convert(model_ref("mobilenet_tiny"), spec_path, tmp_path / "b", precision="fp16", dla_core=1, timing_cache=cache, build_engine=True)
    plan = trtd.read_plan((tmp_path / "b" / res.engines[0]).read_bytes())
    assert plan["dla_core"] == 1 and plan["device"] == "DLA"
    assert cache.is_file() and cache.stat().st_size > 0  # written back for the next build
    art = [a for a in load_manifest(tmp_path / "b")["artifacts"] if a["kind"] == "engine"][0]
    assert art["target"]["dla_core"] == 1
    with pytest.raises(BadInput, match="--dla-core/--timing-cache apply to engines built here"):
        convert(model_ref("mobilenet_tiny"), spec_path, tmp_path / "c", precision="fp16", dla_core=0, build_engine=False)


def test_packed_bundle_output(tmp_path: Path, monkeypatch) -> None:
    trtd.uninstall(monkeypatch)
    spec_path = spec_file(tmp_path, "residual_cnn")
    res = convert(model_ref("residual_cnn"), spec_path, tmp_path / "net-1.0.0.jdb", version="1.0.0")
    assert res.bundle == tmp_path / "net-1.0.0.jdb" and res.bundle.is_file()
    from jetson_deploy.bundle import open_bundle

    b = open_bundle(res.bundle)  # verifies every artifact against the manifest
    assert b.manifest["version"] == "1.0.0" and b.manifest["conversion"]["parity"]["passed"] is True
    assert not any(p.name.startswith("jetson-deploy-convert-") for p in tmp_path.iterdir())
