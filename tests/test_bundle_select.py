"""Engine selection on load and the on-device engine cache (injected build_fn, no TensorRT)."""
import json
import os
import time

import pytest

from support.bundles import flip_byte, make_bundle
from jetson_deploy.bundle import EngineCache, open_bundle, resolve_engine
from jetson_deploy.bundle.engine_cache import cache_key, default_cache_dir, parse_size
from jetson_deploy.errors import BadInput, CheckFailed


def same(a, b) -> bool:
    """The same file: a verified bundle hands out paths through its directory handle."""
    return a is not None and os.path.samefile(str(a), str(b))


class FakeBuilder:
    """Stands in for TensorRT: records calls, returns a plan derived from its inputs."""

    def __init__(self, size=2000):
        self.calls = []
        self.size = size

    def __call__(self, onnx_path, precision, calib, qdq):
        self.calls.append((onnx_path, precision, calib, qdq))
        src = open(qdq or onnx_path, "rb").read()
        body = (b"PLAN|" + precision.encode() + b"|" + src)[: self.size]
        return body + b"\0" * (self.size - len(body))


@pytest.fixture()
def bundle(tmp_path):
    return open_bundle(make_bundle(tmp_path / "demo-0.1.0", qdq=True, calib="8.2.1"))


def test_exact_bundled_match_does_not_build(bundle, tmp_path):
    fb = FakeBuilder()
    path, how = resolve_engine(bundle, "8.6.2.3", 87, "fp16", cache_dir=tmp_path / "c", build_fn=fb)
    assert how == "bundled" and same(path, bundle.root / "engines/8.6.2_sm87_fp16.engine")
    assert fb.calls == []
    # same spec shapes given explicitly still match the bundled plan
    assert resolve_engine(bundle, "8.6.2", "8.7", "fp16", shapes={"input": [1, 3, 16, 16]}, cache_dir=tmp_path / "c", build_fn=fb)[1] == "bundled"


def test_miss_builds_then_hits(bundle, tmp_path):
    fb = FakeBuilder()
    cache = tmp_path / "c"
    p1, how1 = resolve_engine(bundle, "8.6.2", 72, "fp16", cache_dir=cache, build_fn=fb)
    assert how1 == "built" and len(fb.calls) == 1
    onnx, prec, calib, qdq = fb.calls[0]
    assert same(onnx, bundle.root / "model.onnx") and prec == "fp16" and calib is None and qdq is None
    p2, how2 = resolve_engine(bundle, "8.6.2", 72, "fp16", cache_dir=cache, build_fn=fb)
    assert how2 == "cache-hit" and p2 == p1 and len(fb.calls) == 1
    meta = json.loads(p1.with_suffix(".json").read_text())
    assert meta["bundle_sha256"] == bundle.sha256 and meta["sm"] == 72 and meta["hits"] == 1
    # any part of the key changing is a different entry
    for args in (("8.6.1", 72, "fp16"), ("8.6.2", 87, "fp32"), ("8.6.2", 72, "fp32")):
        assert resolve_engine(bundle, *args, cache_dir=cache, build_fn=fb)[1] == "built"
    assert resolve_engine(bundle, "8.6.2", 72, "fp16", shapes={"input": [4, 3, 16, 16]}, cache_dir=cache, build_fn=fb)[1] == "built"
    assert len(fb.calls) == 5
    # another bundle (different manifest sha) does not share entries
    other = open_bundle(make_bundle(tmp_path / "demo-0.2.0", version="0.2.0"))
    assert resolve_engine(other, "8.6.2", 72, "fp16", cache_dir=cache, build_fn=fb)[1] == "built"


@pytest.mark.parametrize("damage", ["flip", "truncate", "no-meta", "wrong-meta"])
def test_corrupt_cached_engine_is_rebuilt_not_loaded(bundle, tmp_path, damage):
    fb = FakeBuilder()
    cache = tmp_path / "c"
    p1, _ = resolve_engine(bundle, "8.6.2", 72, "fp16", cache_dir=cache, build_fn=fb)
    good = p1.read_bytes()
    if damage == "flip":
        flip_byte(p1, 100)
    elif damage == "truncate":
        p1.write_bytes(good[:500])
    elif damage == "no-meta":
        p1.with_suffix(".json").unlink()
    else:
        p1.with_suffix(".json").write_text("{broken")
    c = EngineCache(cache)
    p2, how = resolve_engine(bundle, "8.6.2", 72, "fp16", cache=c, build_fn=fb)
    assert how == "built" and len(fb.calls) == 2
    assert c.last_event.startswith("corrupt")
    assert p2.read_bytes() == good
    assert resolve_engine(bundle, "8.6.2", 72, "fp16", cache=c, build_fn=fb)[1] == "cache-hit"


def test_bundle_checksum_mismatch_is_an_error_never_a_rebuild(tmp_path):
    fb = FakeBuilder()
    d = make_bundle(tmp_path / "b")
    b = open_bundle(d)  # verified now
    eng = d / "engines/8.6.2_sm87_fp16.engine"
    flip_byte(eng, 7)  # changed after open: the changed stat makes use re-check it
    st = eng.stat()
    os.utime(str(eng), ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    with pytest.raises(CheckFailed, match="artifact engines/8.6.2_sm87_fp16.engine: sha256 mismatch"):
        resolve_engine(b, "8.6.2", 87, "fp16", cache_dir=tmp_path / "c", build_fn=fb)
    with pytest.raises(CheckFailed, match="artifact engines/8.6.2_sm87_fp16.engine: sha256 mismatch"):
        resolve_engine(open_bundle(d, verify=False), "8.6.2", 87, "fp16", cache_dir=tmp_path / "c", build_fn=fb)
    flip_byte(d / "model.onnx", 7)
    with pytest.raises(CheckFailed, match="artifact model.onnx"):
        resolve_engine(open_bundle(d, verify=False), "8.6.2", 72, "fp16", cache_dir=tmp_path / "c", build_fn=fb)
    with pytest.raises(CheckFailed):
        resolve_engine(d, "8.6.2", 72, "fp16", cache_dir=tmp_path / "c", build_fn=fb)  # a path is opened verified
    assert fb.calls == []


def test_int8_inputs_follow_tensorrt_version(bundle, tmp_path):
    fb = FakeBuilder()
    cache = tmp_path / "c"
    resolve_engine(bundle, "8.6.2", 87, "int8", cache_dir=cache, build_fn=fb)
    assert fb.calls[-1][2] is None and same(fb.calls[-1][3], bundle.root / "model.qdq.onnx")
    resolve_engine(bundle, "10.3.0", 87, "int8", cache_dir=cache, build_fn=fb)
    assert same(fb.calls[-1][3], bundle.root / "model.qdq.onnx")
    resolve_engine(bundle, "8.2.1", 72, "int8", cache_dir=cache, build_fn=fb)  # TensorRT < 8.5: calibration cache
    assert same(fb.calls[-1][2], bundle.root / "calibration/8.2.1.cache") and fb.calls[-1][3] is None
    resolve_engine(bundle, "8.2.3", 72, "int8", cache_dir=cache, build_fn=fb)  # 8.2.1's cache is no use to 8.2.3
    assert fb.calls[-1][2] is None and same(fb.calls[-1][3], bundle.root / "model.qdq.onnx")


def test_calibration_cache_of_another_patch_release_is_not_used(tmp_path):
    """Issue #12 item 7: TensorRT skips a cache whose header version differs, and the builder refuses it;
    selection must not hand 8.2.1's cache to 8.2.3 (no same-major.minor fallback)."""
    fb = FakeBuilder()
    b = open_bundle(make_bundle(tmp_path / "b", calib="8.2.1"))
    with pytest.raises(BadInput, match="no INT8 data for TensorRT 8.2.3"):
        resolve_engine(b, "8.2.3", 72, "int8", cache_dir=tmp_path / "c", build_fn=fb)
    assert fb.calls == []


def test_int8_without_data_or_support(tmp_path):
    fb = FakeBuilder()
    b = open_bundle(make_bundle(tmp_path / "b"))
    with pytest.raises(BadInput, match="no INT8 data for TensorRT 8.6.2"):
        resolve_engine(b, "8.6.2", 87, "int8", cache_dir=tmp_path / "c", build_fn=fb)
    with pytest.raises(BadInput, match="no fast INT8"):
        resolve_engine(b, "8.2.1", 53, "int8", cache_dir=tmp_path / "c", build_fn=fb)
    only_calib = open_bundle(make_bundle(tmp_path / "c8", calib="8.5.2"))
    resolve_engine(only_calib, "8.5.2", 87, "int8", cache_dir=tmp_path / "c", build_fn=fb)
    assert fb.calls[-1][2].endswith("calibration/8.5.2.cache")


def test_lru_eviction_keeps_the_cache_bounded(bundle, tmp_path):
    fb = FakeBuilder(size=1000)
    c = EngineCache(tmp_path / "c", max_bytes=2500)  # room for two plans
    a, _ = resolve_engine(bundle, "8.6.2", 72, "fp16", cache=c, build_fn=fb)
    b_, _ = resolve_engine(bundle, "8.6.2", 72, "fp32", cache=c, build_fn=fb)
    assert resolve_engine(bundle, "8.6.2", 72, "fp16", cache=c, build_fn=fb)[1] == "cache-hit"  # a is now most recent
    resolve_engine(bundle, "8.6.2", 61, "fp16", cache=c, build_fn=fb)  # third plan: evicts b (least recently used)
    assert a.exists() and not b_.exists() and not b_.with_suffix(".json").exists()
    assert c.total_bytes() <= 2500 and len(c.entries()) == 2
    assert resolve_engine(bundle, "8.6.2", 72, "fp32", cache=c, build_fn=fb)[1] == "built"
    assert c.clear() == 2 and c.total_bytes() == 0


def test_build_fn_output_checks(bundle, tmp_path):
    with pytest.raises(BadInput, match="empty plan"):
        resolve_engine(bundle, "8.6.2", 72, "fp16", cache_dir=tmp_path / "c", build_fn=lambda *a: b"")
    with pytest.raises(BadInput, match="instead of plan bytes"):
        resolve_engine(bundle, "8.6.2", 72, "fp16", cache_dir=tmp_path / "c", build_fn=lambda *a: 12)
    assert EngineCache(tmp_path / "c").entries() == []
    p, how = resolve_engine(bundle, "8.6.2", 72, "fp16", cache_dir=tmp_path / "c", build_fn=lambda *a: bytearray(b"plan"))
    assert how == "built" and p.read_bytes() == b"plan"


def test_cache_location_and_size_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("JETSON_DEPLOY_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.setenv("JETSON_DEPLOY_CACHE_MAX", "3M")
    c = EngineCache()
    assert c.root == tmp_path / "env-cache" and c.max_bytes == 3 << 20 == parse_size("3MiB")
    monkeypatch.delenv("JETSON_DEPLOY_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "jetson-deploy" / "engines"
    assert cache_key("a" * 64, "8.6.2", 87, "fp16", {"x": [1]}) != cache_key("a" * 64, "8.6.2", 87, "fp16", {"x": [2]})
    with pytest.raises(BadInput):
        parse_size("lots")


def test_default_build_fn_without_tensorrt_is_a_clear_error(bundle, tmp_path, monkeypatch):
    """No bundled or cached plan and no TensorRT here: one line saying what to install, nothing cached."""
    import sys

    from jetson_deploy.errors import MissingDependency

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails, as on a host without TensorRT
    with pytest.raises(MissingDependency, match="tensorrt") as exc:
        resolve_engine(bundle, "8.6.2", 72, "fp16", cache_dir=tmp_path / "c")
    assert isinstance(exc.value, BadInput) and "\n" not in str(exc.value)
    assert EngineCache(tmp_path / "c").entries() == []


def test_orphan_plans_are_evicted_only_when_stale(tmp_path):
    c = EngineCache(tmp_path / "c", max_bytes=10 ** 6)
    c.put("a" * 64, b"plan-a")
    fresh = c.engine_path("b" * 64)
    fresh.write_bytes(b"being stored by another process")
    stale = c.engine_path("c" * 64)
    stale.write_bytes(b"left by a crash")
    old = time.time() - 3600
    os.utime(str(stale), (old, old))
    removed = c.evict()
    assert removed == ["c" * 64] and fresh.exists() and c.engine_path("a" * 64).exists()
    assert c.get("b" * 64) is None and c.last_event.startswith("corrupt") and not fresh.exists()
