"""INT8 without TensorRT: ORT ranges, TensorRT caches, Q/DQ model, accuracy gate,
auto-exclude, reuse, and the calibrate command's exit codes."""
import json
from pathlib import Path

import numpy as np
import pytest

from support import optional_module

pytestmark = pytest.mark.needs("cv2", "onnxruntime", "onnx", "torch")
torch = optional_module("torch")

from support.calib import make_cnn_onnx, make_hidden_outlier_onnx, write_clip, write_images, write_spec  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from jetson_deploy.calibration.quantize import compute_int8  # noqa: E402
from jetson_deploy.calibration.cache import read_cache  # noqa: E402
from jetson_deploy.calibration.dataset import build_calibration_set  # noqa: E402
from jetson_deploy.calibration.ranges import Ranges, compute_ranges, entropy_amax  # noqa: E402
from jetson_deploy.cli import cli  # noqa: E402
from jetson_deploy.errors import BadInput  # noqa: E402


@pytest.fixture(scope="module")
def work(tmp_path_factory: "pytest.TempPathFactory") -> Path:
    d = tmp_path_factory.mktemp("int8")
    write_spec(d / "spec.json")
    write_images(d / "imgs", 40, seed=21)
    write_clip(d / "clip.avi", 40, seed=22)
    make_cnn_onnx(d / "cnn.onnx", seed=0)
    make_cnn_onnx(d / "outlier.onnx", seed=0, outlier=True)
    build_calibration_set([d / "imgs", d / "clip.avi"], d / "spec.json", d / "set", num=60, seed=0, holdout=0.25, progress=False)
    return d


def _ort(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_ranges_cover_activations_and_methods_differ(work: Path) -> None:
    from jetson_deploy.calibration.dataset import load_calibration_set

    cs = load_calibration_set(work / "set")
    r = {m: compute_ranges(work / "cnn.onnx", cs, m, progress=False) for m in ("entropy", "percentile", "minmax")}
    names = set(r["minmax"].tensors)
    assert "input" in names and "logits" in names and len(names) >= 8
    for m in r.values():
        assert set(m.tensors) == names
        assert all(lo == -hi and hi >= 0 for lo, hi in m.tensors.values())
    # the input amax is what preprocessing can produce: (255/255 - 0.5) / 0.25 = 2
    assert r["minmax"].amax()["input"] == pytest.approx(2.0, abs=0.05)
    # min-max is the largest range; entropy/percentile clip somewhere
    for k in names:
        assert r["entropy"].amax()[k] <= r["minmax"].amax()[k] * 1.0001
    assert any(r["entropy"].amax()[k] < 0.99 * r["minmax"].amax()[k] for k in names)


def test_entropy_rule_clips_outliers() -> None:
    rng = np.random.default_rng(0)
    x = np.abs(np.concatenate([rng.normal(0, 1, 200000), [60.0]])).astype(np.float32)
    hist, edges = np.histogram(x, bins=2048, range=(0, x.max()))
    a = entropy_amax(hist, edges)
    assert 2.5 < a < 10.0  # not the lone outlier at 60, not inside the bulk


def test_compute_int8_writes_everything_and_gates(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = compute_int8(work / "cnn.onnx", work / "set", out, progress=False)
    assert r.ranges_path.is_file() and r.qdq_path.is_file()
    assert sorted(r.cache_paths) == ["8.2.1", "8.5.2", "8.6.2"]
    ranges = Ranges.load(r.ranges_path)
    assert ranges.onnx_sha256 == r.onnx_sha256 and ranges.method == "entropy"
    # every cache parses back to the same ranges, with its version in the header
    for v, p in r.cache_paths.items():
        info, amax = read_cache(p)
        assert info["tensorrt"] == v and info["algorithm"] == "EntropyCalibration2"
        assert set(amax) == set(ranges.tensors)
        for k, a in ranges.amax().items():
            assert amax[k] == pytest.approx(a, rel=1e-6)
    # the Q/DQ model is really quantized and runs in ONNX Runtime
    import onnx

    q = onnx.load(str(r.qdq_path))
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("QuantizeLinear") >= 4 and "DequantizeLinear" in ops
    x = np.random.default_rng(0).normal(0, 1, (3, 3, 32, 32)).astype(np.float32)
    (y,) = _ort(r.qdq_path).run(None, {"input": x})
    (ref,) = _ort(work / "cnn.onnx").run(None, {"input": x})
    assert y.shape == ref.shape and not np.array_equal(y, ref)
    # the gate: held-out samples only, classifier metric
    a = r.agreement
    assert a["metric"] == "top1_agreement" and a["on"] == "holdout" and a["samples"] == 15
    assert a["value"] >= 0.99 and a["cosine_mean"] > 0.99 and r.passed
    rec = json.loads((out / "int8.json").read_text())
    assert rec["agreement"] == a and rec["settings"]["onnx_sha256"] == r.onnx_sha256


def test_reuse_same_model_and_recompute_for_another(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = compute_int8(work / "cnn.onnx", work / "set", out, progress=False)
    again = compute_int8(work / "cnn.onnx", work / "set", out, progress=False)
    assert again.reused == "all" and again.agreement == first.agreement
    other = compute_int8(work / "cnn.onnx", work / "set", out, min_agreement=0.5, progress=False)
    assert other.reused == "ranges"
    changed = compute_int8(work / "outlier.onnx", work / "set", out, progress=False)
    assert changed.reused == "none" and changed.onnx_sha256 != first.onnx_sha256
    # a bundle directory holding model.onnx is accepted as the model
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.onnx").write_bytes((work / "cnn.onnx").read_bytes())
    b = compute_int8(bundle, work / "set", tmp_path / "out2", progress=False)
    assert b.onnx_sha256 == first.onnx_sha256


def test_auto_exclude_recovers_a_model_that_quantizes_badly(work: Path, tmp_path: Path) -> None:
    plain = compute_int8(work / "outlier.onnx", work / "set", tmp_path / "plain", progress=False)
    assert not plain.passed and plain.agreement["value"] < 0.9
    r = compute_int8(work / "outlier.onnx", work / "set", tmp_path / "auto", auto_exclude=True, exclude_budget=3, progress=False)
    assert r.agreement_before["value"] == plain.agreement["value"]
    assert r.agreement["value"] > r.agreement_before["value"] and r.passed
    assert r.excluded == ["/head/Gemm"]
    # the excluded layer's output has no Q/DQ pair, and no scale in the caches
    import onnx

    q = onnx.load(str(r.qdq_path))
    assert "logits" not in {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
    _, amax = read_cache(r.cache_paths["8.5.2"])
    assert "logits" not in amax and "input" in amax
    rec = json.loads((tmp_path / "auto" / "int8.json").read_text())
    assert rec["excluded_groups"][0]["name"] == "/head/Gemm" and rec["agreement_before"]["value"] < rec["agreement"]["value"]
    # budget 0: nothing may be excluded
    z = compute_int8(work / "outlier.onnx", work / "set", tmp_path / "zero", auto_exclude=True, exclude_budget=0, progress=False)
    assert z.excluded == [] and not z.passed


def test_wrong_input_name_is_bad_input(work: Path, tmp_path: Path) -> None:
    write_spec(tmp_path / "spec.json", input={"name": "images", "shape": [1, 3, 32, 32], "dtype": "float32", "color": "rgb"})
    build_calibration_set([work / "imgs"], tmp_path / "spec.json", tmp_path / "set", num=8, progress=False)
    with pytest.raises(BadInput, match="input.name"):
        compute_int8(work / "cnn.onnx", tmp_path / "set", progress=False)


def test_cli_calibrate_exit_codes(work: Path, tmp_path: Path) -> None:
    import inspect

    runner = CliRunner(mix_stderr=False) if "mix_stderr" in inspect.signature(CliRunner).parameters else CliRunner()
    out = tmp_path / "calib"
    base = [str(work / "imgs"), str(work / "clip.avi"), "--spec", str(work / "spec.json"), "-o", str(out), "--num", "40", "--quiet"]
    res = runner.invoke(cli, ["calibrate"] + base)
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "calibration set" in res.stdout and (out / "manifest.json").is_file()
    # ranges for the existing set, JSON on stdout only
    res = runner.invoke(cli, ["calibrate", "-o", str(out), "--model", str(work / "cnn.onnx"), "--json", "--quiet", "--trt-version", "8.5.2"])
    assert res.exit_code == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["int8"]["passed"] and list(doc["int8"]["caches"]) == ["8.5.2"]
    # gate fails -> exit 1, with one Error line
    res = runner.invoke(cli, ["calibrate", "-o", str(out), "--model", str(work / "outlier.onnx"), "--quiet"])
    assert res.exit_code == 1
    assert "below --min-agreement" in res.stderr
    res = runner.invoke(cli, ["calibrate", "-o", str(out), "--model", str(work / "outlier.onnx"), "--quiet", "--auto-exclude"])
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "left in float: /head/Gemm" in res.stdout
    # usage errors -> exit 2
    assert runner.invoke(cli, ["calibrate", "-o", str(tmp_path / "none")]).exit_code == 2
    assert runner.invoke(cli, ["calibrate", "-o", str(tmp_path / "none"), "--model", str(work / "cnn.onnx")]).exit_code == 2
    assert runner.invoke(cli, ["calibrate", str(work / "imgs"), "-o", str(tmp_path / "x")]).exit_code == 2  # no --spec
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_text("not a jpeg")
    res = runner.invoke(cli, ["calibrate", str(junk), "--spec", str(work / "spec.json"), "-o", str(tmp_path / "y")])
    assert res.exit_code == 2 and "no usable image" in res.stderr
    assert not (tmp_path / "y").exists()
    res = runner.invoke(cli, ["calibrate", "-o", str(out), "--model", str(tmp_path / "missing.onnx")])
    assert res.exit_code == 2 and "does not exist" in res.stderr


def test_calibrate_model_may_be_a_bundle_verified_by_the_command(work: Path, tmp_path: Path) -> None:
    """A bundle (directory or packed) given as --model is opened and verified by the command, which
    passes its model.onnx on: the calibration library itself never imports bundle."""
    import hashlib
    import shutil

    from jetson_deploy.bundle import pack_bundle
    from support.bundles import write_bundle

    b = write_bundle(tmp_path / "cnn-1.0.0", "cnn", "1.0.0", {"model.onnx": (work / "cnn.onnx").read_bytes()})
    with pytest.raises(BadInput, match="is a bundle"):
        compute_int8(b, work / "set", tmp_path / "lib", progress=False)
    want = hashlib.sha256((work / "cnn.onnx").read_bytes()).hexdigest()
    runner = CliRunner()
    pack_bundle(b, tmp_path / "cnn.jdb")
    for i, model in enumerate((b, tmp_path / "cnn.jdb")):
        out = tmp_path / "set{}".format(i)
        shutil.copytree(str(work / "set"), str(out))
        res = runner.invoke(cli, ["calibrate", "-o", str(out), "--model", str(model), "--json", "--quiet", "--trt-version", "8.5.2"])
        assert res.exit_code == 0, res.stdout + res.stderr
        assert json.loads(res.stdout)["int8"]["onnx_sha256"] == want
    data = bytearray((b / "model.onnx").read_bytes())
    data[100] ^= 0xFF
    (b / "model.onnx").write_bytes(bytes(data))
    res = runner.invoke(cli, ["calibrate", "-o", str(tmp_path / "set0"), "--model", str(b), "--quiet"])
    assert res.exit_code == 1 and "model.onnx" in res.stderr and "sha256" in res.stderr, res.stderr


def test_model_that_does_not_take_the_samples_is_bad_input(work: Path, tmp_path: Path) -> None:
    write_spec(
        tmp_path / "spec.json",
        input={"name": "input", "shape": [1, 3, 48, 48], "dtype": "float32", "color": "rgb"},
        preprocess={"resize": [48, 48], "scale": 1.0 / 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    )
    build_calibration_set([work / "imgs"], tmp_path / "spec.json", tmp_path / "set", num=8, progress=False)
    with pytest.raises(BadInput, match="preprocessing is folded"):
        compute_int8(work / "cnn.onnx", tmp_path / "set", progress=False)
    assert not (tmp_path / "set" / "int8.json").exists()


def test_minmax_cache_header_and_trt10_version(work: Path, tmp_path: Path) -> None:
    r = compute_int8(work / "cnn.onnx", work / "set", tmp_path / "mm", method="minmax", trt_versions=("8.6.2", "10.3.0"), progress=False)
    info, amax = read_cache(r.cache_paths["10.3.0"])
    assert info["header"] == "TRT-100300-MinMaxCalibration"
    assert read_cache(r.cache_paths["8.6.2"])[0]["header"] == "TRT-8602-MinMaxCalibration"
    ranges = Ranges.load(r.ranges_path)
    assert ranges.method == "minmax" and amax["input"] == pytest.approx(ranges.amax()["input"], rel=1e-6)


def test_auto_exclude_finds_a_hidden_outlier_layer(work: Path, tmp_path: Path) -> None:
    model = make_hidden_outlier_onnx(tmp_path / "hidden.onnx")
    r = compute_int8(model, work / "set", tmp_path / "out", auto_exclude=True, progress=False)
    before, after = r.agreement_before, r.agreement
    assert before["cosine_mean"] < 0.95  # the outlier channel wrecks per-tensor INT8
    assert after["cosine_mean"] > 0.99 and after["value"] >= before["value"] and r.passed
    assert r.excluded_groups[0]["name"] == "/0/Conv"  # the layer producing the outlier, with its ReLU
    import onnx

    q = onnx.load(str(r.qdq_path))
    quantized = {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
    assert not quantized & set(r.excluded_groups[0]["tensors"])
