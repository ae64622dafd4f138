"""The export files read by the vendors' own definitions: Triton's ModelConfig protobuf (tritonclient's
generated ``model_config_pb2``, parsed with ``google.protobuf.text_format``, where an unknown field is an
error) and GLib's key-file parser (``GLib.KeyFile``, what nvinfer and deepstream-app load configs with).

Not collected by the device legs (scripts/test_device_side.sh runs tests/test_bundle_*.py): tritonclient
needs Python >= 3.9 and PyGObject is the [stream] extra.
"""
import importlib.util
from pathlib import Path

import pytest

from jetson_deploy.bundle.export import export_bundle
from jetson_deploy.bundle.export import nvinfer_keys as K
from support.export_bundles import SPECS, export_bundle_dir, folded_bundle_dir
from support.keyfile_strict import parse, typed

TASKS = ("classify", "detect", "segment")
PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = [("8.6.2", 87, "6.0", "orin"), ("8.5.2", 72, "5.1", "xavier")]
_PB2 = []


def model_config_pb2():
    """tritonclient's generated ModelConfig module.  ``tritonclient.grpc``'s __init__ needs grpcio; the
    generated file itself needs only protobuf, so it is loaded from the installed package when grpcio is absent."""
    if not _PB2:
        try:
            from tritonclient.grpc import model_config_pb2 as mod
        except (ImportError, RuntimeError):
            root = Path(list(importlib.util.find_spec("tritonclient").submodule_search_locations)[0])
            spec = importlib.util.spec_from_file_location("_triton_model_config_pb2", str(root / "grpc" / "model_config_pb2.py"))
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        _PB2.append(mod)
    return _PB2[0]


def parse_config(text):
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2().ModelConfig())


def onnx_io(path):
    import onnx

    m = onnx.load(str(path))
    inits = {i.name for i in m.graph.initializer}

    def dims(v):
        return [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]

    elem = {1: "TYPE_FP32", 2: "TYPE_UINT8", 10: "TYPE_FP16", 6: "TYPE_INT32", 7: "TYPE_INT64"}
    return ([(v.name, dims(v), elem[v.type.tensor_type.elem_type]) for v in m.graph.input if v.name not in inits],
            [(v.name, dims(v), elem[v.type.tensor_type.elem_type]) for v in m.graph.output])


def _io(cfg, tensors):
    pb2 = model_config_pb2()
    return [(t.name, list(t.dims), pb2.DataType.Name(t.data_type)) for t in tensors]


@pytest.mark.needs("tritonclient")
@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("task", TASKS)
def test_triton_config_is_a_modelconfig_matching_the_onnx_model(tmp_path, task, precision, dynamic):
    calib = ("8.6.2",) if precision == "int8" else ()
    b = export_bundle_dir(tmp_path / "b-1.0.0", task, precision, targets=TARGETS, calib=calib, dynamic=dynamic)
    export_bundle(b, "triton", tmp_path / "repo")
    model = tmp_path / "repo" / "net"
    cfg = parse_config((model / "config.pbtxt").read_text())
    assert cfg.name == "net" and cfg.platform == "tensorrt_plan"
    ins, outs = onnx_io(b / "model.onnx")
    if dynamic:
        assert cfg.max_batch_size == 8 and cfg.HasField("dynamic_batching")
        assert all(d[0] == -1 for _, d, _ in ins + outs)
        ins = [(n, d[1:], t) for n, d, t in ins]
        outs = [(n, d[1:], t) for n, d, t in outs]
    else:
        assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert _io(cfg, cfg.input) == ins and _io(cfg, cfg.output) == outs
    assert dict(cfg.cc_model_filenames) == {"8.7": "model_sm87.plan", "7.2": "model_sm72.plan"}
    for f in cfg.cc_model_filenames.values():
        assert (model / "1" / f).is_file()
    labelled = [o.label_filename for o in cfg.output if o.label_filename]
    assert labelled == (["labels.txt"] if task == "classify" else [])
    if labelled:
        assert (model / "labels.txt").read_text().splitlines() == SPECS[task]["labels"]


@pytest.mark.needs("tritonclient")
def test_onnxruntime_configs_and_unknown_fields(tmp_path):
    from google.protobuf import text_format

    export_bundle(folded_bundle_dir(tmp_path / "folded-1.0.0"), "triton", tmp_path / "repo")
    text = (tmp_path / "repo" / "folded" / "config.pbtxt").read_text()
    cfg = parse_config(text)
    pb2 = model_config_pb2()
    assert cfg.platform == "onnxruntime_onnx" and pb2.DataType.Name(cfg.input[0].data_type) == "TYPE_UINT8"
    assert list(cfg.input[0].dims) == [1, 16, 16, 3] and not cfg.cc_model_filenames
    with pytest.raises(text_format.ParseError):  # the check is strict: a field ModelConfig lacks fails
        parse_config(text + "\nmax_batch: 4\n")


# ---- GLib --------------------------------------------------------------------------------------
GETTERS = {"int": "get_integer", "double": "get_double", "bool": "get_boolean", "string": "get_string", "path": "get_string",
           "int-list": "get_integer_list", "double-list": "get_double_list", "string-list": "get_string_list"}


def _table(name, group):
    if name.startswith("config_infer_"):
        return K.PROPERTY if group == "property" else K.CLASS_ATTRS
    return K.app_group_keys(group)


@pytest.mark.needs("gi")
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("task", TASKS)
def test_deepstream_files_load_as_glib_key_files(tmp_path, task, precision):
    """Every key nvinfer/deepstream-app would read, read with the GLib getter their parsers call for it."""
    from gi.repository import GLib

    calib = ("8.6.2", "8.5.2") if precision == "int8" else ()
    b = export_bundle_dir(tmp_path / "b-1.0.0", task, precision, targets=TARGETS, calib=calib)
    out = tmp_path / "ds"
    export_bundle(b, "deepstream", out, source="clip with spaces;1.mp4")
    files = sorted(out.glob("*config*.txt"))
    assert len(files) >= 4
    for path in files:
        text = path.read_text()
        kf = GLib.KeyFile()
        assert kf.load_from_data(text, len(text.encode()), GLib.KeyFileFlags.NONE)
        ours = parse(text)
        groups = kf.get_groups()[0]
        assert list(groups) == list(ours), path.name
        for group in groups:
            table = _table(path.name, group)
            keys = kf.get_keys(group)[0]
            assert list(keys) == list(ours[group])
            for key in keys:
                assert key in table, "{}: [{}] {} not in the cited key table".format(path.name, group, key)
                kind = table[key][0]
                value = getattr(kf, GETTERS[kind])(group, key)
                assert value == typed(ours[group][key], kind), (path.name, key, value)
    app = GLib.KeyFile()
    app.load_from_file(str(out / "deepstream_app_config.txt"), GLib.KeyFileFlags.NONE)
    assert app.get_string("source0", "uri") == "file://clip with spaces;1.mp4"  # a path, resolved from the config's directory
