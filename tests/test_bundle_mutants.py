"""These tests kill mutmut survivors in jetson_deploy/bundle/ (manifest, pack/unpack, reader, sign,
select, engine cache, report, writer, exports): each names the mutant it kills in its docstring.

They run in-process (a CLI subprocess imports the installed package, not mutmut's mutant), on
small bundles the tests make, CPU only.
"""
import copy
import io
import json
import logging
import sys
import tarfile
from pathlib import Path

import pytest

from jetson_deploy.bundle import BundleWriter, add_engine, open_bundle
from jetson_deploy.bundle.engine_cache import EngineCache, cache_key, parse_size
from jetson_deploy.bundle.export import export_bundle, export_support
from jetson_deploy.bundle.export.deepstream import source_uri
from jetson_deploy.bundle.export.keyfile import format_value
from jetson_deploy.bundle.export.triton import plan_triton
from jetson_deploy.bundle.manifest import normalize_target
from jetson_deploy.bundle.pack import read_packed_index
from jetson_deploy.bundle.report import inspect_bundle, render_inspect, render_verify, verify_bundle
from jetson_deploy.bundle.select import dynamic_batch
from jetson_deploy.bundle.sign import keygen, open_trusted, sign_bundle
from jetson_deploy.errors import BadInput, CheckFailed, MissingDependency
from support.bundles import flip_byte, make_bundle
from support.export_bundles import SPECS, export_bundle_dir

ENGINE = {"path": "engines/8.6.2_sm87_fp16.engine", "kind": "engine", "target": {"tensorrt": "8.6.2", "sm": 87, "precision": "fp16"}}
IO_CHECK = {"onnx_check": {"inputs": [{"name": "input"}], "outputs": [{"name": "logits"}]}}


def _manifest(task="classify", labels=None, arts=(ENGINE,)):
    spec = copy.deepcopy(SPECS[task])
    if labels is not None:
        spec["labels"] = labels
    return {"spec": spec, "precision": "fp16", "artifacts": [dict(a) for a in arts], "conversion": copy.deepcopy(IO_CHECK)}


# ---- engine cache -------------------------------------------------------------------------

def test_cache_size_suffix_on_a_multi_digit_number():
    """jetson_deploy.bundle.engine_cache.x_parse_size__mutmut_15: the unit is the last character, not the second."""
    assert parse_size("512M") == 512 << 20
    assert parse_size("10k") == 10 << 10
    assert parse_size("1.5GiB") == int(1.5 * (1 << 30))
    assert EngineCache("unused", max_bytes="64K").max_bytes == 64 << 10


def test_cache_keeps_the_plan_just_stored_even_over_the_bound(tmp_path):
    """jetson_deploy.bundle.engine_cache.xǁEngineCacheǁput__mutmut_55: put() evicts older entries, never the one it stores."""
    cache = EngineCache(tmp_path / "c", max_bytes=100)
    old = cache_key("ab" * 32, "8.6.2", 87, "fp16", None)
    new = cache_key("cd" * 32, "8.6.2", 87, "fp16", None)
    cache.put(old, b"o" * 60)
    cache.put(new, b"n" * 150)  # larger than the bound: warned, still kept
    assert cache.get(old) is None
    got = cache.get(new)
    assert got is not None and Path(got).read_bytes() == b"n" * 150 and cache.last_event == "hit"


def test_cache_key_is_stable_across_releases():
    """jetson_deploy.bundle.engine_cache.x_cache_key__mutmut_11: the key's fields are its spelling; a device's cached plans
    stay hits after an upgrade only while the key of the same inputs stays the same."""
    key = cache_key("ab" * 32, "8.6.2", 87, "fp16", {"input": [1, 3, 224, 224]})
    assert key == "f92b735e1927f6b54732dd084779e249e64907b6c32e36c26a12c8adde12f8bf"


# ---- exports --------------------------------------------------------------------------------

def test_keyfile_bool_false_is_zero():
    """jetson_deploy.bundle.export.keyfile.x_format_value__mutmut_20: False is written as 0."""
    assert format_value("bool", False) == "0"
    assert format_value("bool", True) == "1"


def test_per_channel_std_reason_says_how_to_fold():
    """jetson_deploy.bundle.export.nvinfer_norm.x_input_reason__mutmut_22: the refusal ends with the remedy (fold normalisation)."""
    m = _manifest()
    m["spec"]["preprocess"]["std"] = [0.229, 0.224, 0.225]
    ds = export_support(m)["deepstream"]
    assert ds["ok"] is False and "--fold-preprocess" in ds["detail"] and "None" not in ds["detail"]


def test_engine_only_bundle_exports_to_both_formats():
    """jetson_deploy.bundle.export.support.x__deepstream_reason__mutmut_17 and jetson_deploy.bundle.export.support.x__triton_reason__mutmut_11: engines alone
    (no model.onnx) are enough for nvinfer and, with the ONNX check's I/O, for Triton."""
    sup = export_support(_manifest())
    assert sup["deepstream"] == {"ok": True, "detail": "nvinfer: 1 engine config"}
    assert sup["triton"]["ok"] is True and sup["triton"]["detail"] == "tensorrt_plan for sm87"


def test_nothing_to_export_without_model_or_engine():
    """The other side of the two above: neither model.onnx nor an engine is refused by both."""
    sup = export_support(_manifest(arts=()))
    assert sup["deepstream"]["ok"] is False and "neither model.onnx nor an engine" in sup["deepstream"]["detail"]
    assert sup["triton"]["ok"] is False and "neither model.onnx nor an engine" in sup["triton"]["detail"]


def test_classifier_without_labels_is_exportable_a_detector_is_not():
    """jetson_deploy.bundle.export.support.x__deepstream_reason__mutmut_47: only a detector needs labels (num-detected-classes)."""
    assert export_support(_manifest("classify", labels=[]))["deepstream"]["ok"] is True
    ds = export_support(_manifest("detect", labels=[]))["deepstream"]
    assert ds["ok"] is False and "a detector needs labels" in ds["detail"]


def test_bbox_parser_hint_only_for_detectors():
    """jetson_deploy.bundle.export.support.x__deepstream_detail__mutmut_32: the parse-bbox-func-name hint is for detect heads."""
    assert "parse-bbox-func-name" not in export_support(_manifest("classify"))["deepstream"]["detail"]
    assert "parse-bbox-func-name" in export_support(_manifest("detect"))["deepstream"]["detail"]


def test_source_path_becomes_a_file_uri():
    """jetson_deploy.bundle.export.deepstream.x_source_uri__mutmut_5: a path is written as file://PATH, a URI as given."""
    assert source_uri("/data/clip.mp4") == "file:///data/clip.mp4"
    assert source_uri("clips/a.mp4") == "file://clips/a.mp4"
    assert source_uri("rtsp://cam/1") == "rtsp://cam/1"


@pytest.fixture
def triton_bundle(tmp_path):
    return export_bundle_dir(tmp_path / "net-1.0.0", "classify", "fp16")


def test_triton_config_has_input_and_client_note_has_size(triton_bundle, tmp_path):
    """jetson_deploy.bundle.export.triton.x_config_text__mutmut_10 (config.pbtxt's ``input`` field) and
    jetson_deploy.bundle.export.triton.x__client_note__mutmut_21 (the note gives the resize as WxH)."""
    res = export_bundle(triton_bundle, "triton", tmp_path / "repo")
    cfg = (tmp_path / "repo" / "net" / "config.pbtxt").read_text()
    assert "\ninput [" in cfg and "XXinput" not in cfg and "\noutput [" in cfg
    assert any("RGB 16x16, (x * " in n for n in res["notes"]), res["notes"]


def test_plan_triton_serves_engines_by_default(triton_bundle):
    """jetson_deploy.bundle.export.triton.x_plan_triton__mutmut_1: plan_triton's default is the engines, not model.onnx."""
    b = open_bundle(triton_bundle)
    try:
        plan = plan_triton(b)
    finally:
        b.close()
    files = [rel for rel, _ in plan.files]
    assert "net/1/model.plan" in files or any(f.endswith(".plan") for f in files), files
    assert not any(f.endswith("model.onnx") for f in files), files


# ---- manifest / writer ----------------------------------------------------------------------

def test_target_precision_is_normalized_and_checked():
    """jetson_deploy.bundle.manifest.x_normalize_target__mutmut_28: precision is lower-cased and checked."""
    assert normalize_target({"tensorrt": "8.6", "sm": "87", "precision": "FP16"})["precision"] == "fp16"
    with pytest.raises(BadInput, match="precision 'fp64' must be one of"):
        normalize_target({"precision": "fp64"})


def test_writer_refuses_fields_it_sets(tmp_path):
    """jetson_deploy.bundle.writer.xǁBundleWriterǁ_record__mutmut_17: an extra field the writer sets is BadInput (not a
    ValueError from a broken format string)."""
    with pytest.raises(BadInput, match="'sha256' is set by the writer"):
        with BundleWriter(tmp_path / "b", name="b", version="1.0.0") as w:
            w.add_bytes(b"x" * 10, "model.onnx", kind="onnx", sha256="00" * 32)


def _signed(tmp_path):
    keys = keygen(tmp_path / "key")
    b = make_bundle(tmp_path / "demo-0.1.0")
    sign_bundle(b, keys["private_key"])
    return b, keys


def test_add_engine_to_signed_bundle_says_to_resign(tmp_path, caplog):
    """jetson_deploy.bundle.writer.x_add_engine__mutmut_176: the warning says the signature was removed and how to re-sign."""
    b, _ = _signed(tmp_path)
    with caplog.at_level(logging.WARNING, logger="jetson_deploy.bundle.writer"):
        add_engine(b, b"PLAN-new", {"tensorrt": "8.5.2", "sm": 72, "precision": "fp16"})
    assert not (b / "manifest.sig").exists()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "signature (manifest.sig) was removed" in text and "bundle sign" in text, text


# ---- sign -----------------------------------------------------------------------------------

def test_open_trusted_checks_the_key_it_is_given(tmp_path, monkeypatch):
    """jetson_deploy.bundle.sign.x_open_trusted__mutmut_2: --key requires a valid signature even with no device-wide key."""
    import jetson_deploy.bundle.sign as sign

    monkeypatch.delenv(sign.REQUIRE_KEY_ENV, raising=False)
    monkeypatch.setattr(sign, "TRUSTED_KEY_FILE", str(tmp_path / "no-trusted.pub"))
    b, keys = _signed(tmp_path)
    open_trusted(b, key=keys["public_key"]).close()
    (b / "manifest.sig").unlink()
    with pytest.raises(CheckFailed):
        open_trusted(b, key=keys["public_key"])
    open_trusted(b).close()  # no key asked for: the unsigned bundle runs


def test_missing_cryptography_names_what_it_is_for(tmp_path, monkeypatch):
    """jetson_deploy.bundle.sign.x__crypto__mutmut_2: the missing-dependency error says it is needed for bundle signatures."""
    for mod in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(MissingDependency, match="cryptography is needed for bundle signatures"):
        keygen(tmp_path / "key")


# ---- select ---------------------------------------------------------------------------------

def test_bundle_without_conversion_record_has_static_batch(tmp_path):
    """jetson_deploy.bundle.select.x_dynamic_batch__mutmut_11: no ``conversion`` in the manifest means a static batch."""
    b = open_bundle(make_bundle(tmp_path / "demo-0.1.0"))
    try:
        assert "conversion" not in b.manifest and dynamic_batch(b) is False
    finally:
        b.close()
    d = open_bundle(export_bundle_dir(tmp_path / "dyn-1.0.0", dynamic=True))
    try:
        assert dynamic_batch(d) is True
    finally:
        d.close()


# ---- reader / pack --------------------------------------------------------------------------

def test_one_problem_is_reported_without_a_count(tmp_path):
    """jetson_deploy.bundle.reader.xǁBundleǁverify__mutmut_10: "(and N more problems)" only when there are more."""
    b = make_bundle(tmp_path / "demo-0.1.0")
    flip_byte(b / "model.onnx")
    with pytest.raises(CheckFailed) as one:
        open_bundle(b)
    assert "model.onnx" in str(one.value) and "more problem" not in str(one.value)
    flip_byte(b / "labels.txt", 0)
    with pytest.raises(CheckFailed, match=r"\(and 1 more problems\)"):
        open_bundle(b)


def _tar_of(bundle: Path, out: Path) -> Path:
    with tarfile.open(str(out), "w") as tar:
        for p in sorted(bundle.rglob("*")):
            if p.is_file():
                tar.add(str(p), arcname=p.relative_to(bundle).as_posix())
    return out


def test_packed_bundle_failing_verify_is_checkfailed_and_cleaned_up(tmp_path, monkeypatch):
    """jetson_deploy.bundle.reader.x_open_bundle__mutmut_71: a packed bundle whose artifact fails its sha256 raises
    CheckFailed (not ValueError from the temp-dir bookkeeping) and leaves no extraction behind."""
    import jetson_deploy.bundle.reader as reader

    b = make_bundle(tmp_path / "demo-0.1.0")
    flip_byte(b / "model.onnx")  # same size: the member checks pass, the sha256 does not
    jdb = _tar_of(b, tmp_path / "demo.jdb")
    monkeypatch.setattr(reader, "_TEMP_DIRS", [])
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(CheckFailed, match="model.onnx"):
        open_bundle(jdb)
    assert reader._TEMP_DIRS == [] and list((tmp_path / "tmp").iterdir()) == []


def test_packed_index_errors_name_the_archive(tmp_path):
    """jetson_deploy.bundle.pack.x_read_packed_index__mutmut_3 and jetson_deploy.bundle.pack.x_read_packed_index__mutmut_126: the one-line errors name the file."""
    bad = tmp_path / "not-a-tar.jdb"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(BadInput, match="not-a-tar.jdb is not a bundle"):
        read_packed_index(bad)
    empty = tmp_path / "no-manifest.jdb"
    with tarfile.open(str(empty), "w") as tar:
        for name in ("a/x.onnx", "b/y.onnx"):  # two top-level dirs, no manifest anywhere
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(CheckFailed, match="no-manifest.jdb: packed bundle has no manifest.json"):
        read_packed_index(empty)


# ---- report ---------------------------------------------------------------------------------

def test_inspect_shows_keep_aspect(tmp_path):
    """jetson_deploy.bundle.report.x_render_inspect__mutmut_246: the preprocess row shows the spec's keep_aspect."""
    text = render_inspect(inspect_bundle(make_bundle(tmp_path / "demo-0.1.0")))
    assert "keep_aspect=False " in text, text
    det = export_bundle_dir(tmp_path / "det-1.0.0", "detect")
    assert "keep_aspect=True " in render_inspect(inspect_bundle(det))


def test_verify_report_headline_says_failed(tmp_path):
    """jetson_deploy.bundle.report.x_render_verify__mutmut_59: a failed verify starts with FAILED."""
    b = make_bundle(tmp_path / "demo-0.1.0")
    flip_byte(b / "model.onnx")
    text = render_verify(verify_bundle(b))
    assert text.startswith("FAILED  demo 0.1.0  (1 problem)"), text


def test_packed_index_closes_the_archive(tmp_path, monkeypatch):
    """A bug found here (not a mutant): read_packed_index reused the archive's name ``f`` for the
    manifest member it read, so its ``finally`` closed the member and left the archive open."""
    import jetson_deploy.bundle.pack as pack
    from jetson_deploy.bundle import pack_bundle

    b = make_bundle(tmp_path / "demo-0.1.0")
    jdb = tmp_path / "demo.jdb"
    pack_bundle(b, jdb)
    opened = []

    def spy(archive):
        f = real(archive)
        opened.append(f)
        return f

    real = pack.open_archive
    monkeypatch.setattr(pack, "open_archive", spy)
    idx = read_packed_index(jdb)
    assert json.loads(idx["manifest"])["name"] == "demo"
    assert len(opened) == 1 and opened[0].closed
