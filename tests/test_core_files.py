import hashlib
import os

import pytest

from jetson_deploy._files import atomic_dir, atomic_output, atomic_write_json, sha256_file


def test_sha256_streams_large_files(tmp_path):
    p = tmp_path / "big.bin"
    data = os.urandom(3 * (1 << 20) + 17)
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()


def test_atomic_output_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as f:
            f.write(b"partial")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_dir_swaps_in_and_keeps_old_on_error(tmp_path):
    target = tmp_path / "bundle"
    with atomic_dir(target) as d:
        (d / "a.txt").write_text("v1")
    assert (target / "a.txt").read_text() == "v1"
    with pytest.raises(ValueError):
        with atomic_dir(target) as d:
            (d / "a.txt").write_text("v2-half")
            raise ValueError("boom")
    assert (target / "a.txt").read_text() == "v1"
    with atomic_dir(target) as d:
        (d / "b.txt").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_atomic_json_is_sorted_and_complete(tmp_path):
    p = atomic_write_json(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert p.read_text().startswith('{\n  "a"') and p.read_text().endswith("}\n")


def test_atomic_dir_has_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "b") as d:
            (d / "x").write_text("1")
        atomic_write_json(tmp_path / "m.json", {})
        with atomic_output(tmp_path / "o.bin") as f:
            f.write(b"1")
    finally:
        os.umask(old)
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "o.bin").stat().st_mode & 0o777 == 0o644


def test_has_module_sees_modules_installed_in_sys_modules(monkeypatch):
    import sys
    import types

    from jetson_deploy._lazy import has_module, require

    assert not has_module("jd_fake_module_xyz")
    monkeypatch.setitem(sys.modules, "jd_fake_module_xyz", types.ModuleType("jd_fake_module_xyz"))
    assert has_module("jd_fake_module_xyz")
    assert require("jd_fake_module_xyz").__name__ == "jd_fake_module_xyz"


def test_require_forgets_a_module_removed_from_sys_modules(monkeypatch):
    import sys
    import types

    from jetson_deploy._lazy import has_module, require
    from jetson_deploy.errors import MissingDependency

    monkeypatch.setitem(sys.modules, "jd_fake_double", types.ModuleType("jd_fake_double"))
    require("jd_fake_double")
    monkeypatch.delitem(sys.modules, "jd_fake_double")
    assert not has_module("jd_fake_double")
    with pytest.raises(MissingDependency):
        require("jd_fake_double")


def test_prepare_output_replaces_only_what_we_made(tmp_path):
    import json

    from jetson_deploy._files import BUNDLE, CALIBRATION_SET, PACKED, prepare_output
    from jetson_deploy.errors import BadInput

    user = tmp_path / "v"
    user.mkdir()
    (user / "thesis.txt").write_text("x")
    for kind in (BUNDLE, CALIBRATION_SET):
        with pytest.raises(BadInput, match="not a .* made by jetson-deploy"):
            prepare_output(user, kind)
    with pytest.raises(BadInput, match="never replaced"):
        prepare_output("/dev/null", PACKED)
    with pytest.raises(BadInput, match="current directory"):
        prepare_output(".", BUNDLE)
    (tmp_path / "empty").mkdir()
    prepare_output(tmp_path / "empty", BUNDLE)
    b = tmp_path / "b"
    b.mkdir()
    (b / "manifest.json").write_text(json.dumps({"format": "jetson-deploy-bundle", "artifacts": []}))
    prepare_output(b, BUNDLE)
    with pytest.raises(BadInput):
        prepare_output(b, CALIBRATION_SET)
    with atomic_dir(b, kind=BUNDLE) as d:
        (d / "manifest.json").write_text(json.dumps({"format": "jetson-deploy-bundle", "artifacts": []}))
    assert (user / "thesis.txt").read_text() == "x"


def test_temp_names_stay_short(tmp_path):
    target = tmp_path / ("n" * 250)
    with atomic_dir(target) as d:
        assert len(d.name) < 40
    with atomic_output(tmp_path / ("f" * 250)) as f:
        f.write(b"1")
    assert target.is_dir() and (tmp_path / ("f" * 250)).read_bytes() == b"1"
