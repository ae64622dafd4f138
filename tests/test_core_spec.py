import json

import pytest

from jetson_deploy.errors import BadInput
from jetson_deploy.spec import ModelSpec, dump_spec, load_spec

GOOD = {
    "task": "classify",
    "input": {"name": "input", "shape": [1, 3, 224, 224], "dtype": "float32", "color": "rgb"},
    "preprocess": {"resize": [224, 224], "keep_aspect": False, "scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "outputs": ["logits"],
    "labels": ["circle", "square", "triangle", "none"],
}


def test_roundtrip_yaml_and_json(tmp_path):
    spec = load_spec(GOOD)
    for name in ("s.yaml", "s.json"):
        p = dump_spec(spec, tmp_path / name)
        again = load_spec(p)
        assert again.to_dict() == spec.to_dict()
        assert again.sha256() == spec.sha256()
    assert spec.width == 224 and spec.height == 224 and spec.channels == 3


def test_hash_changes_with_preprocessing():
    a = load_spec(GOOD)
    changed = json.loads(json.dumps(GOOD))
    changed["preprocess"]["mean"] = [0.5, 0.5, 0.5]
    assert load_spec(changed).sha256() != a.sha256()


def test_unknown_keys_are_kept():
    data = dict(GOOD, detect={"anchors": 3})
    assert load_spec(data).to_dict()["detect"] == {"anchors": 3}


def test_labels_from_file(tmp_path):
    (tmp_path / "labels.txt").write_text("cat\ndog\n\n")
    data = dict(GOOD, labels="labels.txt")
    (tmp_path / "spec.json").write_text(json.dumps(data))
    assert load_spec(tmp_path / "spec.json").labels == ["cat", "dog"]


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.update(task="track"), "task"),
        (lambda d: d["input"].update(shape=[3, 224, 224]), "input.shape"),
        (lambda d: d["input"].update(shape=[1, 3, 0, 224]), "input.shape"),
        (lambda d: d["input"].update(color="hsv"), "input.color"),
        (lambda d: d["input"].update(dtype="float64"), "input.dtype"),
        (lambda d: d["input"].update(color="gray"), "input.shape"),
        (lambda d: d["preprocess"].update(mean=[0.1, 0.2]), "preprocess.mean"),
        (lambda d: d["preprocess"].update(std=[1, 0, 1]), "preprocess.std"),
        (lambda d: d["preprocess"].update(resize=[100, 224]), "preprocess.resize"),
        (lambda d: d["preprocess"].update(scale=-1), "preprocess.scale"),
        (lambda d: d.update(outputs=[]), "outputs"),
        (lambda d: d.update(labels=[1, 2]), "labels"),
        (lambda d: d.pop("input"), "input"),
    ],
)
def test_bad_fields_are_named(mutate, field):
    data = json.loads(json.dumps(GOOD))
    mutate(data)
    with pytest.raises(BadInput) as err:
        load_spec(data)
    assert "'{}'".format(field) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BadInput, match="not valid JSON"):
        load_spec(bad)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("input: [unclosed")
    with pytest.raises(BadInput, match="not valid YAML"):
        load_spec(bad_yaml)
    lst = tmp_path / "list.json"
    lst.write_text("[1, 2]")
    with pytest.raises(BadInput, match="must be a mapping"):
        load_spec(lst)


def test_modelspec_passthrough():
    s = load_spec(GOOD)
    assert load_spec(s) is s
    assert isinstance(ModelSpec.from_dict(GOOD), ModelSpec)
