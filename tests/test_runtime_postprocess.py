"""Task postprocessing: classify top-k, detect (in-graph NMS or YOLO raw head + NMS), segment."""
import numpy as np
import pytest

from jetson_deploy.runtime.postprocess import Postprocessor, nms, softmax
from jetson_deploy.spec import ModelSpec

LABELS = ["a", "b", "c"]


def _spec(task, size=(64, 64), keep_aspect=False, **extra):
    d = {
        "task": task,
        "input": {"name": "input", "shape": [1, 3, size[1], size[0]], "dtype": "float32", "color": "rgb"},
        "preprocess": {"resize": list(size), "keep_aspect": keep_aspect},
        "outputs": ["out"],
        "labels": LABELS,
    }
    d.update(extra)
    return ModelSpec.from_dict(d)


def test_classify_topk_from_logits_and_probs():
    pp = Postprocessor(_spec("classify"), topk=2)
    r = pp({"out": np.array([[0.1, 3.0, 1.0]], np.float32)}, (64, 64))
    assert r.label == "b" and r.class_id == 1 and [l for l, _ in r.topk] == ["b", "c"]
    assert r.score == pytest.approx(float(softmax(np.array([0.1, 3.0, 1.0]))[1]), rel=1e-5)
    r = pp({"out": np.array([[0.2, 0.3, 0.5]], np.float32)}, (64, 64))  # already probabilities
    assert r.label == "c" and r.score == pytest.approx(0.5)
    r = pp({"topk_scores": np.array([0.7, 0.2]), "topk_ids": np.array([2, 0])}, (64, 64))  # folded in the engine
    assert (r.label, r.score) == ("c", pytest.approx(0.7)) and r.topk[1][0] == "a"
    j = r.to_json()
    assert j["label"] == "c" and j["topk"][0] == ["c", 0.7]
    r = pp({"topk": np.array([[0.6, 0.3], [1, 2]], np.float32)}, (64, 64))  # packed copy-out
    assert (r.label, r.class_id, r.topk[1][0]) == ("b", 1, "c")


def test_nms_per_class():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, classes, 0.5).tolist() == [0, 2, 3]


def test_detect_yolov8_raw_head_maps_boxes_to_source():
    pp = Postprocessor(_spec("detect"), conf=0.3)
    n = 100
    head = np.zeros((1, 4 + 3, n), np.float32)  # (1, 4+C, N)
    head[0, :4, :] = [[32], [32], [4], [4]]
    head[0, 4:, :] = 0.01
    # two overlapping boxes of class 2 (one suppressed), one box of class 0
    head[0, :, 0] = [32, 32, 20, 20, 0.0, 0.0, 0.9]
    head[0, :, 1] = [33, 33, 20, 20, 0.0, 0.0, 0.8]
    head[0, :, 2] = [10, 10, 8, 8, 0.7, 0.0, 0.0]
    r = pp({"out": head}, (640, 320))  # source is 10x wider, 5x taller than the 64x64 input
    assert [(d.label, round(d.score, 2)) for d in r.detections] == [("c", 0.9), ("a", 0.7)]
    assert r.detections[0].box == pytest.approx([220, 110, 420, 210])
    assert r.label == "c"


def test_detect_yolov5_objectness_and_letterbox():
    spec = _spec("detect", keep_aspect=True)
    pp = Postprocessor(spec, conf=0.25)
    n = 400
    head = np.zeros((1, n, 5 + 3), np.float32)
    head[0, 0] = [32, 32, 16, 16, 0.9, 0.1, 0.9, 0.0]  # obj * cls = 0.81 for class b
    r = pp({"out": head}, (128, 64))  # letterbox: scale 0.5, pad y 16
    assert len(r.detections) == 1 and r.detections[0].label == "b"
    assert r.detections[0].score == pytest.approx(0.81)
    assert r.detections[0].box == pytest.approx([48, 16, 80, 48])


def test_detect_in_graph_nms_outputs():
    pp = Postprocessor(_spec("detect"), conf=0.5)
    outs = {"num_dets": np.array([[2]]), "det_boxes": np.array([[[0, 0, 32, 32], [10, 10, 20, 20], [0, 0, 1, 1]]], np.float32),
            "det_scores": np.array([[0.9, 0.4, 0.99]]), "det_classes": np.array([[1, 0, 2]])}
    r = pp(outs, (128, 128))
    assert [(d.label, d.box) for d in r.detections] == [("b", [0, 0, 64, 64])]
    rows = np.array([[[0, 0, 16, 16, 0.8, 2], [0, 0, 8, 8, 0.2, 1]]], np.float32)  # (1, N, 6) rows
    r = pp({"out": rows}, (64, 64))
    assert [(d.label, d.score) for d in r.detections] == [("c", pytest.approx(0.8))]


def test_segment_argmax_and_folded_mask():
    pp = Postprocessor(_spec("segment"))
    scores = np.zeros((1, 3, 4, 4), np.float32)
    scores[0, 2, :2, :] = 5.0  # top half class 2, rest class 0
    r = pp({"out": scores}, (64, 64))
    assert r.mask.shape == (4, 4) and (r.mask[:2] == 2).all() and (r.mask[2:] == 0).all()
    assert r.label == "c" and r.score == pytest.approx(0.5)
    r2 = pp({"mask": r.mask.copy()}, (64, 64))
    assert np.array_equal(r2.mask, r.mask)
    j = r.to_json()
    assert j["classes"] == {"0": 0.5, "2": 0.5}


def test_classify_reads_convert_folded_topk_outputs():
    spec = _spec("classify", outputs=["scores", "classes"], postprocess={"folded": "softmax-topk", "k": 2})
    pp = Postprocessor(spec, topk=2)
    r = pp({"scores": np.array([[0.8, 0.15]], np.float32), "classes": np.array([[2, 0]], np.int32)}, (64, 64))
    assert (r.label, r.class_id, r.score) == ("c", 2, pytest.approx(0.8)) and r.topk[1] == ("a", pytest.approx(0.15))


def test_segment_reads_folded_argmax_mask():
    spec = _spec("segment", outputs=["mask"], postprocess={"folded": "argmax"})
    mask = np.zeros((1, 4, 4), np.int32)
    mask[0, :, :1] = 1
    r = Postprocessor(spec)({"mask": mask}, (64, 64))
    assert r.mask.shape == (4, 4) and (r.label, r.score) == ("b", 0.25)


def test_detect_layout_ambiguity_two_classes():
    """Two classes: a YOLOv8 row (4+2 = 6 wide) and an NMS row (6 wide) look alike; class ids decide."""
    spec = ModelSpec.from_dict({
        "task": "detect", "input": {"name": "input", "shape": [1, 3, 64, 64], "dtype": "float32", "color": "rgb"},
        "outputs": ["out"], "labels": ["x", "y"]})
    pp = Postprocessor(spec, conf=0.3)
    nms_rows = np.array([[[0, 0, 10, 10, 0.9, 1], [20, 20, 30, 30, 0.5, 0]]], np.float32)
    r = pp({"out": nms_rows}, (64, 64))
    assert [(d.label, d.box) for d in r.detections] == [("y", [0, 0, 10, 10]), ("x", [20, 20, 30, 30])]
    raw = np.zeros((1, 50, 6), np.float32)
    raw[0, 0] = [32, 32, 10, 10, 0.2, 0.7]
    r = pp({"out": raw}, (64, 64))
    assert [(d.label, d.box) for d in r.detections] == [("y", [27, 27, 37, 37])]


def test_small_topk_fast_path_matches_the_numpy_path():
    """Up to 64 classes top-k runs on Python floats: same ids and (float32) scores as the numpy path."""
    from jetson_deploy.runtime import postprocess as pp

    rs = np.random.RandomState(11)
    for n in (1, 2, 4, 10, 64):
        for kind in ("logits", "probs"):
            v = rs.randn(n).astype(np.float32) * 3
            if kind == "probs":
                v = pp.softmax(v)
            for k in (1, 3, 5, 100):
                ids, scores = pp._topk_small(v, k)
                p = v.astype(np.float32) if pp.looks_like_probs(v) else pp.softmax(v)
                want = np.argsort(-p, kind="stable")[:k]
                assert ids == [int(i) for i in want], (n, kind, k)
                np.testing.assert_allclose(scores, p[want], rtol=2e-6, atol=1e-7)
