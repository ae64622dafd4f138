"""TensorRT engine builds driven against the TensorRT test double (8.2, 8.5, 8.6, 10.x).

The double (tests/doubles/tensorrt_double.py) mirrors NVIDIA's documented Python API
per generation and serializes the build configuration into its plan, so these tests
check what the builder was asked to do, and the engine it produced runs for real.
"""
import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.needs("onnx", "onnxruntime")

from doubles import onnx_models, tensorrt_double as trtd  # noqa: E402

from jetson_deploy.trt import build as tb  # noqa: E402
from jetson_deploy.errors import BadInput, CheckFailed, MissingDependency  # noqa: E402
from jetson_deploy.trt import calibration_header, calibration_version_int, features, load_tensorrt, version_tuple  # noqa: E402

GENS = trtd.GENERATIONS


@pytest.fixture
def model(tmp_path):
    return onnx_models.classifier(tmp_path / "model.onnx")


def _run_plan(trt, plan, feeds):
    """Deserialize with the double's Runtime and run via whichever execute API it has."""
    from doubles.pycuda_double import device_array
    from doubles.tensorrt_double import read_pointer

    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan)
    assert engine is not None
    ctx = engine.create_execution_context()
    x = device_array(np.shape(feeds["input"]), np.float32)  # TensorRT takes (256-byte aligned) device memory
    x[...] = feeds["input"]
    out = device_array((x.shape[0], 4), np.float32)
    out[...] = 0
    if hasattr(ctx, "execute_async_v3"):
        ctx.set_input_shape("input", x.shape)
        ctx.set_tensor_address("input", x.ctypes.data)
        ctx.set_tensor_address("logits", out.ctypes.data)
        assert ctx.execute_async_v3(0)
    else:
        ctx.set_binding_shape(0, x.shape)
        assert ctx.execute_async_v2([x.ctypes.data, out.ctypes.data], 0)
    return out


# ---- compat layer ------------------------------------------------------------------------------
def test_versions_compare_as_int_tuples_not_strings():
    assert version_tuple("10.3.0.30") > version_tuple("8.6.2.3")
    assert "10.3.0.30" < "8.6.2.3"  # why strings must never be compared
    assert version_tuple("8.5.2.2") == (8, 5, 2, 2)
    assert version_tuple("10.0.1.post1") == (10, 0, 1)
    assert version_tuple("") == ()
    assert calibration_version_int("8.5.2.2") == 8502
    assert calibration_version_int("8.2.1.8") == 8201
    assert calibration_version_int("10.3.0.30") == 100300
    assert calibration_header("8.6.2", "minmax") == "TRT-8602-MinMaxCalibration"


@pytest.mark.parametrize("gen", GENS)
def test_features_match_each_generation(monkeypatch, gen):
    trt = trtd.install(monkeypatch, gen)
    f = features(load_tensorrt())
    v8, v85 = gen.startswith("8."), gen != "8.2"
    assert f.version == version_tuple(trtd.DEFAULT_VERSIONS[gen])
    assert f.build_serialized_network
    assert f.build_engine is v8
    assert f.memory_pool_limit is v85
    assert f.max_workspace_size is v8
    assert f.binding_api is v8 and f.execute_async_v2 is v8 and f.set_binding_shape is v8
    assert f.tensor_api is v85 and f.execute_async_v3 is v85 and f.set_input_shape is v85
    assert f.explicit_batch_required is v8 and f.explicit_batch_flag
    assert f.parser_node_name is (gen == "10.x")
    assert f.strict_types is v8 and f.obey_precision_constraints
    assert trt.__version__ == f.version_string


def test_load_tensorrt_missing_says_how_to_install(monkeypatch):
    trtd.uninstall(monkeypatch)
    with pytest.raises(MissingDependency, match="JetPack"):
        load_tensorrt("building engines")
    with pytest.raises(MissingDependency):
        tb.build_engine(__file__, "fp16")  # file check passes, then TensorRT is missing


# ---- FP16 / FP32 builds --------------------------------------------------------------------
@pytest.mark.parametrize("gen", GENS)
def test_fp16_build_sets_flags_workspace_and_runs(monkeypatch, model, gen):
    trt = trtd.install(monkeypatch, gen)
    res = tb.build_engine_with_report(model, "fp16", workspace_mb=256)
    plan, report = res.plan, res.report
    assert isinstance(plan, bytes)
    spec = trtd.read_plan(plan)
    assert spec["trt_version"] == trt.__version__
    assert "FP16" in spec["flags"] and "INT8" not in spec["flags"]
    assert spec["workspace"] == 256 << 20
    if gen == "8.2":
        assert spec["memory_pools"] == {"0": 256 << 20}  # through max_workspace_size
    assert report["flags"] == ["FP16"] and report["int8_source"] is None
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    ref = onnx_models.reference(model, {"input": x})["logits"]
    got = _run_plan(trt, plan, {"input": x})
    np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("gen", ["8.2", "10.x"])
def test_fp32_build_has_no_precision_flags(monkeypatch, model, gen):
    trtd.install(monkeypatch, gen)
    spec = trtd.read_plan(tb.build_engine(model, "fp32"))
    assert not {"FP16", "INT8"} & set(spec["flags"])


def test_old_builder_without_build_serialized_network_uses_build_engine(monkeypatch, model):
    trt = trtd.install(monkeypatch, "8.2")
    calls = []
    orig = trt.Builder.build_engine

    def spy(self, network, config):
        calls.append("build_engine")
        return orig(self, network, config)

    monkeypatch.delattr(trt.Builder, "build_serialized_network")
    monkeypatch.setattr(trt.Builder, "build_engine", spy)
    plan = tb.build_engine(model, "fp16")
    assert calls == ["build_engine"]
    assert trtd.read_plan(plan)["flags"] == ["FP16"]


def test_network_without_explicit_batch_is_rejected_by_82_parser(monkeypatch, model):
    """Why the flag matters on 8.x: the double's 8.2 parser refuses implicit-batch networks."""
    trt = trtd.install(monkeypatch, "8.2")
    logger = trt.Logger()
    net = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(net, logger)
    assert not parser.parse(model.read_bytes())
    assert "explicit batch" in parser.get_error(0).desc()


# ---- parser errors --------------------------------------------------------------------------
@pytest.mark.parametrize("gen", ["8.2", "8.6", "10.x"])
def test_unsupported_node_is_named_in_one_line(monkeypatch, tmp_path, gen):
    trtd.install(monkeypatch, gen)
    path = onnx_models.classifier(tmp_path / "model.onnx", extra_op="NonMaxSuppressionX", extra_domain="custom.ops")
    with pytest.raises(BadInput) as exc:
        tb.build_engine(path, "fp16")
    msg = str(exc.value)
    assert msg.startswith("model.onnx: TensorRT's ONNX parser failed at node 'Foo_3' (op NonMaxSuppressionX): ")
    assert "Plugin not found" in msg and "\n" not in msg


def test_op_unsupported_only_in_82_is_reported_there(monkeypatch, tmp_path):
    trtd.install(monkeypatch, "8.2")
    path = onnx_models.classifier(tmp_path / "m.onnx", extra_op="RoiAlign")  # node carries no valid inputs: parser-only check
    with pytest.raises(BadInput, match=r"node 'Foo_3' \(op RoiAlign\).*TensorRT 8.2.1.8 has no importer"):
        tb.build_engine(path, "fp16")


def test_garbage_onnx_is_a_clear_error(monkeypatch, tmp_path):
    trtd.install(monkeypatch, "10.x")
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x00\x01 not a protobuf at all" * 3)
    with pytest.raises(BadInput, match=r"broken.onnx: TensorRT's ONNX parser failed: Failed to parse ONNX model"):
        tb.build_engine(bad, "fp16")
    with pytest.raises(BadInput, match="does not exist"):
        tb.build_engine(tmp_path / "missing.onnx", "fp16")


# ---- INT8 -------------------------------------------------------------------------------------
def test_int8_refused_on_gpu_without_fast_int8(monkeypatch, model):
    trtd.install(monkeypatch, "8.2", fast_int8=False)  # Jetson Nano, SM 5.3
    with pytest.raises(BadInput, match=r"no fast INT8.*--precision fp16"):
        tb.build_engine(model, "int8", dynamic_ranges={"input": 2.0})
    assert trtd.read_plan(tb.build_engine(model, "fp16"))["flags"] == ["FP16"]  # FP16 still builds


def test_int8_needs_exactly_one_source(monkeypatch, model, tmp_path):
    trtd.install(monkeypatch, "8.6")
    with pytest.raises(BadInput, match="INT8 needs calibration"):
        tb.build_engine(model, "int8")
    with pytest.raises(BadInput, match="only applies to --precision int8"):
        tb.build_engine(model, "fp16", dynamic_ranges={"input": 1.0})
    with pytest.raises(BadInput, match="give one INT8 source"):
        tb.build_engine(model, "int8", dynamic_ranges={"input": 1.0}, calib_cache=tmp_path / "c")


@pytest.mark.parametrize("gen", ["8.2", "10.x"])
def test_int8_from_dynamic_ranges(monkeypatch, model, tmp_path, gen):
    trtd.install(monkeypatch, gen)
    ranges = {"input": 2.5, "conv_out": [-3.0, 3.0], "relu_out": {"amax": 3.0}, "gap_out": {"min": -1.0, "max": 1.0},
              "not_in_model": 9.0}
    res = tb.build_engine_with_report(model, "int8", dynamic_ranges=ranges)
    spec, report = trtd.read_plan(res.plan), res.report
    assert {"INT8", "FP16"} <= set(spec["flags"])
    assert spec["int8"]["mode"] == "dynamic_ranges"
    assert spec["int8"]["ranges"]["input"] == [-2.5, 2.5]
    assert spec["int8"]["ranges"]["relu_out"] == [-3.0, 3.0]
    assert set(spec["int8"]["missing"]) == {"flat_out", "logits"}
    assert report["dynamic_ranges"] == {"given": 5, "applied": 4, "network_tensors": 6}
    # the calibration helper's ranges.json format
    rj = tmp_path / "ranges.json"
    rj.write_text(json.dumps({"kind": "int8-ranges", "tensors": {"input": {"min": -1.5, "max": 1.5, "amax": 1.5}}}))
    spec = trtd.read_plan(tb.build_engine(model, "int8", dynamic_ranges=rj))
    assert spec["int8"]["ranges"] == {"input": [-1.5, 1.5]}
    with pytest.raises(BadInput, match="match a tensor"):
        tb.build_engine(model, "int8", dynamic_ranges={"other_model_tensor": 1.0})


@pytest.mark.parametrize("gen", ["8.5", "10.x"])
def test_int8_from_qdq_model_is_explicit(monkeypatch, tmp_path, gen):
    trtd.install(monkeypatch, gen)
    path = onnx_models.qdq_classifier(tmp_path / "model.qdq.onnx")
    res = tb.build_engine_with_report(path, "int8")
    spec, report = trtd.read_plan(res.plan), res.report
    assert spec["int8"] == {"mode": "explicit"} and "INT8" in spec["flags"]
    assert report["int8_source"] == "qdq"
    with pytest.raises(BadInput, match="already quantized"):
        tb.build_engine(path, "int8", dynamic_ranges={"input": 1.0})
    with pytest.raises(BadInput, match=r"model.qdq.onnx is quantized \(Q/DQ nodes\): build it with --precision int8"):
        tb.build_engine(path, "fp16")


def test_calibration_cache_for_another_version_is_refused(monkeypatch, model, tmp_path):
    trtd.install(monkeypatch, "8.6")
    cache = tmp_path / "calib.cache"
    cache.write_text("TRT-8502-EntropyCalibration2\ninput: 3c010a14\n")
    with pytest.raises(BadInput, match=r"written for TensorRT 8.5.2 \(header TRT-8502\) but this is TensorRT 8.6.2.3"):
        tb.build_engine(model, "int8", calib_cache=cache)
    cache.write_text("not a cache\n")
    with pytest.raises(BadInput, match="not a TensorRT calibration cache"):
        tb.build_engine(model, "int8", calib_cache=cache)


@pytest.mark.parametrize("gen", ["8.2", "8.6", "10.x"])
def test_calibration_cache_is_read_not_recalibrated(monkeypatch, model, tmp_path, gen):
    trt = trtd.install(monkeypatch, gen)
    cache = tmp_path / "calib.cache"
    header = calibration_header(trt.__version__, "entropy2")
    text = header + "\ninput: 3c010a14\nconv_out: 3d000000\n"
    cache.write_text(text)
    res = tb.build_engine_with_report(model, "int8", calib_cache=cache)
    spec, report = trtd.read_plan(res.plan), res.report
    assert spec["int8"]["source"] == "cache" and spec["int8"]["batches"] == 0
    assert spec["int8"]["scales"]["conv_out"] == pytest.approx(0.03125)
    assert report["int8_source"] == "calibration-cache"
    assert cache.read_text() == text  # read-only: never rewritten


# ---- shapes, timing cache, DLA --------------------------------------------------------------
@pytest.mark.parametrize("gen", ["8.2", "10.x"])
def test_dynamic_batch_needs_a_valid_profile(monkeypatch, tmp_path, gen):
    trtd.install(monkeypatch, gen)
    path = onnx_models.classifier(tmp_path / "dyn.onnx", batch=None)
    with pytest.raises(BadInput, match=r"dynamic input\(s\) \['input'\]"):
        tb.build_engine(path, "fp16")
    prof = {"input": ([1, 3, 8, 8], [4, 3, 8, 8], [8, 3, 8, 8])}
    spec = trtd.read_plan(tb.build_engine(path, "fp16", profiles=prof))
    assert spec["profiles"] == [{"input": [[1, 3, 8, 8], [4, 3, 8, 8], [8, 3, 8, 8]]}]
    assert spec["inputs"][0]["shape"] == [-1, 3, 8, 8]
    two = [prof, {"input": {"min": [8, 3, 8, 8], "opt": [16, 3, 8, 8], "max": [32, 3, 8, 8]}}]
    assert len(trtd.read_plan(tb.build_engine(path, "fp16", profiles=two))["profiles"]) == 2
    with pytest.raises(BadInput, match="min <= opt <= max"):
        tb.build_engine(path, "fp16", profiles={"input": ([4, 3, 8, 8], [2, 3, 8, 8], [8, 3, 8, 8])})
    with pytest.raises(BadInput, match="do not fit the model's shape"):
        tb.build_engine(path, "fp16", profiles={"input": ([1, 3, 16, 16], [1, 3, 16, 16], [1, 3, 16, 16])})
    with pytest.raises(BadInput, match="has inputs"):
        tb.build_engine(path, "fp16", profiles={"images": ([1, 3, 8, 8], [1, 3, 8, 8], [1, 3, 8, 8])})


@pytest.mark.parametrize("gen", ["8.2", "10.x"])
def test_timing_cache_is_saved_and_reused(monkeypatch, model, tmp_path, gen):
    trtd.install(monkeypatch, gen)
    tc = tmp_path / "cache" / "timing.cache"
    res1 = tb.build_engine_with_report(model, "fp16", timing_cache_path=tc)
    s1, r1 = trtd.read_plan(res1.plan), res1.report
    assert tc.is_file() and r1["timing_cache_loaded"] is False
    assert s1["timing_cache"] == {"hits": 0, "misses": 5}
    res2 = tb.build_engine_with_report(model, "fp16", timing_cache_path=tc)
    s2, r2 = trtd.read_plan(res2.plan), res2.report
    assert r2["timing_cache_loaded"] is True
    assert s2["timing_cache"] == {"hits": 5, "misses": 0}
    assert [p for p in os.listdir(tc.parent) if p != "timing.cache"] == []  # atomic: no temp files left
    tc.write_bytes(b"corrupt")
    s3 = trtd.read_plan(tb.build_engine(model, "fp16", timing_cache_path=tc))
    assert s3["timing_cache"] == {"hits": 0, "misses": 5}


def test_dla_core_with_gpu_fallback(monkeypatch, tmp_path):
    trtd.install(monkeypatch, "8.5", num_dla_cores=2)  # Xavier / Orin AGX
    path = onnx_models.classifier(tmp_path / "m.onnx", extra_op="Abs")  # Abs: not a DLA layer
    res = tb.build_engine_with_report(path, "fp16", dla_core=1)
    spec, report = trtd.read_plan(res.plan), res.report
    assert spec["device"] == "DLA" and spec["dla_core"] == 1
    assert report["dla_core"] == 1 and report["flags"] == ["FP16", "GPU_FALLBACK"]
    assert "GPU_FALLBACK" in spec["flags"] and spec["gpu_fallback_layers"] == ["Foo_3"]
    with pytest.raises(CheckFailed, match=r"TensorRT 8.5.2.2 failed to build m.onnx: .*not supported on DLA"):
        tb.build_engine(path, "fp16", dla_core=0, gpu_fallback=False)
    with pytest.raises(BadInput, match=r"DLA core 2 does not exist: this device has 2"):
        tb.build_engine(path, "fp16", dla_core=2)
    with pytest.raises(BadInput, match="DLA runs FP16 or INT8 only"):
        tb.build_engine(path, "fp32", dla_core=0)


def test_dla_requested_on_device_without_dla(monkeypatch, model):
    trtd.install(monkeypatch, "8.6", num_dla_cores=0)  # Orin Nano
    with pytest.raises(BadInput, match="no DLA cores"):
        tb.build_engine(model, "fp16", dla_core=0)


@pytest.mark.parametrize("gen,flag", [("8.2", "OBEY_PRECISION_CONSTRAINTS"), ("10.x", "OBEY_PRECISION_CONSTRAINTS")])
def test_strict_types_uses_precision_constraints(monkeypatch, model, gen, flag):
    trtd.install(monkeypatch, gen)
    assert flag in trtd.read_plan(tb.build_engine(model, "fp16", strict_types=True))["flags"]


# ---- engine names -----------------------------------------------------------------------------
def test_target_and_engine_names(monkeypatch):
    trt = trtd.install(monkeypatch, "10.x")
    t = tb.target_for(trt, 87, "int8")
    assert t == {"tensorrt": "10.3.0.30", "sm": 87, "precision": "int8"}
    assert tb.engine_relpath(t) == "engines/10.3.0_sm87_int8.engine"  # release: major.minor.patch
    from jetson_deploy.bundle import engine_filename as bundle_engine_filename

    assert tb.engine_relpath(t) == bundle_engine_filename(trt.__version__, 87, "int8")  # same name as the bundle's
    for spelling in (87, (8, 7), "8.7", "sm87", "sm_87", {"sm": 87}, {"gpu": {"sm": 87}}):
        assert tb.target_for(trt, spelling)["sm"] == 87
    assert tb.target_for(trt, 53, "fp16")["sm"] == 53
    with pytest.raises(BadInput):
        tb.target_for(trt, 87, "int4")
    assert tb.current_target("fp16", device=72) == {"tensorrt": "10.3.0.30", "sm": 72, "precision": "fp16"}
    assert tb.release_version("8.6.2.3") == "8.6.2" and tb.release_version("10.1") == "10.1.0"


def test_double_refuses_plans_from_another_version(monkeypatch, model):
    """A plan is tied to its TensorRT version: the double's Runtime returns None, like TensorRT."""
    trtd.install(monkeypatch, "8.5")
    plan = tb.build_engine(model, "fp16")
    trt10 = trtd.make_tensorrt("10.x")
    logger = trt10.Logger(trt10.Logger.INTERNAL_ERROR)
    assert trt10.Runtime(logger).deserialize_cuda_engine(plan) is None
    assert any("not compatible with this version" in m for _, m in logger.messages)
    assert trt10.Runtime(logger).deserialize_cuda_engine(b"garbage") is None


def test_all_unsupported_nodes_are_counted_on_10x_but_82_stops_at_the_first(monkeypatch, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("MyOpA", ["x"], ["a"], name="first_custom", domain="my.ops"),
             helper.make_node("Relu", ["a"], ["b"], name="relu"),
             helper.make_node("MyOpB", ["b"], ["y"], name="second_custom", domain="my.ops")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("my.ops", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    trtd.install(monkeypatch, "10.x")
    with pytest.raises(BadInput, match=r"at node 'first_custom' \(op MyOpA\).*\(\+1 more: 'second_custom'\)$"):
        tb.build_engine(path, "fp16")
    trtd.install(monkeypatch, "8.2")
    with pytest.raises(BadInput) as exc:
        tb.build_engine(path, "fp16")
    assert "node 'first_custom' (op MyOpA)" in str(exc.value) and "more" not in str(exc.value)


def test_parser_errors_without_onnx_package_name_the_node_index(monkeypatch, tmp_path):
    """On a device without the onnx package, TensorRT 8.x's node index is all there is."""
    trtd.install(monkeypatch, "8.5")
    path = onnx_models.classifier(tmp_path / "model.onnx", extra_op="Weird", extra_domain="x.y")
    import jetson_deploy.trt.logger as lg

    monkeypatch.setattr(lg, "_onnx_nodes", lambda p: [])
    with pytest.raises(BadInput, match=r"model.onnx: TensorRT's ONNX parser failed at node #5: "):
        tb.build_engine(path, "fp16")


@pytest.mark.parametrize("gen", ["8.2", "10.x"])
def test_timing_cache_from_another_gpu_is_reported_and_rebuilt(monkeypatch, model, tmp_path, gen):
    """Issue #12 item 8: set_timing_cache returns False for another device's cache (it does not raise):
    the report says not loaded, and the cache is rebuilt for this GPU."""
    import sys

    tc = tmp_path / "timing.cache"
    monkeypatch.setitem(sys.modules, "tensorrt", trtd.make_tensorrt(gen, sm=72))  # Xavier writes the cache
    tb.build_engine(model, "fp16", timing_cache_path=tc)
    trtd.install(monkeypatch, gen, sm=87)  # Orin reads it
    res = tb.build_engine_with_report(model, "fp16", timing_cache_path=tc)
    assert res.report["timing_cache_loaded"] is False
    assert trtd.read_plan(res.plan)["timing_cache"] == {"hits": 0, "misses": 5}
    res2 = tb.build_engine_with_report(model, "fp16", timing_cache_path=tc)  # rewritten for this GPU
    assert res2.report["timing_cache_loaded"] is True
    assert trtd.read_plan(res2.plan)["timing_cache"] == {"hits": 5, "misses": 0}


@pytest.mark.parametrize("algo,calibrator", [("EntropyCalibration", "ENTROPY_CALIBRATION"),
                                             ("MinMaxCalibration", "MINMAX_CALIBRATION")])
def test_calibration_cache_is_served_by_the_calibrator_its_header_names(monkeypatch, model, tmp_path, algo, calibrator):
    """Issue #12 item 7: TensorRT uses a cache only when its algorithm token matches the calibrator
    (sampleINT8/README.md, release/8.2 L115-145); an EntropyCalibration (v1) cache served by an
    EntropyCalibrator2 is skipped and calibration finds no batches."""
    from jetson_deploy.trt.compat import calibration_version_int

    trt = trtd.install(monkeypatch, "8.2")
    cache = tmp_path / "calib.cache"
    cache.write_text("TRT-{}-{}\ninput: 3c010a14\nconv_out: 3d000000\n".format(calibration_version_int(trt.__version__), algo))
    res = tb.build_engine_with_report(model, "int8", calib_cache=cache)
    spec = trtd.read_plan(res.plan)
    assert spec["int8"]["source"] == "cache" and spec["int8"]["header"].endswith("-" + algo)
    cache.write_text("TRT-{}-LegacyCalibration\ninput: 3c010a14\n".format(calibration_version_int(trt.__version__)))
    with pytest.raises(BadInput, match="LegacyCalibrator"):
        tb.build_engine(model, "int8", calib_cache=cache)
