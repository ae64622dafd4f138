"""convert --precision int8 --calib: ranges, caches and the Q/DQ model in the bundle; the agreement gate."""
import json
from pathlib import Path

import numpy as np
import pytest

from support import optional_module

pytestmark = pytest.mark.needs("torch", "onnx", "onnxruntime", "cv2")
torch = optional_module("torch")

from support.calib import write_images  # noqa: E402
from support.convert import assert_checksums, frame, load_manifest, model_ref, ort_run, spec_file  # noqa: E402
from doubles import tensorrt_double as trtd  # noqa: E402
from jetson_deploy.calibration.dataset import build_calibration_set  # noqa: E402
from jetson_deploy.trt import build as tb  # noqa: E402
from jetson_deploy.convert.pipeline import convert  # noqa: E402
from jetson_deploy.demo import spec_path as demo_spec_path  # noqa: E402
from jetson_deploy.errors import BadInput, CheckFailed  # noqa: E402
from jetson_deploy.preprocess import preprocess  # noqa: E402
from jetson_deploy.spec import ModelSpec, load_spec  # noqa: E402

DEMO = "jetson_deploy.demo:load_model"


@pytest.fixture(scope="module")
def demo_calib(tmp_path_factory) -> Path:
    """A calibration set for the (trained) demo model, from the frames it classifies: shapes
    from its own generator (random scenes are out of distribution: near-tied logits flip)."""
    from jetson_deploy import demo

    d = tmp_path_factory.mktemp("int8")
    demo.write_images(d / "imgs", 100, width=96, height=72, seed=1)
    build_calibration_set([d / "imgs"], demo_spec_path(), d / "calib", num=100, holdout=0.2, progress=False)
    return d / "calib"


def test_int8_bundle_without_tensorrt(tmp_path: Path, monkeypatch, demo_calib: Path) -> None:
    trtd.uninstall(monkeypatch)
    res = convert(DEMO, demo_spec_path(), tmp_path / "b", precision="int8", calib=demo_calib)
    assert res.engine_built is False and "device at first load" in res.engine_note
    assert_checksums(tmp_path / "b")
    man = load_manifest(tmp_path / "b")
    kinds = {a["path"]: a["kind"] for a in man["artifacts"]}
    assert kinds["calibration/ranges.json"] == "ranges" and kinds["model.qdq.onnx"] == "onnx-qdq"
    for v in ("8.2.1", "8.5.2", "8.6.2"):
        assert kinds["calibration/{}.cache".format(v)] == "calib-cache"
        art = [a for a in man["artifacts"] if a["path"] == "calibration/{}.cache".format(v)][0]
        assert art["target"]["tensorrt"] == v
    assert man["precision"] == "int8"
    set_manifest = json.loads((demo_calib / "manifest.json").read_text())
    assert man["calibration"]["set_sha256"] == set_manifest["set_sha256"]
    assert man["calibration"]["method"] == "entropy"
    q = man["quantization"]
    assert q["passed"] is True and q["forced"] is False and q["min_agreement"] == 0.99
    agree = man["accuracy"]["int8"]["agreement"]
    assert agree["metric"] == "top1_agreement" and agree["value"] >= 0.99
    # The Q/DQ model runs in ONNX Runtime and agrees with FP32 on fresh frames.
    spec = load_spec(demo_spec_path())
    from jetson_deploy.demo import ShapeGenerator

    gen = ShapeGenerator(seed=77)
    hits = 0
    for img, _label in gen.frames(10, 64, 64):
        x = preprocess(img, spec)[None]
        a = ort_run(tmp_path / "b" / "model.onnx", x)["logits"].argmax()
        b = ort_run(tmp_path / "b" / "model.qdq.onnx", x)["logits"].argmax()
        hits += int(a == b)
    assert hits >= 9


def test_int8_with_folding_renames_the_input_range(tmp_path: Path, monkeypatch, demo_calib: Path) -> None:
    trtd.uninstall(monkeypatch)
    convert(DEMO, demo_spec_path(), tmp_path / "b", precision="int8", calib=demo_calib, fold_preprocess=True, fold_postprocess=True)
    man = load_manifest(tmp_path / "b")
    assert man["quantization"]["input_tensor_renamed"] == {"from": "input", "to": "input__normalized"}
    ranges = json.loads((tmp_path / "b" / "calibration" / "ranges.json").read_text())["tensors"]
    assert "input__normalized" in ranges and "input" not in ranges
    cache = (tmp_path / "b" / "calibration" / "8.5.2.cache").read_text().splitlines()
    assert cache[0] == "TRT-8502-EntropyCalibration2"
    assert any(ln.startswith("input__normalized: ") for ln in cache) and not any(ln.startswith("input: ") for ln in cache)
    # The folded Q/DQ model takes the camera frame and gives the same top-1 as the folded FP32 model.
    bspec = ModelSpec.from_dict(man["spec"])
    for seed in range(3):
        bgr = frame(64, 64, seed=seed)
        x = preprocess(bgr, bspec)[None]
        fp = ort_run(tmp_path / "b" / "model.onnx", x)
        q = ort_run(tmp_path / "b" / "model.qdq.onnx", x)
        assert q["classes"].dtype == np.int32 and q["scores"].shape == fp["scores"].shape
    from jetson_deploy.demo import ShapeGenerator

    hits = 0
    for img, _label in ShapeGenerator(seed=78).frames(10, 64, 64):
        x = preprocess(img, bspec)[None]
        fp_top1 = ort_run(tmp_path / "b" / "model.onnx", x)["classes"][0, 0]
        q_top1 = ort_run(tmp_path / "b" / "model.qdq.onnx", x)["classes"][0, 0]
        hits += int(fp_top1 == q_top1)
    assert hits >= 9, "the folded Q/DQ model agrees with folded FP32 on only {}/10 frames".format(hits)


def test_int8_gate_fails_below_min_agreement(tmp_path: Path, monkeypatch) -> None:
    """FragileNet decides on variations smaller than an INT8 step: the gate refuses it."""
    trtd.uninstall(monkeypatch)
    spec_path = spec_file(tmp_path, "fragile")
    write_images(tmp_path / "imgs", 80, seed=2)
    build_calibration_set([tmp_path / "imgs"], spec_path, tmp_path / "calib", num=80, progress=False)
    with pytest.raises(CheckFailed, match=r"INT8 agreement top1_agreement 0\.\d+ is below --min-agreement 0.99: try --auto-exclude"):
        convert(model_ref("fragile"), spec_path, tmp_path / "b", precision="int8", calib=tmp_path / "calib")
    assert not (tmp_path / "b").exists()
    convert(model_ref("fragile"), spec_path, tmp_path / "b", precision="int8", calib=tmp_path / "calib", force=True)
    q = load_manifest(tmp_path / "b")["quantization"]
    assert q["passed"] is False and q["forced"] is True
    # --auto-exclude keeps the layer that loses the decision in float, and then the gate passes.
    res = convert(model_ref("fragile"), spec_path, tmp_path / "c", precision="int8", calib=tmp_path / "calib", auto_exclude=True)
    man = load_manifest(tmp_path / "c")
    assert man["quantization"]["auto_exclude"] is True and man["quantization"]["passed"] is True
    assert man["quantization"]["excluded"] == ["/fc/Gemm"]
    assert man["accuracy"]["int8"]["agreement"]["value"] >= 0.99 > man["accuracy"]["int8"]["agreement_before"]["value"]
    assert any("1 layer group(s) kept in float" in m for m in res.messages)


def test_calibration_set_for_another_spec(tmp_path: Path, demo_calib: Path) -> None:
    spec_path = spec_file(tmp_path, "residual_cnn")
    with pytest.raises(BadInput, match=r"calibration set .* was made with another spec \(shape, .*mean, std differ\)"):
        convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", precision="int8", calib=demo_calib)


@pytest.mark.parametrize("gen,source", [("8.2", "calib-cache"), ("8.6", "calib-cache"), ("10.x", "qdq")])
def test_int8_engine_from_calibration_data(tmp_path: Path, monkeypatch, demo_calib: Path, gen: str, source: str) -> None:
    trt = trtd.install(monkeypatch, gen)
    monkeypatch.setattr(tb, "_detect_sm", lambda: 87)
    res = convert(DEMO, demo_spec_path(), tmp_path / "b", precision="int8", calib=demo_calib)
    assert res.engine_built is True
    man = load_manifest(tmp_path / "b")
    assert man["conversion"]["build"]["int8_source"] == source
    plan = trtd.read_plan((tmp_path / "b" / res.engines[0]).read_bytes())
    assert "INT8" in plan["flags"]
    if source == "qdq":
        assert plan["int8"]["mode"] in ("qdq", "explicit")
    else:
        assert plan["int8"]["mode"] not in (None, "qdq")
    # A cache for the local TensorRT version is in the bundle too.
    from jetson_deploy.bundle import normalize_trt_version

    assert "calibration/{}.cache".format(normalize_trt_version(trt.__version__)) in res.to_dict()["artifacts"]


def test_torch2trt_int8_gets_the_calibration_set(tmp_path: Path, monkeypatch, demo_calib: Path) -> None:
    """torch2trt is handed the set's held-in samples (not the held-out ones, not the example input),
    as the engine's float32 batches, and TensorRT calibrates on exactly those values."""
    from doubles import torch2trt_double as t2d
    from jetson_deploy.calibration.dataset import load_calibration_set

    trtd.install(monkeypatch, "8.5")
    t2 = t2d.install(monkeypatch)
    monkeypatch.setattr(tb, "_detect_sm", lambda: 72)
    res = convert(DEMO, demo_spec_path(), tmp_path / "b", precision="int8", calib=demo_calib, converter="torch2trt")
    assert res.engines == ["engines/8.5.2_sm72_int8.engine"]
    call = t2._double.calls[-1]
    assert call["int8_mode"] is True
    cs = load_calibration_set(demo_calib)
    assert cs.num_holdout > 0 and cs.spec_sha256 == load_spec(demo_spec_path()).sha256()
    held_in = np.concatenate(list(cs.iter_batches(1, dtype=np.float32)), axis=0)
    assert held_in.shape == (len(cs), 3, 64, 64)
    # Preprocessed as the spec says (scale 1/255, mean 0.5, std 0.25): values span [-2, 2], not pixels.
    assert -2.0 - 1e-5 <= held_in.min() < -1.0 and 1.0 < held_in.max() <= 2.0 + 1e-5
    dataset = call["int8_calib_dataset"]
    assert len(dataset) == len(cs)
    items = [dataset[i] for i in range(len(dataset))]
    assert all(len(it) == 1 and it[0].dtype == torch.float32 and tuple(it[0].shape) == (1, 3, 64, 64) for it in items)
    np.testing.assert_array_equal(np.concatenate([it[0].cpu().numpy() for it in items], axis=0), held_in)
    # TensorRT (the double) read every held-in sample: one batch each, and the input's scale is theirs.
    int8 = trtd.read_plan((tmp_path / "b" / res.engines[0]).read_bytes())["int8"]
    assert int8["mode"] == "calibrator" and int8["batches"] == len(cs)
    want = max(float(np.percentile(np.abs(held_in).ravel(), 99.99)), 1e-8) / 127.0
    assert int8["scales"]["input"] == pytest.approx(want, rel=1e-6)
    assert load_manifest(tmp_path / "b")["calibration"]["samples"] == len(cs)


def test_min_agreement_reaches_the_gate_through_convert_and_the_cli(tmp_path: Path, monkeypatch) -> None:
    """On FragileNet (agreement v well under 0.99): --min-agreement v passes, v + 0.01 refuses,
    both through the API and the CLI; a hard-coded or slackened threshold fails one of them."""
    from jetson_deploy.cli import cli
    from support.deploy import out, runner

    trtd.uninstall(monkeypatch)
    spec_path = spec_file(tmp_path, "fragile")
    write_images(tmp_path / "imgs", 80, seed=2)
    build_calibration_set([tmp_path / "imgs"], spec_path, tmp_path / "calib", num=80, progress=False)
    convert(model_ref("fragile"), spec_path, tmp_path / "f", precision="int8", calib=tmp_path / "calib", force=True)
    v = load_manifest(tmp_path / "f")["accuracy"]["int8"]["agreement"]["value"]
    assert 0.05 < v < 0.9, v
    convert(model_ref("fragile"), spec_path, tmp_path / "ok", precision="int8", calib=tmp_path / "calib", min_agreement=v)
    q = load_manifest(tmp_path / "ok")["quantization"]
    assert q["passed"] is True and q["forced"] is False and q["min_agreement"] == v
    with pytest.raises(CheckFailed, match="below --min-agreement"):
        convert(model_ref("fragile"), spec_path, tmp_path / "no", precision="int8", calib=tmp_path / "calib", min_agreement=v + 0.01)
    assert not (tmp_path / "no").exists()
    base = ["convert", model_ref("fragile"), "--spec", str(spec_path), "--precision", "int8", "--calib", str(tmp_path / "calib"),
            "--no-build-engine"]
    res = runner().invoke(cli, base + ["-o", str(tmp_path / "cli-ok"), "--min-agreement", repr(v)])
    assert res.exit_code == 0, out(res)
    res = runner().invoke(cli, base + ["-o", str(tmp_path / "cli-no"), "--min-agreement", repr(round(v + 0.01, 6))])
    assert res.exit_code == 1 and "below --min-agreement" in out(res), out(res)
