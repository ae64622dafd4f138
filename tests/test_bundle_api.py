"""BundleWriter / open_bundle / add_engine: the API convert, runtime and deploy build on."""
import json
import os

import pytest

from support.bundles import ENGINE_TARGET, SPEC, edit_manifest, flip_byte, make_bundle, sha
from jetson_deploy.bundle import BundleWriter, add_engine, engine_filename, open_bundle
from jetson_deploy.errors import BadInput, CheckFailed


def test_write_then_read_roundtrip(tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes(os.urandom(3 * (1 << 20) + 17))  # bigger than one copy chunk
    out = tmp_path / "demo-0.1.0"
    with BundleWriter(out, name="demo", version="0.1.0") as w:
        art = w.add_file(src, "model.onnx", kind="onnx")
        w.add_bytes(b"a\nb\n", "labels.txt", kind="labels")
        w.manifest["spec"] = dict(SPEC)
        w.manifest["conversion"] = {"converter": "onnx", "anything": {"nested": [1, 2]}}
        assert not out.exists(), "nothing appears at the target before the block ends"
    assert art["sha256"] == sha(src) and art["size"] == src.stat().st_size
    b = open_bundle(out)
    assert (b.name, b.version, b.precision) == ("demo", "0.1.0", "fp32")
    assert os.path.samefile(str(b.path("onnx")), str(out / "model.onnx"))
    assert sha(b.path("onnx")) == sha(src)
    assert b.labels == ["a", "b"]
    assert b.spec.shape == [1, 3, 16, 16] and b.spec.input_name == "input"
    assert b.sha256 == sha(out / "manifest.json")
    assert b.manifest["conversion"]["anything"] == {"nested": [1, 2]}
    assert sorted(os.listdir(out)) == ["labels.txt", "manifest.json", "model.onnx"]


def test_writer_error_leaves_nothing_and_keeps_old(tmp_path):
    out = make_bundle(tmp_path / "b")
    before = sha(out / "manifest.json")
    with pytest.raises(RuntimeError):
        with BundleWriter(out, name="demo", version="0.2.0") as w:
            w.add_bytes(b"x", "model.onnx", kind="onnx")
            raise RuntimeError("boom")
    assert sha(out / "manifest.json") == before
    assert [p.name for p in tmp_path.iterdir()] == ["b"], "no temp dirs left behind"


def test_writer_rejects_bad_inputs(tmp_path):
    with pytest.raises(BadInput, match="semantic version"):
        BundleWriter(tmp_path / "x", name="demo", version="1.0")
    with pytest.raises(BadInput, match="bundle name"):
        BundleWriter(tmp_path / "x", name="../evil", version="1.0.0")
    with BundleWriter(tmp_path / "x", name="demo", version="1.0.0") as w:
        with pytest.raises(BadInput, match="'..'"):
            w.add_bytes(b"x", "../escape", kind="onnx")
        with pytest.raises(BadInput, match="kind"):
            w.add_bytes(b"x", "a.bin", kind="weird")
        with pytest.raises(BadInput, match="must be stored as engines/8.6.2_sm87_fp16.engine"):
            w.add_bytes(b"x", "engines/other.engine", kind="engine", target=ENGINE_TARGET)
        with pytest.raises(BadInput, match="target needs"):
            w.add_bytes(b"x", "engines/8.6.2_sm87_fp16.engine", kind="engine")
        with pytest.raises(BadInput, match="reserved"):
            w.add_bytes(b"x", "manifest.json", kind="other")
    # schema violation at write time (precision enum) -> BadInput and no bundle
    with pytest.raises(BadInput, match="precision"):
        with BundleWriter(tmp_path / "y", name="demo", version="1.0.0") as w:
            w.manifest["precision"] = "int4"
    assert not (tmp_path / "y").exists()


def test_engine_filename_and_selection(tmp_path):
    assert engine_filename("8.6.2.3", "8.7", "FP16") == "engines/8.6.2_sm87_fp16.engine"
    assert engine_filename("10.3", 72, "int8") == "engines/10.3.0_sm72_int8.engine"
    b = open_bundle(make_bundle(tmp_path / "b"))
    assert b.path("engine", tensorrt="8.6.2.3", sm=87, precision="fp16").name == "8.6.2_sm87_fp16.engine"
    assert b.path("engine", tensorrt="8.6.2", sm=72) is None
    assert b.artifact("engine", {"platform": "orin"})["target"]["jetpack"] == "6.0"
    assert b.artifact("exported-program") is None


def test_missing_bundle_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        open_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="no manifest.json"):
        open_bundle(tmp_path / "empty")


@pytest.mark.parametrize("tamper,expect", [
    (lambda d: flip_byte(d / "engines/8.6.2_sm87_fp16.engine"), r"artifact engines/8.6.2_sm87_fp16.engine: sha256 mismatch"),
    (lambda d: (d / "labels.txt").unlink(), r"artifact labels.txt: missing"),
    (lambda d: (d / "extra.bin").write_bytes(b"x"), r"extra.bin: unlisted file"),
    (lambda d: (d / "engines" / "more.engine").write_bytes(b"x"), r"engines/more.engine: unlisted file"),
    (lambda d: open(d / "model.onnx", "ab").write(b"!"), r"artifact model.onnx: size mismatch"),
    (lambda d: os.symlink("model.onnx", str(d / "link.onnx")), r"link.onnx: unlisted symlink"),
])
def test_tampered_bundle_is_refused_naming_artifact(tmp_path, tamper, expect):
    d = make_bundle(tmp_path / "b")
    open_bundle(d)  # intact first
    tamper(d)
    with pytest.raises(CheckFailed, match=expect):
        open_bundle(d)
    # without verify, opening works, and using the artifact checks it
    b = open_bundle(d, verify=False)
    assert b.problems()


def test_lazy_check_on_use_when_not_verified(tmp_path):
    d = make_bundle(tmp_path / "b")
    flip_byte(d / "model.onnx", 100)
    b = open_bundle(d, verify=False)
    assert b.labels == ["circle", "square", "triangle", "none"]  # labels.txt intact
    with pytest.raises(CheckFailed, match="artifact model.onnx: sha256 mismatch"):
        b.path("onnx")


def test_manifest_edit_that_breaks_schema(tmp_path):
    d = make_bundle(tmp_path / "b")
    edit_manifest(d, lambda m: m["artifacts"][0].update(size=-1))
    with pytest.raises(CheckFailed, match=r"manifest field artifacts/0/size"):
        open_bundle(d)
    d2 = make_bundle(tmp_path / "c")
    edit_manifest(d2, lambda m: m["artifacts"][0].update(path="../../etc/passwd"))
    with pytest.raises(CheckFailed, match="artifacts/0/path"):
        open_bundle(d2)


def test_add_engine_keeps_other_checksums(tmp_path):
    d = make_bundle(tmp_path / "b")
    before = {a["path"]: a for a in open_bundle(d).artifacts}
    inode_onnx = os.stat(str(d / "model.onnx")).st_ino
    eng = tmp_path / "built.engine"
    eng.write_bytes(b"PLAN-orin-int8" * 100)
    art = add_engine(d, eng, {"tensorrt": "10.3.0.26", "sm": 87, "precision": "int8"})
    assert art["path"] == "engines/10.3.0_sm87_int8.engine" and art["sha256"] == sha(eng)
    b = open_bundle(d)  # verifies everything
    after = {a["path"]: a for a in b.artifacts}
    assert set(after) == set(before) | {art["path"]}
    for p, a in before.items():
        assert after[p] == a, p
    assert (b.name, b.version) == ("demo", "0.1.0")
    assert os.stat(str(d / "model.onnx")).st_ino == inode_onnx, "others hard-linked, not rewritten"
    # replacing the same target swaps just that engine
    art2 = add_engine(d, b"NEWPLAN", {"tensorrt": "10.3.0", "sm": 87, "precision": "int8"})
    b = open_bundle(d)
    assert len(b.engines) == 2 and b.artifact("engine", {"precision": "int8"})["sha256"] == art2["sha256"]
    with pytest.raises(BadInput):
        add_engine(d, tmp_path / "missing.engine", {"tensorrt": "8.6.2", "sm": 87, "precision": "fp16"})


def test_manifest_bytes_are_canonical(tmp_path):
    d = make_bundle(tmp_path / "b")
    raw = (d / "manifest.json").read_text()
    m = json.loads(raw)
    assert raw == json.dumps(m, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert [a["path"] for a in m["artifacts"]] == sorted(a["path"] for a in m["artifacts"])


def test_add_engine_through_a_symlink_keeps_the_link(tmp_path):
    real = make_bundle(tmp_path / "bundles" / "demo-0.1.0")
    link = tmp_path / "active"
    os.symlink(str(real), str(link))
    add_engine(link, b"PLAN", {"tensorrt": "8.6.2", "sm": 72, "precision": "fp16"})
    assert link.is_symlink() and os.path.realpath(str(link)) == str(real)
    assert open_bundle(real).artifact("engine", {"sm": 72}) is not None
