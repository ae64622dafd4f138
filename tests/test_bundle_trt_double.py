"""Engine selection and the engine cache against the TensorRT test double (tests/doubles),
through the real default builder (jetson_deploy.trt.build.build_engine)."""
import hashlib
import struct

import pytest

pytestmark = pytest.mark.needs("onnx", "onnxruntime")

from support.bundles import flip_byte  # noqa: E402
from doubles import onnx_models  # noqa: E402
from doubles import tensorrt_double as td  # noqa: E402
from jetson_deploy.bundle import BundleWriter, EngineCache, open_bundle, resolve_engine  # noqa: E402

TENSORS = ["input", "conv_out", "relu_out", "gap_out", "flat_out", "logits"]


def _calib_cache(trt_version: str) -> bytes:
    vint = td._version_int(trt_version)
    lines = ["TRT-{}-EntropyCalibration2".format(vint)]
    for i, name in enumerate(TENSORS):
        lines.append("{}: {}".format(name, struct.pack(">f", 0.01 * (i + 1)).hex()))
    return ("\n".join(lines) + "\n").encode()


def _bundle(tmp_path, qdq=False, calib=None):
    onnx = onnx_models.classifier(tmp_path / "m.onnx", hw=8)
    with BundleWriter(tmp_path / "demo-0.1.0", name="demo", version="0.1.0") as w:
        w.add_file(onnx, "model.onnx", kind="onnx")
        if qdq:
            w.add_file(onnx_models.qdq_classifier(tmp_path / "q.onnx"), "model.qdq.onnx", kind="onnx-qdq")
        if calib:
            w.add_bytes(_calib_cache(calib), "calibration/{}.cache".format(".".join(calib.split(".")[:3])), kind="calib-cache", target={"tensorrt": calib})
        w.manifest["spec"] = {"task": "classify", "input": {"name": "input", "shape": [1, 3, 8, 8], "dtype": "float32", "color": "rgb"},
                              "preprocess": {"resize": [8, 8]}, "outputs": ["logits"], "labels": ["a", "b", "c", "d"]}
    return open_bundle(tmp_path / "demo-0.1.0")


def _sha(path):
    return hashlib.sha256(open(str(path), "rb").read()).hexdigest()


def test_miss_build_hit_corrupt_rebuild_with_double(tmp_path, monkeypatch):
    trt = td.install(monkeypatch, "8.6")
    b = _bundle(tmp_path)
    cache = EngineCache(tmp_path / "cache")
    p1, how = resolve_engine(b, trt.__version__, 87, "fp16", cache=cache)
    assert how == "built" and len(trt._double.builds) == 1
    plan = td.read_plan(p1.read_bytes())
    assert "FP16" in plan["flags"] and plan["onnx_sha256"] == _sha(b.root / "model.onnx")
    assert plan["inputs"][0]["shape"] == [1, 3, 8, 8]
    p2, how = resolve_engine(b, trt.__version__, 87, "fp16", cache=cache)
    assert (p2, how) == (p1, "cache-hit") and len(trt._double.builds) == 1
    flip_byte(p1, 40)
    p3, how = resolve_engine(b, trt.__version__, 87, "fp16", cache=cache)
    assert how == "built" and len(trt._double.builds) == 2 and cache.last_event == "corrupt: sha256 mismatch"
    assert td.read_plan(p3.read_bytes())["flags"] == plan["flags"]
    # the plan deserializes in the double's runtime
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    assert runtime.deserialize_cuda_engine(p3.read_bytes()) is not None


def test_int8_qdq_on_86_and_calib_cache_on_82(tmp_path, monkeypatch):
    trt = td.install(monkeypatch, "8.6")
    b = _bundle(tmp_path, qdq=True, calib="8.2.1.8")
    p, how = resolve_engine(b, trt.__version__, 87, "int8", cache_dir=tmp_path / "c")
    plan = td.read_plan(p.read_bytes())
    assert how == "built" and plan["int8"]["mode"] == "explicit" and plan["onnx_sha256"] == _sha(b.root / "model.qdq.onnx")
    trt82 = td.install(monkeypatch, "8.2")
    p, how = resolve_engine(b, trt82.__version__, 72, "int8", cache_dir=tmp_path / "c")
    plan = td.read_plan(p.read_bytes())
    assert how == "built" and plan["int8"]["mode"] == "calibrator" and plan["onnx_sha256"] == _sha(b.root / "model.onnx")
    assert resolve_engine(b, trt82.__version__, 72, "int8", cache_dir=tmp_path / "c")[1] == "cache-hit"


def test_engine_command_builds_then_hits_with_double(tmp_path, monkeypatch):
    import json

    from support import cli_runner

    from jetson_deploy.cli import cli

    trt = td.install(monkeypatch, "10.x")
    _bundle(tmp_path)
    d = str(tmp_path / "demo-0.1.0")
    cache = str(tmp_path / "cache")
    args = ["bundle", "engine", d, "--sm", "87", "--precision", "fp16", "--cache-dir", cache, "--json"]
    r = cli_runner().invoke(cli, args[:-1] + ["--no-build", "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["how"] == "not-found"
    r = cli_runner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["how"] == "built" and out["tensorrt"] == "10.3.0" and len(trt._double.builds) == 1
    r = cli_runner().invoke(cli, args)
    assert json.loads(r.stdout)["how"] == "cache-hit" and len(trt._double.builds) == 1
    from click.testing import CliRunner  # stderr in .output on every click: the error line

    r = CliRunner().invoke(cli, ["bundle", "engine", d, "--sm", "53", "--precision", "int8", "--cache-dir", cache])
    assert r.exit_code == 2 and "no fast INT8" in r.output


def test_other_shapes_build_with_a_profile_on_a_dynamic_model(tmp_path, monkeypatch):
    trt = td.install(monkeypatch, "8.6")
    onnx = onnx_models.classifier(tmp_path / "dyn.onnx", batch=None, hw=8)
    with BundleWriter(tmp_path / "dyn-0.1.0", name="dyn", version="0.1.0") as w:
        w.add_file(onnx, "model.onnx", kind="onnx")
        w.manifest["spec"] = {"input": {"name": "input", "shape": [1, 3, 8, 8]}, "preprocess": {"resize": [8, 8]}, "outputs": ["logits"]}
    b = open_bundle(tmp_path / "dyn-0.1.0")
    p, how = resolve_engine(b, trt.__version__, 87, "fp16", shapes={"input": [4, 3, 8, 8]}, cache_dir=tmp_path / "c")
    plan = td.read_plan(p.read_bytes())
    assert how == "built" and plan["profiles"] == [{"input": [[4, 3, 8, 8], [4, 3, 8, 8], [4, 3, 8, 8]]}]
