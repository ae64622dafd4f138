"""convert(): real ONNX Runtime parity on the architectures in tests/models, bundle contents."""
import json
from pathlib import Path

import numpy as np
import pytest

from support import optional_module

pytestmark = pytest.mark.needs("torch", "onnx", "onnxruntime")
torch = optional_module("torch")

from support.convert import assert_checksums, frame, load_manifest, model_ref, ort_run, spec_file  # noqa: E402
from jetson_deploy.convert.pipeline import convert  # noqa: E402
from jetson_deploy.errors import BadInput, CheckFailed  # noqa: E402
from jetson_deploy.preprocess import preprocess  # noqa: E402
from jetson_deploy.spec import load_spec  # noqa: E402

ARCHS = [
    # factory, --output selection, expected output names
    ("residual_cnn", None),
    ("mobilenet_tiny", None),
    ("tiny_unet", None),
    ("tiny_detector", None),
    ("dict_outputs", ["logits", "aux.heatmap"]),
    ("dataclass_outputs", ["logits"]),
]


def _torch_outputs(factory: str, x: "np.ndarray", paths):
    import models

    m = getattr(models, factory)()
    with torch.no_grad():
        out = m(torch.from_numpy(x))
    from jetson_deploy.convert.outputs import get_path

    if paths is None:
        out = out if isinstance(out, tuple) else (out,)
        return [o.numpy() for o in out]
    return [get_path(out, p).numpy() for p in paths]


@pytest.mark.parametrize("factory,outputs", ARCHS, ids=[a[0] for a in ARCHS])
def test_architecture_converts_with_parity(tmp_path: Path, factory: str, outputs) -> None:
    spec_path = spec_file(tmp_path, factory)
    spec = load_spec(spec_path)
    res = convert(model_ref(factory), spec_path, tmp_path / "bundle", version="1.2.3", outputs=outputs, build_engine=False)
    m = load_manifest(tmp_path / "bundle")
    assert_checksums(tmp_path / "bundle")
    assert m["version"] == "1.2.3" and m["precision"] == "fp32"
    assert {a["path"] for a in m["artifacts"]} >= {"model.onnx"}
    p = m["conversion"]["parity"]
    assert p["passed"] is True and p["reference"] == "torch-fp32"
    assert 0.0 <= p["max_scaled_error"] < 1e-4  # float32 rounding (boxes in pixels through exp(): relative)
    assert m["accuracy"]["max_abs_error"] == p["max_abs_error"]
    assert m["conversion"]["opset"] == 13 and m["source"]["opset"] == 13
    assert m["source"]["torch"] == torch.__version__ and m["source"]["model_sha256"]
    if spec.task in ("classify", "segment"):
        assert p["top1_agreement"] == 1.0
    assert res.spec.outputs == spec.outputs and set(p["outputs"]) == set(spec.outputs)
    # Independent check: run the bundle's ONNX on a fresh frame, compare with eager PyTorch.
    x = preprocess(frame(spec.height, spec.width, seed=42), spec)[None]
    got = ort_run(tmp_path / "bundle" / "model.onnx", x)
    assert list(got) == spec.outputs
    want = _torch_outputs(factory, x, outputs)
    for name, w in zip(spec.outputs, want):
        np.testing.assert_allclose(got[name], w, rtol=1e-4, atol=1e-4)


def test_labels_and_source_recorded(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "residual_cnn")
    convert(model_ref("residual_cnn", "module"), spec_path, tmp_path / "b", name="res", build_engine=False)
    m = load_manifest(tmp_path / "b")
    assert m["name"] == "res"
    assert (tmp_path / "b" / "labels.txt").read_text().split() == ["c{}".format(i) for i in range(10)]
    assert m["source"]["model"] == "models:residual_cnn"
    assert m["spec"]["input"]["name"] == "input" and m["spec"]["outputs"] == ["logits"]
    import onnx

    g = onnx.load(str(tmp_path / "b" / "model.onnx")).graph
    assert [i.name for i in g.input] == ["input"] and [o.name for o in g.output] == ["logits"]


def test_dict_outputs_need_a_choice(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "dict_outputs")
    with pytest.raises(BadInput, match=r"returns 3 outputs \(logits, embedding, aux.heatmap\).*--select-output"):
        convert(model_ref("dict_outputs"), spec_path, tmp_path / "b", build_engine=False)
    assert not (tmp_path / "b").exists()


def test_output_selection_by_index_and_message(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "tiny_detector", outputs=["scores", "boxes"])
    res = convert(model_ref("tiny_detector"), spec_path, tmp_path / "b", outputs=["1", "0"], build_engine=False)
    assert res.outputs_kept == ["1", "0"]
    assert any("outputs kept: 1 -> scores, 0 -> boxes; dropped: 2" in m for m in res.messages)
    got = ort_run(tmp_path / "b" / "model.onnx", np.zeros((1, 3, 64, 64), np.float32))
    assert got["scores"].shape == (1, 64, 4) and got["boxes"].shape == (1, 64, 4)


def test_bad_output_name(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "dataclass_outputs")
    with pytest.raises(BadInput, match=r"--select-output 'probs' is not an output of the model \(it returns: logits, features\)"):
        convert(model_ref("dataclass_outputs"), spec_path, tmp_path / "b", outputs=["probs"], build_engine=False)


def test_parity_failure_is_exit_1_and_force_records_it(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "drifting")
    with pytest.raises(CheckFailed, match=r"parity failed above --tolerance 0.001: logits max error"):
        convert(model_ref("drifting"), spec_path, tmp_path / "b", build_engine=False)
    assert not (tmp_path / "b").exists()
    res = convert(model_ref("drifting"), spec_path, tmp_path / "b", build_engine=False, force=True)
    m = load_manifest(tmp_path / "b")
    assert m["conversion"]["parity"]["passed"] is False
    assert m["conversion"]["parity"]["max_abs_error"] >= 1.0
    assert res.parity is not None and res.parity["passed"] is False


def test_tolerance_gate_is_applied(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "mobilenet_tiny")
    with pytest.raises(CheckFailed, match="--tolerance 1e-12"):
        convert(model_ref("mobilenet_tiny"), spec_path, tmp_path / "b", tolerance=1e-12, build_engine=False)


def test_dynamic_batch(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "residual_cnn")
    convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", dynamic_batch=True, build_engine=False)
    m = load_manifest(tmp_path / "b")
    assert m["conversion"]["dynamic_batch"] is True
    assert m["conversion"]["onnx_check"]["inputs"][0]["shape"][0] == "batch"
    x = np.random.RandomState(0).rand(3, 3, 32, 32).astype(np.float32)
    got = ort_run(tmp_path / "b" / "model.onnx", x)["logits"]
    import models

    with torch.no_grad():
        want = models.residual_cnn()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_opset_choice(tmp_path: Path) -> None:
    import onnx

    spec_path = spec_file(tmp_path, "tiny_unet")
    convert(model_ref("tiny_unet"), spec_path, tmp_path / "b", opset=17, build_engine=False)
    m = onnx.load(str(tmp_path / "b" / "model.onnx"))
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [17]
    with pytest.raises(BadInput, match="--opset 9 is too old"):
        convert(model_ref("tiny_unet"), spec_path, tmp_path / "c", opset=9, build_engine=False)


def test_existing_bundle_replaced_atomically(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "residual_cnn")
    convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", version="1.0.0", build_engine=False)
    with pytest.raises(CheckFailed):
        convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", version="2.0.0", tolerance=1e-15, build_engine=False)
    assert load_manifest(tmp_path / "b")["version"] == "1.0.0"  # the failed run left the old bundle intact


def test_uint8_input_model(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "raw_pixels")
    res = convert(model_ref("raw_pixels"), spec_path, tmp_path / "b", build_engine=False)
    assert res.parity["passed"] is True and res.parity["max_abs_error"] < 1e-5
    import onnx

    g = onnx.load(str(tmp_path / "b" / "model.onnx")).graph
    assert g.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    spec = load_spec(spec_path)
    x = preprocess(frame(32, 32, seed=8), spec)[None]
    assert x.dtype == np.uint8
    import models

    with torch.no_grad():
        want = models.raw_pixels()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ort_run(tmp_path / "b" / "model.onnx", x)["logits"], want, rtol=1e-4, atol=1e-5)


def test_tracing_warnings_are_reported(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "branchy")
    res = convert(model_ref("branchy"), spec_path, tmp_path / "b", build_engine=False)
    warned = [m for m in res.messages if m.startswith("tracing warning at __init__.py:")]
    assert len(warned) == 1 and "Python boolean" in warned[0], res.messages
    res = convert(model_ref("residual_cnn"), spec_file(tmp_path, "residual_cnn"), tmp_path / "c", build_engine=False)
    assert not any("tracing warning" in m for m in res.messages)


def test_fp16_estimate_recorded_and_overflow_refused(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "mobilenet_tiny")
    res = convert(model_ref("mobilenet_tiny"), spec_path, tmp_path / "b", precision="fp16", build_engine=False)
    est = load_manifest(tmp_path / "b")["accuracy"]["fp16_estimate"]
    if est.get("skipped"):
        pytest.skip(est["skipped"])
    assert est["finite"] is True and 0.0 < est["max_abs_error"] < 0.1  # half precision: small but not zero
    assert est["top1_agreement"] == 1.0
    assert any(m.startswith("FP16 estimate") for m in res.messages)
    spec_path = spec_file(tmp_path, "half_overflow")
    with pytest.raises(CheckFailed, match=r"FP16 overflows: activations beyond float16's 65504 at /Add_output_0 \(max 2\.\d+e\+05\)"):
        convert(model_ref("half_overflow"), spec_path, tmp_path / "c", precision="fp16", build_engine=False)
    convert(model_ref("half_overflow"), spec_path, tmp_path / "c", precision="fp32", build_engine=False)  # fine in FP32
    convert(model_ref("half_overflow"), spec_path, tmp_path / "d", precision="fp16", build_engine=False, force=True)
    over = load_manifest(tmp_path / "d")["accuracy"]["fp16_estimate"]["overflows"]
    assert [o["tensor"] for o in over][:1] == ["/Add_output_0"] and over[0]["max_abs"] > 65504


def test_option_groups_match_the_flat_keywords(tmp_path: Path, caplog: "pytest.LogCaptureFixture") -> None:
    import logging

    from jetson_deploy.convert.options import BundleOptions, ConvertOptions, EngineOptions

    spec_path = spec_file(tmp_path, "residual_cnn")
    opts = ConvertOptions(bundle=BundleOptions(name="res", version="1.2.3"), engine=EngineOptions(build=False))
    assert ConvertOptions.from_flat(name="res", version="1.2.3", build_engine=False) == opts
    with caplog.at_level(logging.INFO, logger="jetson_deploy.convert"):
        res = convert(model_ref("residual_cnn", "module"), spec_path, tmp_path / "b", opts)
    m = load_manifest(tmp_path / "b")
    assert (m["name"], m["version"]) == ("res", "1.2.3")
    assert res.messages and res.messages == [r.getMessage() for r in caplog.records if r.name.startswith("jetson_deploy.convert")][: len(res.messages)]
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        convert(model_ref("residual_cnn", "module"), spec_path, tmp_path / "c", nope=1)
    with pytest.raises(TypeError, match="not both"):
        convert(model_ref("residual_cnn", "module"), spec_path, tmp_path / "c", opts, name="x")
    with pytest.raises(BadInput, match="--precision int8 needs --calib"):
        convert(model_ref("residual_cnn", "module"), spec_path, tmp_path / "c", ConvertOptions(precision="int8"))


def test_flat_keywords_are_a_shim_that_names_its_removal(tmp_path: Path) -> None:
    """Issue #23: one way in (options objects); the flat keywords warn, naming the release they go in."""
    spec_path = spec_file(tmp_path, "residual_cnn")
    with pytest.warns(DeprecationWarning, match=r"convert\(model, spec, out, build_engine=\.\.\.\): .*removed in 0\.3\.0"):
        convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", build_engine=False)
