"""``bundle export --format triton``: a Triton model repository ``REPO/NAME/{config.pbtxt, 1/...}``.

Field meanings follow Triton's ``model_config.proto`` (triton-inference-server/common,
protobuf/model_config.proto): ``platform`` ``tensorrt_plan`` with ``cc_model_filenames`` (compute
capability "8.7" -> a plan file in the version directory) for the bundle's engines, or
``onnxruntime_onnx`` with ``model.onnx``.  Batching: when the model's batch axis is dynamic,
``max_batch_size`` is the engines' profile maximum, ``dims`` leave the batch out and
``dynamic_batching {}`` is on; with a fixed batch axis ``max_batch_size: 0`` and ``dims`` are the
full shapes ("the dimension/shape of the input and output tensors must exactly match").
"""
from typing import Any, Dict, List, Optional, Tuple

from ...errors import BadInput
from ..manifest import normalize_trt_version
from .model_io import bundle_io
from .output import ExportPlan
from .pbtxt import Enum, Msg, render
from .support import check_exportable, folded_postprocess, manifest_spec, triton_engines

#: dtype name -> Triton DataType (model_config.proto enum DataType)
TRITON_DTYPES = {"bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
                 "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
                 "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64",
                 "string": "TYPE_STRING", "bfloat16": "TYPE_BF16"}
VERSION_DIR = "1"
LABELS = "labels.txt"


def plan_file(sm: int) -> str:
    return "model_sm{}.plan".format(sm)


def cc_key(sm: int) -> str:
    """Triton's compute-capability key: SM 87 -> "8.7" (``cc_model_filenames``)."""
    return "{}.{}".format(sm // 10, sm % 10)


def _dynamic(dim: Any) -> bool:
    return not isinstance(dim, int) or dim < 0


def profile_max_batch(manifest: "Dict[str, Any]", input_name: str, spec_batch: int) -> "Tuple[int, str]":
    """(max batch, where it came from): the recorded TensorRT build profile, else convert's profile rule."""
    build = (manifest.get("conversion") or {}).get("build") or {}
    for prof in build.get("profiles") or []:
        shapes = prof.get(input_name) if isinstance(prof, dict) else None
        if shapes and len(shapes) == 3 and shapes[2] and isinstance(shapes[2][0], int):
            return int(shapes[2][0]), "the engines' optimization profile (conversion.build.profiles)"
    return max(8, spec_batch), "convert's profile for --dynamic-batch (max(8, spec batch)); engines built otherwise may allow less"


def batching(io: "Dict[str, List[Dict[str, Any]]]", manifest: "Dict[str, Any]", spec_batch: int) -> "Tuple[int, bool, str]":
    """(max_batch_size, dims leave out axis 0, why) for the model's I/O."""
    tensors = io["inputs"] + io["outputs"]
    if tensors and all(t["shape"] and _dynamic(t["shape"][0]) for t in tensors):
        mx, why = profile_max_batch(manifest, io["inputs"][0]["name"], spec_batch)
        return mx, True, "dynamic batch axis: max_batch_size {} from {}".format(mx, why)
    if any(t["shape"] and _dynamic(t["shape"][0]) for t in tensors):
        return 0, False, "the batch axis is dynamic on some tensors only: max_batch_size 0 with full shapes (-1 = any size)"
    return 0, False, "fixed batch axis: max_batch_size 0, dims are the model's full shapes"


def _dtype(t: "Dict[str, Any]", int64_as_int32: bool) -> str:
    dt = t["dtype"]
    if dt == "int64" and int64_as_int32:
        dt = "int32"  # TensorRT before 10 has no INT64 tensors: the plan's binding is INT32
    if dt not in TRITON_DTYPES:
        raise BadInput("triton: tensor {} has dtype {}, which Triton has no TYPE_ for".format(t["name"], dt))
    return TRITON_DTYPES[dt]


def tensor(t: "Dict[str, Any]", skip_batch: bool, int64_as_int32: bool, label: bool = False) -> "Msg":
    dims = [d if isinstance(d, int) and d >= 0 else -1 for d in t["shape"]]
    if skip_batch:
        dims = dims[1:]
    msg = Msg([("name", t["name"]), ("data_type", Enum(_dtype(t, int64_as_int32)))])
    if dims:
        msg.append(("dims", dims))
    else:  # a scalar: Triton's documented form is dims [1] reshaped to []
        msg += [("dims", [1]), ("reshape", Msg([("shape", [])]))]
    if label:
        msg.append(("label_filename", LABELS))
    return msg


def _label_output(manifest: "Dict[str, Any]", io: "Dict[str, List[Dict[str, Any]]]") -> "Optional[str]":
    """The classification output that gets ``label_filename``: a classifier's class-score output."""
    spec = manifest_spec(manifest)
    if spec is None or spec.task != "classify" or not spec.labels or folded_postprocess(spec):
        return None
    names = [o["name"] for o in io["outputs"]]
    return next((n for n in spec.outputs if n in names), None)


def config_text(name: str, platform: str, io: "Dict[str, List[Dict[str, Any]]]", max_batch: int, skip_batch: bool,
                label_output: "Optional[str]", cc_files: "Dict[int, str]", int64_as_int32: bool) -> str:
    """config.pbtxt for the model."""
    msg = Msg([("name", name), ("platform", platform), ("max_batch_size", max_batch)])
    msg.append(("input", [tensor(t, skip_batch, int64_as_int32) for t in io["inputs"]]))
    msg.append(("output", [tensor(t, skip_batch, int64_as_int32, t["name"] == label_output) for t in io["outputs"]]))
    if cc_files:
        msg.append(("cc_model_filenames", [Msg([("key", cc_key(sm)), ("value", f)]) for sm, f in sorted(cc_files.items())]))
    if max_batch > 0:
        msg.append(("dynamic_batching", Msg()))
    return render(msg)


def _engines(bundle: Any, tensorrt: "Optional[str]") -> "Dict[int, Dict[str, Any]]":
    chosen, conflicts = triton_engines(bundle.manifest, tensorrt)
    if conflicts:
        sm = sorted(conflicts)[0]
        raise BadInput("triton: the bundle has engines of TensorRT {} for sm{} and a Triton server links one TensorRT: "
                       "pick one with --tensorrt".format(" and ".join(conflicts[sm]), sm))
    if tensorrt is not None and not chosen:
        have = sorted({a["target"]["tensorrt"] for a in bundle.engines})
        raise BadInput("triton: --tensorrt {} matches no engine in the bundle (it has {})".format(
            normalize_trt_version(tensorrt), ", ".join(have) or "none"))
    return chosen


def _onnx_source(bundle: Any) -> "Tuple[Optional[Dict[str, Any]], str]":
    """The ONNX artifact Triton serves: the Q/DQ model for INT8 bundles that have one, else model.onnx."""
    qdq = bundle.artifact("onnx-qdq")
    if bundle.precision == "int8" and qdq is not None:
        return qdq, "INT8 bundle: serves model.qdq.onnx (explicit INT8 Q/DQ) as model.onnx"
    return bundle.artifact("onnx"), ""


def _client_note(spec: Any) -> str:
    """Triton runs no preprocessing: what a client sends is what jetson-deploy's preprocess() makes."""
    w, h = spec.resize_wh
    if spec.dtype == "uint8":
        return "clients send input '{}' as {} uint8 {} frames resized to {}x{} (normalisation is in the model)".format(
            spec.input_name, spec.color.upper(), spec.layout.upper(), w, h)
    return ("clients send input '{}' as jetson_deploy.preprocess.preprocess makes it: {} {}x{}{}, (x * {:.6g} - mean) / std with "
            "mean {} and std {}, {} {}".format(spec.input_name, spec.color.upper(), w, h, " letterboxed" if spec.keep_aspect else "",
                                                spec.scale, list(spec.mean), list(spec.std), spec.layout.upper(), spec.dtype))


def plan_triton(bundle: Any, tensorrt: "Optional[str]" = None, use_onnx: bool = False) -> "ExportPlan":
    """Everything a Triton export writes, for an opened (verified) bundle."""
    check_exportable(bundle.manifest, "triton")
    plan = ExportPlan("triton", bundle)
    name = bundle.name
    engines = {} if use_onnx else _engines(bundle, tensorrt)
    onnx_art, onnx_note = _onnx_source(bundle)
    if not engines and onnx_art is None:
        raise BadInput("triton: --onnx needs model.onnx in the bundle, and it has none")
    io = bundle_io(bundle, bundle.verify_artifact(bundle.artifact("onnx")) if bundle.artifact("onnx") else None)
    spec = manifest_spec(bundle.manifest)
    max_batch, skip_batch, why = batching(io, bundle.manifest, spec.batch if spec is not None else 1)
    plan.notes.append(why)
    if spec is not None:
        plan.notes.append(_client_note(spec))
    cc_files: "Dict[int, str]" = {}
    int64_as_int32 = False
    if engines:
        platform = "tensorrt_plan"
        for sm, art in sorted(engines.items()):
            cc_files[sm] = plan_file(sm)
            plan.add_artifact("{}/{}/{}".format(name, VERSION_DIR, cc_files[sm]), art)
            plan.configs.append({"file": "{}/{}/{}".format(name, VERSION_DIR, cc_files[sm]),
                                 "use": "GPUs of compute capability {}: {} (TensorRT {}); the Triton release must link that TensorRT".format(
                                     cc_key(sm), art["path"], art["target"]["tensorrt"])})
        int64_as_int32 = all(int(normalize_trt_version(a["target"]["tensorrt"]).split(".")[0]) < 10 for a in engines.values())
    else:
        platform = "onnxruntime_onnx"
        plan.add_artifact("{}/{}/model.onnx".format(name, VERSION_DIR), onnx_art)
        plan.configs.append({"file": "{}/{}/model.onnx".format(name, VERSION_DIR), "use": "any Triton with the ONNX Runtime backend"})
        if onnx_note:
            plan.notes.append(onnx_note)
    label_output = _label_output(bundle.manifest, io)
    if label_output is not None:
        plan.add_text("{}/{}".format(name, LABELS), "\n".join(bundle.labels) + "\n")
    plan.add_text("{}/config.pbtxt".format(name), config_text(name, platform, io, max_batch, skip_batch, label_output, cc_files, int64_as_int32))
    plan.configs.insert(0, {"file": "{}/config.pbtxt".format(name), "use": "tritonserver --model-repository <this directory> ({})".format(platform)})
    return plan
