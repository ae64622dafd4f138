"""MODEL forms (file/module factory, TorchScript, .pt2, .onnx) and strict --weights loading."""
from pathlib import Path

import numpy as np
import pytest

from support import optional_module

pytestmark = pytest.mark.needs("torch", "onnxruntime")
torch = optional_module("torch")

from support.convert import frame, load_manifest, model_ref, ort_run, spec_file  # noqa: E402
from jetson_deploy.convert.pipeline import convert  # noqa: E402
from jetson_deploy.convert.load import load_model, parse_model_arg  # noqa: E402
from jetson_deploy.errors import BadInput  # noqa: E402
from jetson_deploy.preprocess import preprocess  # noqa: E402
from jetson_deploy.spec import load_spec  # noqa: E402

import models  # noqa: E402


def _x(spec_path: Path, seed: int = 3) -> "np.ndarray":
    spec = load_spec(spec_path)
    return preprocess(frame(spec.height, spec.width, seed=seed), spec)[None]


def _eager(module, x: "np.ndarray") -> "np.ndarray":
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def test_parse_model_arg_forms(tmp_path: Path) -> None:
    assert parse_model_arg("pkg.mod:make") == {"kind": "factory", "module": "pkg.mod", "factory": "make"}
    assert parse_model_arg("a/b.py:make") == {"kind": "factory", "file": "a/b.py", "factory": "make"}
    (tmp_path / "m.onnx").write_bytes(b"x")
    (tmp_path / "m.pt2").write_bytes(b"x")
    (tmp_path / "m.ts").write_bytes(b"x")
    assert parse_model_arg(str(tmp_path / "m.onnx"))["kind"] == "onnx"
    assert parse_model_arg(str(tmp_path / "m.pt2"))["kind"] == "exported-program"
    assert parse_model_arg(str(tmp_path / "m.ts"))["kind"] == "torchscript"
    with pytest.raises(BadInput, match="name the factory too"):
        parse_model_arg("net.py")
    with pytest.raises(BadInput, match="MODEL is empty"):
        parse_model_arg(" ")


def test_torchscript_model(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "mobilenet_tiny")
    m = models.mobilenet_tiny()
    ts = torch.jit.trace(m, torch.zeros(1, 3, 64, 64))
    ts.save(str(tmp_path / "net.ts"))
    convert(str(tmp_path / "net.ts"), spec_path, tmp_path / "b", build_engine=False)
    man = load_manifest(tmp_path / "b")
    assert man["source"]["format"] == "torchscript" and man["conversion"]["parity"]["passed"] is True
    assert man["name"] == "net"
    x = _x(spec_path)
    np.testing.assert_allclose(ort_run(tmp_path / "b" / "model.onnx", x)["logits"], _eager(m, x), rtol=1e-4, atol=1e-5)


def test_exported_program_model(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "tiny_unet")
    m = models.tiny_unet()
    ep = torch.export.export(m, (torch.zeros(1, 3, 32, 32),))
    torch.export.save(ep, str(tmp_path / "unet.pt2"))
    res = convert(str(tmp_path / "unet.pt2"), spec_path, tmp_path / "b", build_engine=False)
    man = load_manifest(tmp_path / "b")
    assert man["source"]["format"] == "exported-program"
    assert man["conversion"]["opset"] == 13 and man["conversion"]["exporter"] == "torchscript"
    assert res.parity["passed"] is True and res.parity["top1_agreement"] == 1.0
    x = _x(spec_path)
    np.testing.assert_allclose(ort_run(tmp_path / "b" / "model.onnx", x)["logits"], _eager(m, x), rtol=1e-4, atol=1e-4)


def test_onnx_model(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "residual_cnn")
    m = models.residual_cnn()
    torch.onnx.export(m, (torch.zeros(1, 3, 32, 32),), str(tmp_path / "r.onnx"), dynamo=False, opset_version=13,
                      input_names=["input"], output_names=["logits"])
    convert(str(tmp_path / "r.onnx"), spec_path, tmp_path / "b", build_engine=False)
    man = load_manifest(tmp_path / "b")
    assert man["source"]["format"] == "onnx" and man["conversion"]["opset"] == 13
    assert man["conversion"]["parity"]["passed"] is None and "no PyTorch reference" in man["conversion"]["parity"]["skipped"]
    x = _x(spec_path)
    np.testing.assert_allclose(ort_run(tmp_path / "b" / "model.onnx", x)["logits"], _eager(m, x), rtol=1e-4, atol=1e-5)


def test_onnx_model_names_must_match_spec(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "residual_cnn")
    torch.onnx.export(models.residual_cnn(), (torch.zeros(1, 3, 32, 32),), str(tmp_path / "r.onnx"), dynamo=False,
                      opset_version=13, input_names=["images"], output_names=["logits"])
    with pytest.raises(BadInput, match=r"names its input 'images' but the spec says input.name 'input': set input.name: images"):
        convert(str(tmp_path / "r.onnx"), spec_path, tmp_path / "b", build_engine=False)
    with pytest.raises(BadInput, match="--opset does not apply to an .onnx MODEL"):
        convert(str(tmp_path / "r.onnx"), spec_path, tmp_path / "b", opset=17, build_engine=False)


def test_onnx_model_output_selection(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "tiny_detector", outputs=["scores"])
    torch.onnx.export(models.tiny_detector(), (torch.zeros(1, 3, 64, 64),), str(tmp_path / "d.onnx"), dynamo=False,
                      opset_version=13, input_names=["input"], output_names=["boxes", "scores", "objectness"])
    res = convert(str(tmp_path / "d.onnx"), spec_path, tmp_path / "b", outputs=["scores"], build_engine=False)
    assert res.outputs_kept == ["scores"]
    assert any("outputs kept: scores; dropped: boxes, objectness" in m for m in res.messages)
    assert list(ort_run(tmp_path / "b" / "model.onnx", np.zeros((1, 3, 64, 64), np.float32))) == ["scores"]


def test_bad_torchscript_file_hints_at_state_dicts(tmp_path: Path) -> None:
    torch.save(models.residual_cnn().state_dict(), str(tmp_path / "weights.pt"))
    spec_path = spec_file(tmp_path, "residual_cnn")
    with pytest.raises(BadInput, match=r"cannot load .*weights.pt as TorchScript .*MODEL=file.py:factory --weights"):
        convert(str(tmp_path / "weights.pt"), spec_path, tmp_path / "b", build_engine=False)


# ---- --weights --------------------------------------------------------------------------------
def test_weights_are_loaded(tmp_path: Path) -> None:
    trained = models.residual_cnn()
    with torch.no_grad():
        for p in trained.parameters():
            p.mul_(0.5).add_(0.01)
    torch.save(trained.state_dict(), str(tmp_path / "w.pt"))
    spec_path = spec_file(tmp_path, "residual_cnn")
    convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", weights=tmp_path / "w.pt", build_engine=False)
    man = load_manifest(tmp_path / "b")
    import hashlib

    assert man["source"]["weights_sha256"] == hashlib.sha256((tmp_path / "w.pt").read_bytes()).hexdigest()
    x = _x(spec_path)
    got = ort_run(tmp_path / "b" / "model.onnx", x)["logits"]
    np.testing.assert_allclose(got, _eager(trained, x), rtol=1e-4, atol=1e-5)
    assert np.abs(got - _eager(models.residual_cnn(), x)).max() > 1e-3  # not the factory's own weights


def test_weights_checkpoint_and_dataparallel_prefix(tmp_path: Path) -> None:
    m = models.dataclass_outputs()
    state = {"module." + k: v for k, v in m.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, str(tmp_path / "ckpt.pth"))
    loaded = load_model(model_ref("dataclass_outputs"), weights=tmp_path / "ckpt.pth")
    assert any("stripped the 'module.' prefix" in n for n in loaded.notes)


def test_missing_weights_file(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "residual_cnn")
    with pytest.raises(BadInput, match=r"weights file .*nope.pt does not exist"):
        convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", weights=tmp_path / "nope.pt", build_engine=False)


def test_mismatched_weights_list_keys(tmp_path: Path) -> None:
    state = models.residual_cnn().state_dict()
    state.pop("fc.bias")
    state.pop("layer1.conv1.weight")
    state["head.extra"] = torch.zeros(3)
    state["fc.weight"] = torch.zeros(7, 64)
    torch.save(state, str(tmp_path / "bad.pt"))
    with pytest.raises(BadInput) as exc:
        load_model(model_ref("residual_cnn"), weights=tmp_path / "bad.pt")
    msg = str(exc.value)
    assert "do not fit the model" in msg
    assert "2 missing key(s): layer1.conv1.weight, fc.bias" in msg
    assert "1 unexpected key(s): head.extra" in msg
    assert "1 shape mismatch(es): fc.weight (file [7, 64] vs model [10, 64])" in msg
    assert "\n" not in msg


def test_weights_only_for_factories(tmp_path: Path) -> None:
    torch.onnx.export(models.residual_cnn(), (torch.zeros(1, 3, 32, 32),), str(tmp_path / "r.onnx"), dynamo=False,
                      opset_version=13, input_names=["input"], output_names=["logits"])
    with pytest.raises(BadInput, match="--weights applies to file.py:factory and module:factory models"):
        load_model(str(tmp_path / "r.onnx"), weights=tmp_path / "w.pt")


def test_not_a_state_dict(tmp_path: Path) -> None:
    torch.save([1, 2, 3], str(tmp_path / "list.pt"))
    with pytest.raises(BadInput, match="does not hold a state dict"):
        load_model(model_ref("residual_cnn"), weights=tmp_path / "list.pt")


def test_factory_import_error_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import torch\nraise ValueError('bad config\\nsecond line')\n")
    with pytest.raises(BadInput, match=r"importing .*broken.py failed: ValueError: bad config$"):
        load_model(str(tmp_path / "broken.py") + ":make")
    (tmp_path / "syntax.py").write_text("def make(:\n")
    with pytest.raises(BadInput, match=r"syntax.py: syntax error at line 1"):
        load_model(str(tmp_path / "syntax.py") + ":make")


def test_factory_sibling_imports_work(tmp_path: Path) -> None:
    (tmp_path / "blocks_xyz.py").write_text("import torch\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.c = torch.nn.Conv2d(3, 2, 1)\n    def forward(self, x):\n        return self.c(x).mean(dim=(2, 3))\n")
    (tmp_path / "net.py").write_text("from blocks_xyz import Net\n\ndef make():\n    return Net()\n")
    loaded = load_model(str(tmp_path / "net.py") + ":make")
    assert type(loaded.module).__name__ == "Net" and loaded.name_hint == "net"


def test_onnx_model_with_external_weights(tmp_path: Path) -> None:
    import onnx

    spec_path = spec_file(tmp_path, "residual_cnn")
    m = models.residual_cnn()
    torch.onnx.export(m, (torch.zeros(1, 3, 32, 32),), str(tmp_path / "r.onnx"), dynamo=False, opset_version=13,
                      input_names=["input"], output_names=["logits"])
    src = tmp_path / "ext" / "r.onnx"
    src.parent.mkdir()
    onnx.save(onnx.load(str(tmp_path / "r.onnx")), str(src), save_as_external_data=True, location="r.weights", size_threshold=0)
    assert (src.parent / "r.weights").stat().st_size > 100000
    convert(str(src), spec_path, tmp_path / "b", build_engine=False)
    assert {a["path"] for a in load_manifest(tmp_path / "b")["artifacts"]} == {"model.onnx", "labels.txt"}
    x = _x(spec_path)
    np.testing.assert_allclose(ort_run(tmp_path / "b" / "model.onnx", x)["logits"], _eager(m, x), rtol=1e-4, atol=1e-5)
