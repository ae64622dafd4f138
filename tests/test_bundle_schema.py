"""The manifest JSON Schema: shipped, valid, versioned, open where other tools extend it."""
import json

import pytest

from support.bundles import edit_manifest, make_bundle
from jetson_deploy.bundle import SCHEMA_VERSION, load_schema, open_bundle, validate_manifest
from jetson_deploy.bundle.manifest import schema_path
from jetson_deploy.errors import BadInput, CheckFailed


@pytest.mark.needs("jsonschema")
def test_schema_is_shipped_and_valid_draft7():
    import jsonschema
    assert schema_path().is_file() and schema_path().parent.name == "bundle"
    jsonschema.Draft7Validator.check_schema(load_schema())
    assert load_schema()["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    setup_text = (schema_path().parents[2] / "setup.py").read_text()
    assert "bundle/*.json" in setup_text


def test_newer_schema_version_names_both_versions(tmp_path):
    d = make_bundle(tmp_path / "b")
    edit_manifest(d, lambda m: m.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(CheckFailed) as err:
        open_bundle(d)
    msg = str(err.value)
    assert "schema_version {}".format(SCHEMA_VERSION + 1) in msg
    assert "reads (schema_version {})".format(SCHEMA_VERSION) in msg and "upgrade" in msg


@pytest.mark.parametrize("value,match", [(None, "no integer schema_version"), ("1", "no integer schema_version"), (0, "not valid")])
def test_bad_schema_version(tmp_path, value, match):
    d = make_bundle(tmp_path / "b")
    edit_manifest(d, lambda m: m.update(schema_version=value))
    with pytest.raises(CheckFailed, match=match):
        open_bundle(d)


def test_open_objects_accept_unknown_fields(tmp_path):
    d = make_bundle(tmp_path / "b", extra={"x-vendor": {"anything": 1}, "quantization": {"mode": "qdq", "per_channel": True}})
    edit_manifest(d, lambda m: m["accuracy"].update(new_metric={"nested": [1, 2, 3]}))
    b = open_bundle(d)
    assert b.manifest["quantization"]["per_channel"] is True and b.manifest["x-vendor"] == {"anything": 1}


@pytest.mark.parametrize("mutate,match", [
    (lambda m: m["artifacts"][0].pop("target"), "target"),
    (lambda m: m["artifacts"][0]["target"].pop("sm"), "sm"),
    (lambda m: m["artifacts"][1].update(sha256="XYZ"), "artifacts/1/sha256"),
    (lambda m: m["artifacts"].append(dict(m["artifacts"][1])), "listed twice"),
    (lambda m: m.update(version="one"), "version"),
    (lambda m: m.update(accuracy=[1, 2]), "accuracy"),
    (lambda m: m.pop("artifacts"), "artifacts"),
    (lambda m: m["artifacts"][1].update(path="/abs/labels.txt"), "path"),
    (lambda m: m["artifacts"][1].update(path="manifest.sig"), "reserved"),
])
def test_invalid_manifests_are_refused(tmp_path, mutate, match):
    d = make_bundle(tmp_path / "b")
    m = json.loads((d / "manifest.json").read_text())
    assert m["artifacts"][0]["kind"] == "engine" and m["artifacts"][1]["kind"] == "labels"
    mutate(m)
    with pytest.raises(CheckFailed, match=match):
        validate_manifest(m, "b")
    with pytest.raises(BadInput, match=match):
        validate_manifest(m, "b", error=BadInput)


def test_manifest_not_json(tmp_path):
    d = make_bundle(tmp_path / "b")
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(CheckFailed, match="not valid JSON"):
        open_bundle(d)
