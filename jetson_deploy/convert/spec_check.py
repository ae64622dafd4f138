"""The spec against the exported model: output names and the class count of the labels.

Runs right after export, before parity, so a spec that does not fit the model is refused
(exit 2) in seconds instead of producing a bundle whose results carry the wrong labels.
The class axis is read the way :mod:`jetson_deploy.runtime.postprocess` reads outputs;
when it cannot be known (symbolic dims, folded postprocessing, in-graph NMS) nothing is said.
"""
from typing import Any, Dict, List, Optional

from ..errors import BadInput
from ..spec import ModelSpec

DETECT_NMS_NAMES = ("num_dets", "num_detections")


def check_spec_fits(graph_outputs: "List[Dict[str, Any]]", spec: "ModelSpec", source: str) -> None:
    """Refuse a spec naming a missing output, or whose labels do not count the model's classes.

    ``graph_outputs``: ``check_onnx(...)["outputs"]`` (name, shape with ints or dim names, dtype).
    ``source``: the spec file, for the message.
    """
    names = [o["name"] for o in graph_outputs]
    missing = [n for n in spec.outputs if n not in names]
    if missing:
        raise BadInput("{}: outputs names {} but the exported model's outputs are [{}]: list those in 'outputs'".format(
            source, ", ".join(repr(n) for n in missing), ", ".join(names)))
    if not spec.labels or isinstance(spec.extra.get("postprocess"), dict):
        return  # no labels, or postprocessing already folded (outputs are scores/ids, not classes)
    first = next(o for o in graph_outputs if o["name"] == spec.outputs[0])  # what the runtime reads
    if spec.task == "detect":
        _check_detect(first, names, spec, source)
        return
    classes = _classes(first, spec.task)
    if classes is not None and classes != len(spec.labels):
        raise BadInput("{}: {} labels but the model's {} output {!r} {} has {} classes: give {} labels, one per class "
                       "(or remove 'labels')".format(source, len(spec.labels), spec.task, first["name"], first["shape"],
                                                     classes, classes))


def _int_dims(shape: "List[Any]") -> bool:
    return all(isinstance(d, int) for d in shape)


def _classes(out: "Dict[str, Any]", task: str) -> "Optional[int]":
    """Classify: the elements per image (the runtime flattens them); segment: axis 1 of float (N, C, H, W)."""
    shape = out["shape"]
    if task == "classify" and len(shape) >= 2 and _int_dims(shape[1:]) and str(out["dtype"]).startswith("float"):
        n = 1
        for d in shape[1:]:
            n *= d
        return n
    if task == "segment" and len(shape) == 4 and isinstance(shape[1], int) and shape[1] > 1 \
            and str(out["dtype"]).startswith("float"):
        return shape[1]  # (N, C, H, W) scores; a single channel or integer output already holds class ids
    return None


def _check_detect(out: "Dict[str, Any]", names: "List[str]", spec: "ModelSpec", source: str) -> None:
    """A raw YOLO head has 4 + C (YOLOv8) or 5 + C (YOLOv5) values per box; NMS rows say nothing."""
    fmt = str(spec.extra.get("detect_format", "auto")).lower()
    shape = out["shape"]
    if fmt == "nms" or any(n.lower() in DETECT_NMS_NAMES for n in names) or len(shape) not in (2, 3):
        return
    if not _int_dims(shape[-2:]):
        return
    rows, cols = shape[-2], shape[-1]
    widths = (4 + len(spec.labels), 5 + len(spec.labels))
    if fmt == "raw":
        fits = cols in widths
    elif fmt == "raw-t":
        fits = rows in widths
    elif fmt == "yolov8" or (fmt == "auto" and len(names) == 1 and cols not in (6, 7) and min(rows, cols) >= 5):
        # auto: 6/7 columns may be NMS rows, under 5 values per box is no raw head, several outputs
        # are heads kept apart (boxes, scores): no class count to check in those
        fits = rows in widths or cols in widths
    else:
        return
    if fits:
        return
    nc = len(spec.labels)
    width = cols if fmt == "raw" else rows if fmt == "raw-t" else min(rows, cols)
    raise BadInput("{}: {} labels but the model's detect output {!r} {} has {} values per box: {} classes (YOLOv8: box + "
                   "classes) or {} (YOLOv5: box + objectness + classes); give that many labels, or set detect_format".format(
                       source, nc, out["name"], shape, width, width - 4, width - 5))
