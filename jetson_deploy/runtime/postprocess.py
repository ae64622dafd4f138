"""Engine outputs -> task results (classify top-k, detections, segmentation mask).

Numpy only.  Detection accepts either an in-graph NMS output (TensorRT ``EfficientNMS`` style
``num_dets/det_boxes/det_scores/det_classes``, or one ``(1, N, 6|7)`` tensor
``[x1, y1, x2, y2, score, class(, batch)]``) or a YOLO-style raw head (``(1, 4+C, N)`` YOLOv8 or
``(1, N, 5+C)`` YOLOv5 with objectness) decoded here with per-class NMS.  Boxes are mapped back to
source pixels with the same letterbox numbers preprocessing used.
"""
import math
from array import array
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..preprocess import letterbox_params
from ..spec import ModelSpec


class Detection:
    __slots__ = ("box", "score", "class_id", "label")

    def __init__(self, box: "Sequence[float]", score: float, class_id: int, label: str) -> None:
        self.box = [float(v) for v in box]  # x1, y1, x2, y2 in source pixels
        self.score = float(score)
        self.class_id = int(class_id)
        self.label = label

    def to_json(self) -> "Dict[str, Any]":
        return {"box": [round(v, 1) for v in self.box], "score": round(self.score, 4),
                "class_id": self.class_id, "label": self.label}


class Result:
    """What one frame produced.  ``to_json()`` is the ``.jsonl`` sink's line."""

    __slots__ = ("index", "source", "task", "label", "score", "class_id", "topk", "detections", "mask",
                 "latency_ms", "truth", "num_classes", "stream")

    def __init__(self, task: str = "classify") -> None:
        self.task = task
        self.index = -1
        self.source: Any = None
        self.label: "Optional[str]" = None
        self.score: "Optional[float]" = None
        self.class_id: "Optional[int]" = None
        self.topk: "List[Tuple[str, float]]" = []
        self.detections: "List[Detection]" = []
        self.mask: "Optional[np.ndarray]" = None  # HxW class ids (model resolution)
        self.latency_ms = 0.0
        self.truth: Any = None
        self.num_classes = 0
        self.stream: "Optional[int]" = None  # source index in a multi-source run (the jsonl ``stream`` field)

    def to_json(self) -> "Dict[str, Any]":
        d: "Dict[str, Any]" = {"index": self.index, "source": self.source, "task": self.task,
                             "latency_ms": round(self.latency_ms, 3)}
        if self.stream is not None:
            d["stream"] = self.stream
        if self.task == "classify":
            d.update(label=self.label, score=None if self.score is None else round(self.score, 5),
                     class_id=self.class_id, topk=[[l, round(s, 5)] for l, s in self.topk])
        elif self.task == "detect":
            d["detections"] = [x.to_json() for x in self.detections]
            top = max(self.detections, key=lambda x: x.score) if self.detections else None
            d.update(label=top.label if top else None, score=round(top.score, 5) if top else None)
        elif self.task == "segment" and self.mask is not None:
            ids, counts = np.unique(self.mask, return_counts=True)
            total = float(self.mask.size)
            d["classes"] = {str(int(i)): round(c / total, 4) for i, c in zip(ids, counts)}
            d.update(label=self.label, score=self.score)
        else:
            d.update(label=self.label, score=self.score)
        if self.truth is not None:
            d["truth"] = self.truth
        return d


def _label(labels: "Sequence[str]", i: int) -> str:
    return labels[i] if 0 <= i < len(labels) else str(i)


def softmax(x: "np.ndarray") -> "np.ndarray":
    x = x.astype(np.float32, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN / +inf logits: every p NaN (no result)
        e = np.exp(x - x.max())
        return e / e.sum()


# The classify scores rule, the same on every path (this host code, the fused CUDA kernel and its
# numpy reference in :mod:`.gpu_topk`, the torch-ops fallback of the torch CUDA executor):
# * a row whose values all lie in [0, 1] and sum to 1 within PROB_SUM_TOL is already probabilities
#   (a model ending in Softmax): scores are those values; any other row gets a softmax (a sum within
#   float32 rounding of the threshold may fall either way: summation orders differ between paths);
# * ranked by (score descending, class index ascending): tied scores keep index order;
# * a NaN score never ranks: a row with a NaN (or +inf) logit has every softmax score NaN, so it
#   gives no result (no label, no score) rather than a made-up class.
PROB_SUM_TOL = 1e-3


def looks_like_probs(v: "np.ndarray") -> bool:
    """The rule's test: every value in [0, 1] and a float32 sum within PROB_SUM_TOL of 1 (a NaN fails it)."""
    x = np.asarray(v).astype(np.float32, copy=False)
    if not x.size:
        return False
    with np.errstate(invalid="ignore"):
        return bool(x.min() >= 0.0 and x.max() <= 1.0 and abs(float(x.sum(dtype=np.float32)) - 1.0) < PROB_SUM_TOL)


def scores_of(v: "np.ndarray") -> "np.ndarray":
    """float32 scores of one row under the rule: the row itself when it is probabilities, else its softmax."""
    return np.asarray(v).astype(np.float32) if looks_like_probs(v) else softmax(np.asarray(v))


def ranked(p: "np.ndarray", k: int) -> "np.ndarray":
    """Indices of the ``k`` best scores of ``p``, ranked (score descending, index ascending); NaN never ranks."""
    ok = np.flatnonzero(p == p)
    q = p[ok] if ok.size < p.size else p
    k = min(int(k), q.size)
    if k <= 0:
        return np.zeros((0,), np.int64)
    if q.size > k:  # O(N): the k-th best score t, all scores above it, then the lowest-index ties at t
        t = q[np.argpartition(-q, k - 1)[k - 1]]
        above = np.flatnonzero(q > t)
        cand = np.sort(np.concatenate([above, np.flatnonzero(q == t)[:k - above.size]]))
    else:
        cand = np.arange(q.size)
    cand = cand[np.argsort(-q[cand], kind="stable")]  # stable over ascending indices: ties keep index order
    return ok[cand] if ok.size < p.size else cand


# Up to this many classes, top-k runs on Python floats: a dozen numpy calls on a 4-element array
# cost ~50 us a frame, as much as a small network on a GPU (the demo runs in 73 us on an H200).
SMALL_CLASSES = 64


def _topk_small(v: "np.ndarray", topk: int) -> "Tuple[List[int], List[float]]":
    """The rule on a short vector in plain Python: probabilities as they are, else a softmax; ties
    keep index order (a stable sort); a NaN row gives nothing."""
    vals = v.tolist()
    if not vals:
        return [], []
    if min(vals) >= 0.0 and max(vals) <= 1.0 and abs(math.fsum(vals) - 1.0) < PROB_SUM_TOL:  # NaN: fsum NaN
        p = [float(x) for x in vals]
    else:
        m = max(vals)
        e = [math.exp(x - m) for x in vals]  # x - m <= 0, or NaN
        s = math.fsum(e)
        if s != s:  # a NaN (or +inf) logit: every score NaN, nothing ranks
            return [], []
        p = [x / s for x in e]
    ids = sorted(range(len(p)), key=p.__getitem__, reverse=True)[:max(1, topk)]
    # float32, as the engine's own outputs are (array('f') rounds as numpy.float32 does, in one C call)
    return ids, array("f", [p[i] for i in ids]).tolist()


class Postprocessor:
    """Turns the engine's host outputs for one frame into a :class:`Result`."""

    def __init__(self, spec: "ModelSpec", topk: int = 5, conf: float = 0.25, iou: float = 0.45,
                 max_det: int = 100) -> None:
        self.spec = spec
        self.labels = list(spec.labels)
        self.task = spec.task
        self.topk = max(1, int(topk))
        self.conf = conf
        self.iou = iou
        self.max_det = max_det
        post = spec.extra.get("postprocess")
        #: what convert folded into the engine (``softmax-topk``: outputs are scores and class ids)
        self._folded = post.get("folded") if isinstance(post, dict) else None

    def __call__(self, outputs: "Dict[str, np.ndarray]", frame_wh: "Tuple[int, int]") -> "Result":
        if self.task == "classify":
            return self.classify(outputs)
        if self.task == "detect":
            return self.detect(outputs, frame_wh)
        if self.task == "segment":
            return self.segment(outputs)
        r = Result(self.task)
        return r

    def _first(self, outputs: "Dict[str, np.ndarray]") -> "np.ndarray":
        for name in self.spec.outputs:
            if name in outputs:
                return outputs[name]
        return next(iter(outputs.values()))

    # ---- classify -------------------------------------------------------------------------
    def classify(self, outputs: "Dict[str, np.ndarray]") -> "Result":
        r = Result("classify")
        if self._folded == "softmax-topk" and len(self.spec.outputs) >= 2 and all(n in outputs for n in self.spec.outputs[:2]):
            # convert --fold-postprocess: Softmax -> TopK in the engine; outputs (scores, classes)
            scores = np.asarray(outputs[self.spec.outputs[0]]).reshape(-1).astype(np.float32)
            ids = np.asarray(outputs[self.spec.outputs[1]]).reshape(-1).astype(np.int64)
            r.num_classes = len(self.labels)
        elif "topk_scores" in outputs and "topk_ids" in outputs:  # reduction folded into the engine
            scores = np.asarray(outputs["topk_scores"]).reshape(-1)
            ids = np.asarray(outputs["topk_ids"]).reshape(-1).astype(np.int64)
            r.num_classes = len(self.labels)
        elif "topk" in outputs:  # packed (2, k): scores row, ids row (the torch CUDA executor's copy-out)
            packed = np.asarray(outputs["topk"]).reshape(2, -1)
            scores, ids = packed[0], packed[1].astype(np.int64)
            r.num_classes = len(self.labels)
        else:
            v = np.asarray(self._first(outputs)).reshape(-1)
            if v.size <= SMALL_CLASSES:  # plain Python: a result per frame at small-model rates
                ids, scores = _topk_small(v, self.topk)
            else:
                p = scores_of(v)
                ids = ranked(p, self.topk)
                scores = p[ids]
            r.num_classes = int(v.size)
        # id -1 pads a GPU result (fewer than k classes, or a NaN row); a NaN score never ranks
        r.topk = [(_label(self.labels, int(i)), float(s)) for i, s in zip(ids[: self.topk], scores[: self.topk])
                  if i >= 0 and s == s]
        if r.topk:
            r.class_id = int(ids[0])
            r.label, r.score = r.topk[0]
        return r

    # ---- detect -----------------------------------------------------------------------------
    def detect(self, outputs: "Dict[str, np.ndarray]", frame_wh: "Tuple[int, int]") -> "Result":
        r = Result("detect")
        boxes, scores, classes = self._decode(outputs)
        keep = scores >= self.conf
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        boxes = self._to_source(boxes, frame_wh)
        order = np.argsort(-scores, kind="stable")[: self.max_det]
        r.detections = [Detection(boxes[i], scores[i], int(classes[i]), _label(self.labels, int(classes[i])))
                        for i in order]
        if r.detections:
            r.label, r.score, r.class_id = r.detections[0].label, r.detections[0].score, r.detections[0].class_id
        return r

    def _decode(self, outputs: "Dict[str, np.ndarray]") -> "Tuple[np.ndarray, np.ndarray, np.ndarray]":
        names = {k.lower(): k for k in outputs}
        nk = next((names[k] for k in ("num_dets", "num_detections") if k in names), None)
        if nk is not None:  # EfficientNMS-style in-graph NMS
            n = int(np.asarray(outputs[nk]).reshape(-1)[0])
            b = np.asarray(outputs[names.get("det_boxes", names.get("detection_boxes", ""))]).reshape(-1, 4)[:n]
            s = np.asarray(outputs[names.get("det_scores", names.get("detection_scores", ""))]).reshape(-1)[:n]
            c = np.asarray(outputs[names.get("det_classes", names.get("detection_classes", ""))]).reshape(-1)[:n]
            return b.astype(np.float32), s.astype(np.float32), c.astype(np.int64)
        out = np.asarray(self._first(outputs), dtype=np.float32)
        if out.ndim == 3:
            out = out[0]
        if out.ndim != 2:
            raise ValueError("detect: cannot read an output of shape {}".format(out.shape))
        fmt = str(self.spec.extra.get("detect_format", "auto")).lower()
        nc = len(self.labels)
        raw_widths = (4 + nc, 5 + nc) if nc else ()
        if fmt == "auto":
            rows_match, cols_match = out.shape[0] in raw_widths, out.shape[1] in raw_widths
            nms_like = out.shape[1] in (6, 7) and out.shape[0] > 0 and bool(
                np.all(out[:, 5] == np.round(out[:, 5])) and out[:, 5].min() >= 0)
            if rows_match and not cols_match:
                fmt = "raw-t"  # YOLOv8 export: (4+C, N)
            elif cols_match and not rows_match:
                fmt = "nms" if nms_like else "raw"
            elif rows_match and cols_match:
                fmt = "raw-t"
            elif out.shape[1] in (6, 7):
                fmt = "nms"
            else:
                fmt = "raw-t" if out.shape[0] < out.shape[1] else "raw"
        if fmt == "nms":  # in-graph NMS rows: x1 y1 x2 y2 score class [batch]
            return out[:, :4], out[:, 4], out[:, 5].astype(np.int64)
        if fmt == "raw-t" or (fmt == "yolov8" and out.shape[0] < out.shape[1]):
            out = out.T  # (4+C, N) -> (N, 4+C)
        c = out.shape[1]
        if nc and c == 5 + nc:  # YOLOv5: cx cy w h obj cls...
            cls = out[:, 5:] * out[:, 4:5]
        else:  # YOLOv8: cx cy w h cls...
            cls = out[:, 4:]
        classes = cls.argmax(axis=1)
        scores = cls[np.arange(len(cls)), classes]
        pre = scores >= self.conf
        xywh, scores, classes = out[pre, :4], scores[pre], classes[pre]
        boxes = np.empty_like(xywh)
        boxes[:, 0] = xywh[:, 0] - xywh[:, 2] / 2
        boxes[:, 1] = xywh[:, 1] - xywh[:, 3] / 2
        boxes[:, 2] = xywh[:, 0] + xywh[:, 2] / 2
        boxes[:, 3] = xywh[:, 1] + xywh[:, 3] / 2
        keep = nms(boxes, scores, classes, self.iou)
        return boxes[keep], scores[keep], classes[keep].astype(np.int64)

    def _to_source(self, boxes: "np.ndarray", frame_wh: "Tuple[int, int]") -> "np.ndarray":
        if boxes.size == 0:
            return boxes.reshape(0, 4)
        w, h = frame_wh
        dst_w, dst_h = self.spec.resize_wh
        out = boxes.astype(np.float32).copy()
        if self.spec.keep_aspect:
            r, px, py = letterbox_params(w, h, self.spec)
            out[:, [0, 2]] = (out[:, [0, 2]] - px) / r
            out[:, [1, 3]] = (out[:, [1, 3]] - py) / r
        else:
            out[:, [0, 2]] *= w / float(dst_w)
            out[:, [1, 3]] *= h / float(dst_h)
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
        return out

    # ---- segment ----------------------------------------------------------------------------
    def segment(self, outputs: "Dict[str, np.ndarray]") -> "Result":
        r = Result("segment")
        out = np.asarray(self._first(outputs))
        if out.ndim == 4:
            out = out[0]
        if out.ndim == 3 and out.shape[0] > 1 and np.issubdtype(out.dtype, np.floating):
            mask = out.argmax(axis=0)  # (C, H, W) scores
        else:  # already class ids (argmax folded into the engine)
            mask = out.reshape(out.shape[-2], out.shape[-1])
        r.mask = mask.astype(np.int32, copy=False)
        ids, counts = np.unique(r.mask, return_counts=True)
        fg = [(c, i) for i, c in zip(ids, counts) if i != 0] or [(c, i) for i, c in zip(ids, counts)]
        c, i = max(fg)
        r.class_id, r.label, r.score = int(i), _label(self.labels, int(i)), float(c) / float(r.mask.size)
        r.num_classes = len(self.labels)
        return r


def nms(boxes: "np.ndarray", scores: "np.ndarray", classes: "np.ndarray", iou: float = 0.45) -> "np.ndarray":
    """Per-class greedy NMS (numpy); returns kept indices, highest score first."""
    if len(boxes) == 0:
        return np.zeros((0,), dtype=np.int64)
    # offset boxes by class so one pass does per-class NMS: each class moves by more than the
    # boxes' whole coordinate span (max - min, not max |x|: with negative coordinates, boxes of
    # neighbouring classes would overlap and suppress each other at a low IoU threshold)
    off = classes.astype(np.float32)[:, None] * (float(boxes.max() - boxes.min()) + 1.0)
    b = boxes + off
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    area = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep: "List[int]" = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(x1[i], x1[rest])
        yy1 = np.maximum(y1[i], y1[rest])
        xx2 = np.minimum(x2[i], x2[rest])
        yy2 = np.minimum(y2[i], y2[rest])
        inter = np.maximum(0, xx2 - xx1) * np.maximum(0, yy2 - yy1)
        ov = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = rest[ov <= iou]
    return np.asarray(keep, dtype=np.int64)
