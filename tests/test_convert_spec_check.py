"""convert.spec_check: the spec's labels and outputs against the exported graph's outputs."""
import pytest

from jetson_deploy.convert.spec_check import check_spec_fits
from jetson_deploy.errors import BadInput
from jetson_deploy.spec import ModelSpec


def out(name, shape, dtype="float32"):
    return {"name": name, "shape": shape, "dtype": dtype}


def spec(task, n_labels, outputs=("out",), **extra):
    return ModelSpec(task=task, outputs=list(outputs), labels=["c{}".format(i) for i in range(n_labels)], extra=dict(extra))


def refuses(graph, s, *needles):
    with pytest.raises(BadInput) as e:
        check_spec_fits(graph, s, "spec file s.yaml")
    msg = str(e.value)
    assert "\n" not in msg and "spec file s.yaml" in msg
    for n in needles:
        assert n in msg, msg


def test_missing_output_lists_the_models_outputs():
    refuses([out("logits", [1, 4]), out("aux", [1, 2])], spec("classify", 4, outputs=["nope"]), "'nope'", "[logits, aux]")


def test_classify_counts_the_elements_per_image():
    check_spec_fits([out("out", [1, 4])], spec("classify", 4), "s")
    check_spec_fits([out("out", ["batch", 4, 1, 1])], spec("classify", 4), "s")  # symbolic batch only
    refuses([out("out", [1, 4])], spec("classify", 3), "3 labels", "4 classes", "give 4 labels")
    refuses([out("out", [1, 1001])], spec("classify", 1000), "1000 labels", "1001 classes")


def test_unknowable_class_counts_say_nothing():
    check_spec_fits([out("out", [1, "classes"])], spec("classify", 3), "s")  # symbolic class axis
    check_spec_fits([out("out", [1, 4])], spec("classify", 0), "s")  # no labels
    check_spec_fits([out("out", [1, 5], "int64")], spec("classify", 3), "s")  # ids, not scores
    check_spec_fits([out("out", [1, 4])], spec("classify", 3, postprocess={"folded": "softmax-topk", "k": 4}), "s")


def test_segment_class_axis_is_axis_1_of_float_scores():
    check_spec_fits([out("out", [1, 21, 64, 64])], spec("segment", 21), "s")
    refuses([out("out", [1, 21, 64, 64])], spec("segment", 20), "20 labels", "21 classes")
    check_spec_fits([out("out", [1, 64, 64], "int32")], spec("segment", 20), "s")  # argmax mask
    check_spec_fits([out("out", [1, 1, 64, 64])], spec("segment", 20), "s")  # one channel: class ids


def test_detect_raw_heads_count_4_or_5_plus_classes():
    check_spec_fits([out("out", [1, 84, 8400])], spec("detect", 80), "s")  # YOLOv8
    check_spec_fits([out("out", [1, 25200, 85])], spec("detect", 80), "s")  # YOLOv5
    refuses([out("out", [1, 84, 8400])], spec("detect", 3), "3 labels", "84 values per box", "80 classes")
    refuses([out("out", [1, 8400, 85])], spec("detect", 3, detect_format="raw"), "85 values")
    check_spec_fits([out("out", [1, 100, 6])], spec("detect", 3), "s")  # NMS rows: no class axis
    check_spec_fits([out("scores", [1, 64, 4])], spec("detect", 4, outputs=["scores"]), "s")  # no raw head
    check_spec_fits([out("out", [1, 84, 8400])], spec("detect", 3, detect_format="nms"), "s")
    nms = [out("num_dets", [1, 1], "int32"), out("det_boxes", [1, 100, 4])]
    check_spec_fits(nms, spec("detect", 3, outputs=["num_dets", "det_boxes"]), "s")
    apart = [out("boxes", [1, 100, 4]), out("scores", [1, 100, 80])]  # separate heads: unknown layout
    check_spec_fits(apart, spec("detect", 3, outputs=["boxes", "scores"]), "s")
