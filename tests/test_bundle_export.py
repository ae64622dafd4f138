"""`bundle export`: DeepStream (Gst-nvinfer) configs and Triton model repositories from a bundle.

Runs on the device legs too (no torch, no tritonclient, no PyGObject): the DeepStream files are read
with a strict GLib key-file reader (support/keyfile_strict.py) and the key tables; the vendors' own
parsers (Triton's ModelConfig protobuf, GLib.KeyFile) check the same files in tests/test_export_vendors.py.
"""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jetson_deploy.bundle.export import export_bundle, export_support
from jetson_deploy.bundle.export import nvinfer_keys as K
from jetson_deploy.bundle.export.keyfile import format_value
from jetson_deploy.errors import BadInput
from jetson_deploy.preprocess import preprocess, resize_frame
from jetson_deploy.spec import ModelSpec
from support.export_bundles import SPECS, export_bundle_dir, folded_bundle_dir, tree_digest
from support.keyfile_strict import KeyFileError, parse, typed

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("classify", "detect", "segment")
PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = [("8.6.2", 87, "6.0", "orin"), ("8.5.2", 72, "5.1", "xavier")]
NETWORK_TYPE = {"detect": 0, "classify": 1, "segment": 2}
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}
COLOR = {"rgb": 0, "bgr": 1, "gray": 2}


def jd(*args, cwd=None):
    """The CLI as a user runs it: the console script beside this interpreter (else python -m jetson_deploy)."""
    exe = Path(sys.executable).parent / "jetson-deploy"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "jetson_deploy"]
    return subprocess.run(cmd + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, cwd=str(cwd) if cwd else None, timeout=120)


def make(tmp_path, task="classify", precision="fp16", **kw):
    calib = kw.pop("calib", ("8.6.2", "8.5.2") if precision == "int8" else ())
    return export_bundle_dir(tmp_path / "{}-{}-1.0.0".format(task, precision), task, precision, targets=kw.pop("targets", TARGETS),
                             calib=calib, **kw)


def read_nvinfer(path):
    """{(group, key): typed value} of a Gst-nvinfer config; fails on any key outside the cited tables."""
    groups = parse(Path(path).read_text())
    assert "property" in groups and set(groups) <= {"property", "class-attrs-all"}, set(groups)
    out = {}
    for group, keys in groups.items():
        table = K.PROPERTY if group == "property" else K.CLASS_ATTRS
        for key, raw in keys.items():
            assert key in table, "[{}] {} is not in nvinfer_keys".format(group, key)
            out[(group, key)] = typed(raw, table[key][0])
    return out


def read_app(path):
    out = {}
    for group, keys in parse(Path(path).read_text()).items():
        table = K.app_group_keys(group)
        for key, raw in keys.items():
            assert key in table, "[{}] {} is not in nvinfer_keys.APP".format(group, key)
            out[(group, key)] = typed(raw, table[key][0])
    return out


# ---- DeepStream -------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("task", TASKS)
def test_deepstream_configs_per_task_and_precision(tmp_path, task, precision):
    b = make(tmp_path, task, precision)
    out = tmp_path / "ds"
    res = export_bundle(b, "deepstream", out)
    spec = SPECS[task]
    configs = sorted(p.name for p in out.glob("config_infer_*.txt"))
    onnx_configs = ["config_infer_onnx_trt8.5.2.txt", "config_infer_onnx_trt8.6.2.txt"] if precision == "int8" else ["config_infer_onnx.txt"]
    engine_configs = ["config_infer_{}_sm{}_{}.txt".format(t, sm, precision) for t, sm, _, _ in TARGETS]
    assert configs == sorted(onnx_configs + engine_configs)
    for name in configs:
        cfg = read_nvinfer(out / name)
        p = lambda k: cfg.get(("property", k))  # noqa: E731
        assert p("network-type") == NETWORK_TYPE[task] and p("network-mode") == NETWORK_MODE[precision], name
        assert p("model-color-format") == COLOR[spec["input"]["color"]]
        assert p("infer-dims") == spec["input"]["shape"][1:] and p("batch-size") == 1
        assert p("output-blob-names") == spec["outputs"] and p("gie-unique-id") == 1
        assert (out / p("onnx-file")).read_bytes() == (b / "model.onnx").read_bytes()
        if name in engine_configs:
            engine = "engines/" + name[len("config_infer_"):-len(".txt")] + ".engine"
            assert p("model-engine-file") == engine and (out / engine).read_bytes() == (b / engine).read_bytes()
        else:
            assert p("model-engine-file") is None
        if precision == "int8":
            trt = re.search(r"(\d+\.\d+\.\d+)", name).group(1)
            assert p("int8-calib-file") == "calibration/{}.cache".format(trt) and (out / p("int8-calib-file")).is_file()
        else:
            assert p("int8-calib-file") is None
        assert (p("num-detected-classes") == len(spec["labels"])) == (task in ("detect", "segment"))
        letterbox = spec["preprocess"]["keep_aspect"]
        assert p("maintain-aspect-ratio") is (True if letterbox else None) and p("symmetric-padding") is (True if letterbox else None)
        assert (("class-attrs-all", "pre-cluster-threshold") in cfg) == (task == "detect")
        assert p("labelfile-path") == "labels.txt"
    labels = (out / "labels.txt").read_text()
    assert labels == (";".join(spec["labels"]) + "\n" if task == "classify" else "\n".join(spec["labels"]) + "\n")
    app = read_app(out / "deepstream_app_config.txt")
    assert (out / app[("primary-gie", "config-file")]).is_file() and app[("primary-gie", "gie-unique-id")] == 1
    assert app[("source0", "uri")].startswith("file://") and app[("source0", "type")] == 3
    assert set(res["files"]) == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != ".jetson-deploy-export.json"}


@pytest.mark.parametrize("task", TASKS)
def test_net_scale_factor_and_offsets_reproduce_preprocess(tmp_path, task):
    """nvinfer's y = net-scale-factor * (x - offsets[c]) (float32, nvdsinfer_conversion.cu), read back from the
    written config and applied to the pixels in model-color-format order, equals preprocess() to 1e-6."""
    b = make(tmp_path, task, "fp32", targets=[])
    export_bundle(b, "deepstream", tmp_path / "ds")
    cfg = read_nvinfer(tmp_path / "ds" / "config_infer_onnx.txt")
    nsf = np.float32(cfg[("property", "net-scale-factor")])
    offsets = np.asarray(cfg[("property", "offsets")], dtype=np.float32)
    fmt = cfg[("property", "model-color-format")]
    spec = ModelSpec.from_dict(SPECS[task])
    rng = np.random.RandomState(7)
    for shape in ((spec.height, spec.width, 3), (spec.height * 2 + 6, spec.width * 3, 3)):
        frame = rng.randint(0, 256, size=shape).astype(np.uint8)
        bgr = resize_frame(frame, spec)  # scaling is not what this test is about: both sides get the same pixels
        if fmt == 0:
            x = bgr[:, :, ::-1]
        elif fmt == 1:
            x = bgr
        else:
            import cv2

            x = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[:, :, None]
        assert x.shape[2] == len(offsets)
        y = nsf * (x.astype(np.float32) - offsets)  # the ...WithMeanSubtraction kernels, per channel
        ref = preprocess(frame, spec)
        err = np.abs(y.transpose(2, 0, 1) - ref).max()
        assert err <= 1e-6, (task, err)


def test_per_channel_std_is_refused_in_one_line(tmp_path):
    spec = json.loads(json.dumps(SPECS["classify"]))
    spec["preprocess"]["std"] = [0.229, 0.224, 0.225]
    b = export_bundle_dir(tmp_path / "imagenet-1.0.0", "classify", "fp16", targets=TARGETS[:1], spec=spec)
    r = jd("bundle", "export", b, "--format", "deepstream", "-o", tmp_path / "ds")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "std differs per channel (0.229, 0.224, 0.225)" in lines[0] and "--fold-preprocess" in lines[0], lines[0]
    assert "net-scale-factor" in lines[0] and not (tmp_path / "ds").exists()
    info = json.loads(jd("bundle", "inspect", b, "--json").stdout)
    assert info["exports"]["deepstream"]["ok"] is False and "std differs per channel" in info["exports"]["deepstream"]["detail"]
    assert info["exports"]["triton"]["ok"] is True
    r = jd("bundle", "export", b, "--format", "triton", "-o", tmp_path / "tr")
    assert r.returncode == 0, r.stderr


def test_folded_uint8_bundle_goes_to_triton_not_nvinfer(tmp_path):
    b = folded_bundle_dir(tmp_path / "folded-1.0.0")
    with pytest.raises(BadInput, match="uint8 NHWC .*nvinfer writes float32 tensors only"):
        export_bundle(b, "deepstream", tmp_path / "ds")
    res = export_bundle(b, "triton", tmp_path / "tr")
    text = (tmp_path / "tr" / "folded" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in text and "TYPE_UINT8" in text and "dims: [ 1, 16, 16, 3 ]" in text
    assert "folded/1/model.onnx" in res["files"]


def test_detector_and_letterbox_notes(tmp_path):
    res = export_bundle(make(tmp_path, "detect", "fp16"), "deepstream", tmp_path / "ds")
    notes = " ".join(res["notes"])
    assert "parse-bbox-func-name" in notes and "pads with black (0)" in notes
    assert "net-scale-factor = scale / std = 0.00392156863" in notes


def test_int8_without_calibration_cache_builds_fp16_and_says_so(tmp_path):
    b = make(tmp_path, "classify", "int8", calib=())
    res = export_bundle(b, "deepstream", tmp_path / "ds")
    cfg = read_nvinfer(tmp_path / "ds" / "config_infer_onnx.txt")
    assert cfg[("property", "network-mode")] == 2 and ("property", "int8-calib-file") not in cfg
    assert read_nvinfer(tmp_path / "ds" / "config_infer_8.6.2_sm87_int8.txt")[("property", "network-mode")] == 1
    assert any("without a TensorRT calibration cache" in n for n in res["notes"])


@pytest.mark.parametrize("task,folded,outputs", [("classify", "softmax-topk", ["scores", "classes"]), ("segment", "argmax", ["mask"])])
def test_deepstream_refuses_folded_postprocess(tmp_path, task, folded, outputs):
    spec = json.loads(json.dumps(SPECS[task]))
    spec["postprocess"] = {"folded": folded}
    b = export_bundle_dir(tmp_path / "f-1.0.0", task, "fp16", targets=[], spec=spec)
    with pytest.raises(BadInput, match="--fold-postprocess"):
        export_bundle(b, "deepstream", tmp_path / "ds")
    export_bundle(b, "triton", tmp_path / "tr")
    assert "label_filename" not in (tmp_path / "tr" / "net" / "config.pbtxt").read_text()


def test_label_with_separator_is_refused(tmp_path):
    spec = json.loads(json.dumps(SPECS["classify"]))
    spec["labels"] = ["cat;dog", "b", "c", "d"]
    b = export_bundle_dir(tmp_path / "semi-1.0.0", "classify", "fp16", targets=[], spec=spec)
    with pytest.raises(BadInput, match="holds ';'"):
        export_bundle(b, "deepstream", tmp_path / "ds")


def test_keyfile_values_escape_as_glib():
    from jetson_deploy.bundle.export.keyfile import escape

    assert escape(" a\\b\n") == "\\sa\\\\b\\n"
    raw = format_value("string-list", ["a;b", " c", "d\\e"])
    assert raw == "a\\;b;\\sc;d\\\\e" and typed(raw, "string-list") == ["a;b", " c", "d\\e"]
    assert typed(format_value("double", 1 / 3.0), "double") == 1 / 3.0
    with pytest.raises(KeyFileError):
        typed("a\\qb", "string")


# ---- Triton (layout; the protobuf parse is in test_export_vendors.py) ---------------------------------
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("task", TASKS)
def test_triton_repository_layout(tmp_path, task, precision):
    b = make(tmp_path, task, precision, dynamic=(task == "detect"))
    res = export_bundle(b, "triton", tmp_path / "repo")
    model = tmp_path / "repo" / "net"
    assert sorted(p.name for p in (model / "1").iterdir()) == ["model_sm72.plan", "model_sm87.plan"]
    for t, sm, _, _ in TARGETS:
        assert (model / "1" / "model_sm{}.plan".format(sm)).read_bytes() == (b / "engines/{}_sm{}_{}.engine".format(t, sm, precision)).read_bytes()
    text = (model / "config.pbtxt").read_text()
    assert 'key: "8.7"' in text and 'value: "model_sm87.plan"' in text and 'key: "7.2"' in text
    assert ("dynamic_batching" in text) == (task == "detect") and ("max_batch_size: 8" in text) == (task == "detect")
    assert ('label_filename: "labels.txt"' in text) == (task == "classify") and ((model / "labels.txt").is_file() == (task == "classify"))
    assert "net/config.pbtxt" in res["files"]


def _argmax_bundle(tmp_path, tensorrt):
    """A model with an int64 output (ArgMax), and one engine of ``tensorrt``."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("ArgMax", ["x"], ["cls"], axis=1, keepdims=0)], "am",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5])],
                              [helper.make_tensor_value_info("cls", TensorProto.INT64, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    target = {"tensorrt": tensorrt, "sm": 87, "precision": "fp16"}
    from support.bundles import write_bundle

    return write_bundle(tmp_path / "am-{}".format(tensorrt), "am", "1.0.0", {"model.onnx": model.SerializeToString(),
                        "engines/{}_sm87_fp16.engine".format(tensorrt): (b"PLAN", "engine", target)}, {"precision": "fp16"})


def test_triton_int64_outputs(tmp_path):
    """TensorRT before 10 has no INT64 bindings: a plan's int64 ONNX output is INT32; ONNX Runtime keeps INT64."""
    export_bundle(_argmax_bundle(tmp_path, "8.6.2"), "triton", tmp_path / "a")
    text = (tmp_path / "a" / "am" / "config.pbtxt").read_text()
    assert "TYPE_INT32" in text and "TYPE_INT64" not in text
    export_bundle(_argmax_bundle(tmp_path, "10.3.0"), "triton", tmp_path / "b")
    assert "TYPE_INT64" in (tmp_path / "b" / "am" / "config.pbtxt").read_text()
    export_bundle(_argmax_bundle(tmp_path, "8.6.2"), "triton", tmp_path / "c", use_onnx=True)
    assert "TYPE_INT64" in (tmp_path / "c" / "am" / "config.pbtxt").read_text()


def test_triton_onnx_and_tensorrt_choice(tmp_path):
    b = make(tmp_path, "classify", "fp16", targets=TARGETS + [("10.3.0", 87, "6.1", "orin")])
    with pytest.raises(BadInput, match="TensorRT 8.6.2 and 10.3.0 for sm87.*--tensorrt"):
        export_bundle(b, "triton", tmp_path / "a")
    res = export_bundle(b, "triton", tmp_path / "b", tensorrt="10.3")
    assert res["files"] == sorted(["README.txt", "net/1/model_sm87.plan", "net/config.pbtxt", "net/labels.txt"])
    with pytest.raises(BadInput, match="--tensorrt 7.1.3 matches no engine"):
        export_bundle(b, "triton", tmp_path / "c", tensorrt="7.1.3")
    export_bundle(b, "triton", tmp_path / "d", use_onnx=True)
    assert 'platform: "onnxruntime_onnx"' in (tmp_path / "d" / "net" / "config.pbtxt").read_text()
    assert (tmp_path / "d" / "net" / "1" / "model.onnx").read_bytes() == (b / "model.onnx").read_bytes()


# ---- round trip, output policy, inspect, the CLI ---------------------------------------------------
def test_signed_bundle_still_verifies_after_export(tmp_path):
    b = make(tmp_path, "classify", "int8")
    assert jd("bundle", "keygen", "-o", tmp_path / "key").returncode == 0
    assert jd("bundle", "sign", b, "--key", tmp_path / "key").returncode == 0
    before = tree_digest(b)
    for fmt, out in (("deepstream", "ds"), ("triton", "tr")):
        r = jd("bundle", "export", b, "--format", fmt, "-o", tmp_path / out)
        assert r.returncode == 0, r.stderr
    assert tree_digest(b) == before
    r = jd("bundle", "verify", b, "--key", tmp_path / "key.pub")
    assert r.returncode == 0 and "valid" in r.stdout, r.stdout + r.stderr
    (tmp_path / "ds" / "model.onnx").write_bytes(b"edited")  # a copy, not a hard link: the bundle stays intact
    assert jd("bundle", "verify", b, "--key", tmp_path / "key.pub").returncode == 0


def test_output_policy(tmp_path):
    b = make(tmp_path, "segment", "fp16")
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    r = jd("bundle", "export", b, "--format", "deepstream", "-o", user)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and str(user) in r.stderr and "not an export" in r.stderr
    assert (user / "notes.txt").read_text() == "keep me"
    os.symlink(str(user), str(tmp_path / "link"))
    r = jd("bundle", "export", b, "--format", "deepstream", "-o", tmp_path / "link")
    assert r.returncode == 2 and "symbolic link" in r.stderr
    r = jd("bundle", "export", b, "--format", "triton", "-o", b / "triton")
    assert r.returncode == 2 and "not inside it" in r.stderr and not (b / "triton").exists()
    out = tmp_path / "ds"
    assert jd("bundle", "export", b, "--format", "deepstream", "-o", out).returncode == 0
    (out / "stale.txt").write_text("old")
    r = jd("bundle", "export", b, "--format", "deepstream", "-o", out)  # an earlier export of ours: replaced whole
    assert r.returncode == 0 and not (out / "stale.txt").exists() and (out / "config_infer_onnx.txt").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".jd-")]


def test_packed_bundle_exports(tmp_path):
    b = make(tmp_path, "classify", "fp16")
    assert jd("bundle", "pack", b, "-o", tmp_path / "net.jdb").returncode == 0
    r = jd("bundle", "export", tmp_path / "net.jdb", "--format", "triton", "-o", tmp_path / "repo", "--json")
    assert r.returncode == 0, r.stderr
    assert "net/1/model_sm87.plan" in json.loads(r.stdout)["files"]


def test_inspect_lists_export_formats(tmp_path):
    b = make(tmp_path, "detect", "fp16")
    r = jd("bundle", "inspect", b)
    line = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith("exportable to"))
    assert "deepstream (nvinfer: onnx config" in line and "2 engine configs" in line and "triton (tensorrt_plan for sm72, sm87" in line
    folded = folded_bundle_dir(tmp_path / "folded-1.0.0")
    sup = export_support(json.loads((folded / "manifest.json").read_text()))
    assert sup["deepstream"]["ok"] is False and "uint8" in sup["deepstream"]["detail"] and sup["triton"]["ok"] is True
    r = jd("bundle", "inspect", folded)
    assert "not to deepstream: the engine input is uint8" in r.stdout


def _doc_commands():
    text = (ROOT / "docs" / "convert.md").read_text()
    section = text[text.index("## Exporting to DeepStream and Triton"):]
    return [ln.strip() for ln in section.splitlines() if ln.strip().startswith("jetson-deploy bundle export shapes-1.0.0 ")]


def test_the_commands_in_the_docs(tmp_path):
    cmds = _doc_commands()
    assert len(cmds) >= 2
    spec = json.loads((ROOT / "jetson_deploy" / "demo" / "spec.json").read_text())
    export_bundle_dir(tmp_path / "shapes-1.0.0", "classify", "fp16", targets=TARGETS, spec=spec, name="shapes")
    for cmd in cmds:
        r = jd(*shlex.split(cmd)[1:], cwd=tmp_path)
        assert r.returncode == 0, (cmd, r.stderr)
    assert (tmp_path / "shapes-deepstream" / "config_infer_8.6.2_sm87_fp16.txt").is_file()
    assert (tmp_path / "triton-repo" / "shapes" / "config.pbtxt").is_file()
