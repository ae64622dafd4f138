"""What Python 3.6 (JetPack 4.6, the Nano) silently gets wrong, checked on every interpreter.

On 3.6 a module-level ``__getattr__`` (PEP 562, 3.7+) is ignored without an error, so lazy
names vanish and ``except Exception`` fallbacks hide it (``synthetic://`` fell back to noise
frames).  These tests run in the main suite and in the 3.6/3.8 device legs.
"""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jetson_deploy
from jetson_deploy import _lazy, demo
from jetson_deploy.media import open_source

REPO = Path(__file__).resolve().parents[1]


def test_lazy_public_names_resolve():
    assert callable(jetson_deploy.open_bundle)
    assert callable(jetson_deploy.load_spec)
    assert "open_bundle" in dir(jetson_deploy)
    with pytest.raises(AttributeError):
        jetson_deploy.no_such_name  # noqa: B018


def test_lazy_subpackage_names_import():
    from jetson_deploy.calibration import read_cache  # noqa: F401
    from jetson_deploy.demo import ShapeGenerator, label_of

    assert label_of("000001_circle.png") == demo.LABELS.index("circle")
    assert ShapeGenerator.__module__ == "jetson_deploy.media.shapes"  # the real class, re-exported by demo


def test_synthetic_source_yields_the_shapes_generators_frames():
    src = open_source("synthetic://64x48?frames=5&pool=0&seed=7")
    src.open()
    try:
        assert src.describe()["generator"] == "shapes"
        frames = [src.capture(1.0) for _ in range(5)]
    finally:
        src.close()
    ref = demo.ShapeGenerator(7)
    for f in frames:
        img, label = ref.frame(64, 48)
        assert f.truth == label and f.truth in range(len(demo.LABELS))
        np.testing.assert_array_equal(f.image, img)


def test_stray_folder_is_not_a_module(tmp_path, monkeypatch):
    (tmp_path / "stray_pkg_x").mkdir()  # a namespace package: no __init__.py
    (tmp_path / "broken_pkg_y").mkdir()
    (tmp_path / "broken_pkg_y" / "__init__.py").write_text("def f(:\n")  # e.g. a checkout for another Python
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not _lazy.has_module("stray_pkg_x")
    assert _lazy.optional("stray_pkg_x") is None
    with pytest.raises(jetson_deploy.MissingDependency) as exc:
        _lazy.require("broken_pkg_y", "the test")
    msg = str(exc.value)
    assert "broken_pkg_y" in msg and "SyntaxError" in msg and "\n" not in msg


def _pack_with(python: str, bundle: Path, out: Path) -> str:
    code = "import sys; from jetson_deploy.bundle import pack_bundle; pack_bundle(sys.argv[1], sys.argv[2])"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([python, "-c", code, str(bundle), str(out)], check=True, env=env, cwd=str(out.parent))
    return hashlib.sha256(out.read_bytes()).hexdigest()


def test_pack_is_byte_identical_across_interpreters(tmp_path):
    """Each venv CI has (.venv = 3.11, .venv36, .venv38) packs the same bundle to one sha256."""
    from support.bundles import make_bundle

    demo_bundle = make_bundle(tmp_path / "demo-0.1.0", qdq=True, calib="8.2.1")
    pythons = [sys.executable] + [str(REPO / v / "bin" / "python") for v in (".venv", ".venv36", ".venv38")]
    seen = {}
    for py in pythons:
        if not os.path.exists(py):
            continue
        ver = subprocess.run([py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout.strip()
        if ver in seen:
            continue
        seen[ver] = _pack_with(py, demo_bundle, tmp_path / "b{}.jdb".format(ver.replace(".", "")))
    if len(seen) < 2:
        pytest.skip("only one Python here: the cross-interpreter pack check needs the 3.6/3.8 venvs")
    assert len(set(seen.values())) == 1, seen


@pytest.mark.parametrize("command", ["convert", "calibrate", "demo"])
def test_host_commands_refuse_python_36_in_one_line(monkeypatch, command):
    import types

    from click.testing import CliRunner

    from jetson_deploy import cli as cli_mod

    fake_sys = types.SimpleNamespace(version_info=(3, 6, 15), argv=sys.argv)
    monkeypatch.setattr(cli_mod, "sys", fake_sys)
    args = {"convert": ["m.py:f", "--spec", "s.json", "-o", "out"], "calibrate": ["frames", "--spec", "s.json", "-o", "c"], "demo": []}
    try:
        runner = CliRunner(mix_stderr=False)  # click < 8.2 mixes stderr into output by default
    except TypeError:
        runner = CliRunner()
    res = runner.invoke(cli_mod.cli, [command] + args[command])
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "needs Python 3.8+" in lines[0] and "Traceback" not in res.stderr
    help_res = CliRunner().invoke(cli_mod.cli, [command, "--help"])
    assert help_res.exit_code == 0 and "Usage:" in help_res.output
