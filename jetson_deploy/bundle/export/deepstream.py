"""``bundle export --format deepstream``: Gst-nvinfer configs, an nvinfer labels file and a deepstream-app config.

nvinfer takes one ``model-engine-file``, and a plan loads only on the TensorRT release and GPU
it was built for, so the export writes one config per bundled engine
(``config_infer_<tensorrt>_sm<NN>_<precision>.txt``) plus ``config_infer_onnx.txt``, which lets
nvinfer build the engine on any board from ``model.onnx`` (and the INT8 calibration cache).
Every key comes from :mod:`.nvinfer_keys`; the normalisation from :mod:`.nvinfer_norm`.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ...errors import BadInput
from ..manifest import normalize_trt_version, trt_tuple
from . import nvinfer_keys as K
from .keyfile import render
from .nvinfer_norm import nvinfer_normalization
from .output import ExportPlan
from .support import LABEL_SEPARATOR, check_exportable

NETWORK_TYPE = {"detect": 0, "classify": 1, "segment": 2, "raw": 100}
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}
SM_BOARDS = {53: "Jetson Nano / TX1", 62: "Jetson TX2", 72: "Jetson Xavier NX / AGX Xavier", 87: "Jetson Orin (AGX, NX, Nano)"}
#: DeepStream's own sample clip: the app config runs on any DeepStream install without a file of yours
SAMPLE_STREAM = "file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4"
APP_CONFIG = "deepstream_app_config.txt"
LABELS = "labels.txt"
# The runtime's detection defaults (runtime/postprocess.py Postprocessor: conf 0.25, iou 0.45, max_det 100)
DETECT_ATTRS = [("pre-cluster-threshold", 0.25), ("nms-iou-threshold", 0.45), ("topk", 100)]


def labels_text(task: str, labels: "List[str]") -> str:
    """nvinfer's labels file: a classifier's labels on one ';'-separated line (one line per output layer),
    everything else one label a line (``parseLabelsFile`` in nvdsinfer_context_impl.cpp)."""
    bad = [lab for lab in labels if LABEL_SEPARATOR in lab or "\n" in lab]
    if bad:
        raise BadInput("deepstream: label {!r} holds ';', nvinfer's labels separator: rename it".format(bad[0]))
    return (LABEL_SEPARATOR.join(labels) if task == "classify" else "\n".join(labels)) + "\n"


def _task_keys(spec: Any, labels: "List[str]") -> "List[Tuple[str, Any]]":
    keys: "List[Tuple[str, Any]]" = [("network-type", NETWORK_TYPE[spec.task])]
    if spec.task in ("detect", "segment") and labels:
        keys.append(("num-detected-classes", len(labels)))
    keys.append(("output-blob-names", list(spec.outputs)))
    if spec.task == "detect":
        keys.append(("cluster-mode", 2))
    elif spec.task == "classify":
        keys.append(("classifier-threshold", 0.0))
    elif spec.task == "segment":
        keys.append(("segmentation-threshold", 0.0))
    else:
        keys.append(("output-tensor-meta", True))
    return keys


def property_keys(spec: Any, labels: "List[str]", model: "List[Tuple[str, Any]]", precision: str) -> "List[Tuple[str, Any]]":
    """The [property] entries of one nvinfer config; ``model`` holds its onnx/engine/calibration keys."""
    norm = nvinfer_normalization(spec)
    keys: "List[Tuple[str, Any]]" = [("gpu-id", 0), ("gie-unique-id", 1), ("process-mode", 1)] + list(model)
    if labels:
        keys.append(("labelfile-path", LABELS))
    keys += [("batch-size", spec.batch), ("network-mode", NETWORK_MODE[precision]),
             ("model-color-format", norm["model-color-format"]), ("net-scale-factor", norm["net-scale-factor"]),
             ("offsets", norm["offsets"]), ("infer-dims", [spec.channels, spec.height, spec.width]),
             ("network-input-order", 1 if spec.layout == "nhwc" else 0)]
    if spec.keep_aspect:  # preprocess.letterbox_params centres the image: symmetric padding
        keys += [("maintain-aspect-ratio", True), ("symmetric-padding", True)]
    keys += [("scaling-filter", 1), ("interval", 0)]  # bilinear, as preprocess.resize_frame (cv2.INTER_LINEAR)
    return keys + _task_keys(spec, labels)


def nvinfer_config(spec: Any, labels: "List[str]", model: "List[Tuple[str, Any]]", precision: str, header: "List[str]") -> str:
    groups = [("property", K.PROPERTY, property_keys(spec, labels, model, precision))]
    if spec.task == "detect":
        groups.append(("class-attrs-all", K.CLASS_ATTRS, list(DETECT_ATTRS)))
    return render(groups, header)


def _board(target: "Dict[str, Any]") -> str:
    sm = int(target["sm"])
    text = "sm{} ({})".format(sm, SM_BOARDS.get(sm, "compute capability {}.{}".format(sm // 10, sm % 10)))
    text += " with TensorRT {}".format(target["tensorrt"])
    if target.get("jetpack"):
        text += " (JetPack {})".format(target["jetpack"])
    return text


def _cache_for(caches: "List[Dict[str, Any]]", tensorrt: str) -> "Optional[Dict[str, Any]]":
    """The calibration cache of this TensorRT release, else of the same MAJOR.MINOR (as bundle/select.py)."""
    want = normalize_trt_version(tensorrt)
    for exact in (True, False):
        for c in caches:
            have = normalize_trt_version(c["target"]["tensorrt"])
            if have == want or (not exact and have.split(".")[:2] == want.split(".")[:2]):
                return c
    return None


def _onnx_configs(plan: "ExportPlan", spec: Any, labels: "List[str]", caches: "List[Dict[str, Any]]", header: "List[str]") -> "List[str]":
    precision = plan.bundle.precision
    variants: "List[Tuple[str, Optional[Dict[str, Any]]]]" = [("config_infer_onnx.txt", caches[0] if len(caches) == 1 else None)]
    if precision == "int8" and len(caches) > 1:
        newest = sorted(caches, key=lambda c: trt_tuple(c["target"]["tensorrt"]), reverse=True)
        variants = [("config_infer_onnx_trt{}.txt".format(c["target"]["tensorrt"]), c) for c in newest]
    names = []
    for name, cache in variants:
        model: "List[Tuple[str, Any]]" = [("onnx-file", "model.onnx")]
        mode = precision
        if precision == "int8" and cache is not None:
            model.append(("int8-calib-file", cache["path"]))
        elif precision == "int8":
            mode = "fp16"
        plan.add_text(name, nvinfer_config(spec, labels, model, mode, header))
        use = "any board: nvinfer builds an engine ({}) from model.onnx on first start".format(mode.upper())
        if cache is not None and precision == "int8":
            use += " with the TensorRT {} calibration cache".format(cache["target"]["tensorrt"])
        plan.configs.append({"file": name, "use": use})
        names.append(name)
    if precision == "int8" and not caches:
        plan.notes.append("INT8 bundle without a TensorRT calibration cache: nvinfer builds INT8 only with int8-calib-file, "
                          "so config_infer_onnx.txt builds FP16 (network-mode=2); the engine configs keep their INT8 plans")
    return names


def _engine_configs(plan: "ExportPlan", spec: Any, labels: "List[str]", caches: "List[Dict[str, Any]]", has_onnx: bool,
                    header: "List[str]") -> "List[str]":
    names = []
    for art in sorted(plan.bundle.engines, key=lambda a: a["path"]):
        t = art["target"]
        name = "config_infer_{}.txt".format(Path(art["path"]).stem)
        model: "List[Tuple[str, Any]]" = [("onnx-file", "model.onnx")] if has_onnx else []
        model.append(("model-engine-file", art["path"]))
        cache = _cache_for(caches, t["tensorrt"]) if t["precision"] == "int8" else None
        if cache is not None:
            model.append(("int8-calib-file", cache["path"]))
        plan.add_text(name, nvinfer_config(spec, labels, model, t["precision"], header))
        plan.configs.append({"file": name, "use": _board(t) + ": loads " + art["path"] + (", rebuilds from model.onnx if it does not load" if has_onnx else "")})
        names.append(name)
    return names


def app_config(spec: Any, infer_config: str, source: str) -> str:
    """A minimal deepstream-app config: one file source -> nvstreammux -> this nvinfer -> fakesink, FPS printed."""
    groups = [
        ("application", K.app_group_keys("application"), [("enable-perf-measurement", True), ("perf-measurement-interval-sec", 5)]),
        ("source0", K.app_group_keys("source0"), [("enable", True), ("type", 3), ("uri", source), ("num-sources", 1), ("gpu-id", 0)]),
        ("streammux", K.app_group_keys("streammux"), [("gpu-id", 0), ("live-source", False), ("batch-size", 1),
                                                       ("batched-push-timeout", 40000), ("width", 1920), ("height", 1080)]),
        ("primary-gie", K.app_group_keys("primary-gie"), [("enable", True), ("gpu-id", 0), ("batch-size", spec.batch),
                                                           ("gie-unique-id", 1), ("config-file", infer_config)]),
        ("osd", K.app_group_keys("osd"), [("enable", False)]),
        ("sink0", K.app_group_keys("sink0"), [("enable", True), ("type", 1), ("sync", False)]),
        ("tests", K.app_group_keys("tests"), [("file-loop", False)]),
    ]
    return render(groups, ["deepstream-app -c {}   (swap config-file for the engine config of your board: README.txt)".format(APP_CONFIG)])


def source_uri(source: "Optional[str]") -> str:
    """``--source``: a URI as given, a path as ``file://PATH``; DeepStream's sample clip by default.

    deepstream-app takes what follows ``file://`` as a path, not percent-decoded, and resolves a relative
    one from the config file's directory (``deepstream_config_file_parser.c``, ``uri``): so the path is
    written as given, for the board's file system.
    """
    if not source:
        return SAMPLE_STREAM
    if "://" in source:
        return source
    return "file://" + source


def _notes(plan: "ExportPlan", spec: Any, norm: "Dict[str, Any]") -> None:
    plan.notes.insert(0, "normalisation: net-scale-factor * (x - offsets) = (x * scale - mean) / std with net-scale-factor = "
                         "scale / std = {:.9g}, offsets = mean / scale = {} ({} order)".format(
                             norm["net-scale-factor"], ";".join("{:.9g}".format(o) for o in norm["offsets"]), spec.color.upper()))
    if spec.task == "classify":
        plan.notes.append("nvinfer's classifier reads each output as class probabilities and labels the best one above "
                          "classifier-threshold (and above 0): a model that outputs logits needs a Softmax at its end")
    if spec.task == "detect":
        plan.notes.append("nvinfer's built-in detector parser reads DetectNet_v2 outputs (coverage, bbox): for this model's "
                          "head set parse-bbox-func-name and custom-lib-path to a parser library (e.g. DeepStream-Yolo's NvDsInferParseYolo)")
    if spec.keep_aspect:
        plan.notes.append("letterbox: nvinfer pads with black (0) where jetson-deploy pads grey (114), and truncates the scaled "
                          "size where jetson-deploy rounds it: the border pixels differ")


def plan_deepstream(bundle: Any, source: "Optional[str]" = None) -> "ExportPlan":
    """Everything a DeepStream export writes, for an opened (verified) bundle."""
    check_exportable(bundle.manifest, "deepstream")
    spec = bundle.spec
    plan = ExportPlan("deepstream", bundle)
    labels = list(bundle.labels)
    onnx_art = bundle.artifact("onnx")
    caches = sorted((a for a in bundle.artifacts if a["kind"] == "calib-cache"), key=lambda a: a["path"])
    if onnx_art is not None:
        plan.add_artifact("model.onnx", onnx_art)
    for art in sorted(bundle.engines, key=lambda a: a["path"]):
        plan.add_artifact(art["path"], art)
    for art in caches:
        plan.add_artifact(art["path"], art)
    if labels:
        plan.add_text(LABELS, labels_text(spec.task, labels))
    header = ["Gst-nvinfer config for {} {} (bundle manifest sha256 {})".format(bundle.name, bundle.version, bundle.sha256),
              "written by jetson-deploy bundle export; keys: DeepStream Gst-nvinfer property reference"]
    names = _onnx_configs(plan, spec, labels, caches, header) if onnx_art is not None else []
    names += _engine_configs(plan, spec, labels, caches, onnx_art is not None, header)
    plan.add_text(APP_CONFIG, app_config(spec, names[0], source_uri(source)))
    plan.configs.append({"file": APP_CONFIG, "use": "deepstream-app -c {} (runs {} on a file source)".format(APP_CONFIG, names[0])})
    _notes(plan, spec, nvinfer_normalization(spec))
    return plan
