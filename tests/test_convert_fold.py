"""Pre/postprocessing folded into the graph, checked against the independent preprocessing oracle
(tests/support/oracle.py) + the unfolded model, never against preprocess() itself."""
from pathlib import Path

import numpy as np
import pytest

from support import optional_module

pytestmark = pytest.mark.needs("torch", "onnx", "onnxruntime")
torch = optional_module("torch")
onnx = optional_module("onnx")

from support import oracle  # noqa: E402
from support.convert import frame, load_manifest, model_ref, ort_run, spec_file  # noqa: E402
from jetson_deploy.convert.pipeline import convert  # noqa: E402
from jetson_deploy.errors import BadInput  # noqa: E402
from jetson_deploy.preprocess import preprocess  # noqa: E402
from jetson_deploy.spec import ModelSpec, load_spec  # noqa: E402

import models  # noqa: E402


def _eager(module, x: "np.ndarray") -> "np.ndarray":
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _ref(bgr: "np.ndarray", spec) -> "np.ndarray":
    """The oracle's model input for one frame, batched, float32."""
    return oracle.preprocess(bgr, spec).astype(np.float32)[None]


def _ops(path: Path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_fold_preprocess_takes_camera_frames(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "residual_cnn")
    orig = load_spec(spec_path)
    res = convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", fold_preprocess=True, build_engine=False)
    man = load_manifest(tmp_path / "b")
    bspec = ModelSpec.from_dict(man["spec"])
    assert (bspec.dtype, bspec.layout, bspec.color, bspec.shape) == ("uint8", "nhwc", "bgr", [1, 32, 32, 3])
    assert man["conversion"]["fold"]["min_tensorrt"] == "8.5"
    assert man["conversion"]["fold_parity"]["passed"] is True
    assert res.parity["folded"]["max_abs_error"] < 1e-4
    ops = _ops(tmp_path / "b" / "model.onnx")
    assert ops[:5] == ["Cast", "Transpose", "Gather", "Mul", "Add"]
    g = onnx.load(str(tmp_path / "b" / "model.onnx")).graph
    assert g.input[0].name == "input" and g.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    model = models.residual_cnn()
    for seed in (1, 2, 3):
        bgr = frame(32, 32, seed=seed)
        x_engine = preprocess(bgr, bspec)[None]  # what the runtime feeds: the frame itself
        assert x_engine.dtype == np.uint8 and x_engine.shape == (1, 32, 32, 3)
        np.testing.assert_array_equal(x_engine[0], bgr)
        got = ort_run(tmp_path / "b" / "model.onnx", x_engine)["logits"]
        want = _eager(model, _ref(bgr, orig))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_fold_preprocess_bgr_model_needs_no_channel_swap(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "tiny_detector")  # spec color: bgr
    convert(model_ref("tiny_detector"), spec_path, tmp_path / "b", fold_preprocess=True, build_engine=False)
    ops = _ops(tmp_path / "b" / "model.onnx")
    assert ops[:4] == ["Cast", "Transpose", "Mul", "Add"] and "Gather" not in ops[:4]
    bgr = frame(64, 64, seed=9)
    got = ort_run(tmp_path / "b" / "model.onnx", bgr[None])
    want = models.tiny_detector()(torch.from_numpy(_ref(bgr, load_spec(spec_path))))
    np.testing.assert_allclose(got["boxes"], want[0].detach().numpy(), rtol=1e-4, atol=1e-3)


def test_fold_postprocess_classifier_topk(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "mobilenet_tiny")
    res = convert(model_ref("mobilenet_tiny"), spec_path, tmp_path / "b", fold_preprocess=True, fold_postprocess=True, top_k=3, build_engine=False)
    man = load_manifest(tmp_path / "b")
    assert man["spec"]["outputs"] == ["scores", "classes"]
    assert man["spec"]["postprocess"]["folded"] == "softmax-topk" and man["spec"]["postprocess"]["k"] == 3
    assert res.parity["folded"]["top1_agreement"] == 1.0
    model = models.mobilenet_tiny()
    orig = load_spec(spec_path)
    for seed in (4, 5):
        bgr = frame(64, 64, seed=seed)
        out = ort_run(tmp_path / "b" / "model.onnx", bgr[None])
        assert out["classes"].dtype == np.int32 and out["classes"].shape == (1, 3)
        logits = _eager(model, _ref(bgr, orig))[0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        order = np.argsort(-p)[:3]
        np.testing.assert_array_equal(out["classes"][0], order)
        np.testing.assert_allclose(out["scores"][0], p[order], rtol=1e-4, atol=1e-5)


def test_fold_postprocess_segmenter_mask(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "tiny_unet")
    convert(model_ref("tiny_unet"), spec_path, tmp_path / "b", fold_postprocess=True, build_engine=False)
    man = load_manifest(tmp_path / "b")
    assert man["spec"]["outputs"] == ["mask"] and man["spec"]["postprocess"]["folded"] == "argmax"
    spec = load_spec(spec_path)
    x = preprocess(frame(32, 32, seed=6), spec)[None]
    mask = ort_run(tmp_path / "b" / "model.onnx", x)["mask"]
    assert mask.dtype == np.int32 and mask.shape == (1, 32, 32)
    want = np.argmax(_eager(models.tiny_unet(), x), axis=1)
    assert (mask == want).mean() > 0.999
    assert len(np.unique(mask)) > 1  # a real mask, not a constant


def test_fold_with_dynamic_batch(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "residual_cnn")
    convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", fold_preprocess=True, fold_postprocess=True, dynamic_batch=True, build_engine=False)
    frames = np.stack([frame(32, 32, seed=s) for s in range(3)])
    out = ort_run(tmp_path / "b" / "model.onnx", frames)
    assert out["classes"].shape == (3, 5) and out["scores"].shape == (3, 5)
    orig = load_spec(spec_path)
    want = np.argmax(_eager(models.residual_cnn(), np.concatenate([_ref(f, orig) for f in frames])), axis=1)
    np.testing.assert_array_equal(out["classes"][:, 0], want)


def test_fold_an_onnx_model(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "residual_cnn")
    torch.onnx.export(models.residual_cnn(), (torch.zeros(1, 3, 32, 32),), str(tmp_path / "r.onnx"), dynamo=False,
                      opset_version=13, input_names=["input"], output_names=["logits"])
    res = convert(str(tmp_path / "r.onnx"), spec_path, tmp_path / "b", fold_preprocess=True, fold_postprocess=True, build_engine=False)
    assert res.parity["folded"]["passed"] is True
    assert res.parity["folded"]["reference"] == "preprocess() + unfolded ONNX model"


def test_fold_errors(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "dict_outputs")
    with pytest.raises(BadInput, match="--fold-postprocess needs exactly one model output"):
        convert(model_ref("dict_outputs"), spec_path, tmp_path / "b", outputs=["logits", "heatmap"], fold_postprocess=True, build_engine=False)
    spec_path = spec_file(tmp_path, "residual_cnn", dtype="uint8")
    with pytest.raises(BadInput, match="already uint8"):
        convert(model_ref("residual_cnn"), spec_path, tmp_path / "c", fold_preprocess=True, build_engine=False)
    spec_path = spec_file(tmp_path, "residual_cnn")
    with pytest.raises(BadInput, match=r"--top-k 11 must be between 1 and the number of classes \(10\)"):
        convert(model_ref("residual_cnn"), spec_path, tmp_path / "d", fold_postprocess=True, top_k=11, build_engine=False)


def _identity_onnx(path: Path, shape) -> Path:
    """A model that returns its input: the folded graph's output *is* the normalised frame."""
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["input"], ["out"])], "ident",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("color", ["rgb", "bgr"])
def test_folded_normalisation_matches_the_oracle_per_channel(tmp_path: Path, layout: str, color: str) -> None:
    """Per-channel constants all different, both layouts: a reversed or misplaced constant fails."""
    import json

    shape = [1, 3, 12, 20] if layout == "nchw" else [1, 12, 20, 3]
    spec = {"task": "raw", "input": {"name": "input", "shape": shape, "dtype": "float32", "color": color, "layout": layout},
            "preprocess": {"scale": 1.0 / 255.0, "mean": [0.485, 0.256, 0.106], "std": [0.229, 0.524, 0.125]},
            "outputs": ["out"]}
    (tmp_path / "s.json").write_text(json.dumps(spec))
    _identity_onnx(tmp_path / "m.onnx", shape)
    convert(str(tmp_path / "m.onnx"), tmp_path / "s.json", tmp_path / "b", fold_preprocess=True, build_engine=False)
    bspec = ModelSpec.from_dict(load_manifest(tmp_path / "b")["spec"])
    assert (bspec.dtype, bspec.layout) == ("uint8", "nhwc")
    for seed in (1, 2):
        bgr = frame(12, 20, seed=seed)
        got = ort_run(tmp_path / "b" / "model.onnx", bgr[None])["out"][0]
        oracle.assert_matches(got, bgr, spec, lsb=0.01, exact_fraction=1.0)
