import json

import pytest
from click.testing import CliRunner

from jetson_deploy import machine as plat
from jetson_deploy.cli import cli


def fake_root(tmp_path, model, release):
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text(release)
    return tmp_path


@pytest.mark.parametrize(
    "model, release, l4t, jetpack, sm",
    [
        ("NVIDIA Jetson Nano Developer Kit", "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, DATE: Sat Feb 19 17:05:08 UTC 2022", "32.7.1", "4.6.1", 53),
        ("Jetson-AGX Xavier", "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64", "35.4.1", "5.1.2", 72),
        ("NVIDIA Jetson Orin Nano Developer Kit", "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64", "36.3.0", "6.0", 87),
    ],
)
def test_jetson_probe_from_fake_root(tmp_path, model, release, l4t, jetpack, sm):
    root = fake_root(tmp_path, model, release)
    info = plat.probe(root=str(root), with_gpu=False)
    assert info["jetson"] == {"model": model, "l4t": l4t, "jetpack": jetpack}
    assert info["gpu"]["sm"] == sm and info["gpu"]["integrated"] is True
    text = plat.format_info(info)
    assert model in text and jetpack in text
    assert ("no fast INT8" in text) == (sm == 53)


def test_not_a_jetson(tmp_path):
    info = plat.probe(root=str(tmp_path), with_gpu=False)
    assert info["jetson"]["model"] is None and info["jetson"]["jetpack"] is None
    assert "not a Jetson" in plat.format_info(info)


def test_unknown_l4t_does_not_crash(tmp_path):
    root = fake_root(tmp_path, "NVIDIA Jetson Orin NX", "# R99 (release), REVISION: 1.0")
    info = plat.probe(root=str(root), with_gpu=False)
    assert info["jetson"]["l4t"] == "99.1.0" and info["jetson"]["jetpack"] is None
    assert "unknown for this L4T" in plat.format_info(info)


def test_version_tuples_compare_numerically():
    assert plat.parse_version("10.3.0") > plat.parse_version("8.6.2")
    assert plat.parse_version("2.13.0+cpu") == (2, 13, 0)


def test_info_cli_json_and_text(tmp_path):
    root = fake_root(tmp_path, "NVIDIA Jetson AGX Orin", "# R35 (release), REVISION: 3.1, GCID: 1")
    r = CliRunner().invoke(cli, ["info", "--json", "--no-gpu", "--root", str(root)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["jetson"]["jetpack"] == "5.1.1"
    for key in ("tensorrt", "cuda", "pycuda", "torch", "onnxruntime", "opencv", "python", "gpu"):
        assert key in data
    r = CliRunner().invoke(cli, ["info", "--no-gpu", "--root", str(root)])
    assert r.exit_code == 0 and "TensorRT" in r.output and "5.1.1" in r.output


def test_missing_modules_say_not_installed(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **kw):
        if name.split(".")[0] in ("tensorrt", "pycuda"):
            raise ImportError("no " + name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(plat.importlib, "import_module", lambda n: fake_import(n))
    info = plat.probe(root="/nonexistent", with_gpu=False)
    assert info["tensorrt"] == plat.NOT_INSTALLED and info["pycuda"] == plat.NOT_INSTALLED


def test_broken_module_is_reported_not_raised(monkeypatch):
    def boom(name):
        raise RuntimeError("this is a download stub")

    monkeypatch.setattr(plat.importlib, "import_module", boom)
    version, mod = plat._module_version("tensorrt")
    assert mod is None and version.startswith("broken (RuntimeError")


def test_tuple_versions_are_joined(monkeypatch):
    import types

    mod = types.ModuleType("pycuda")
    mod.VERSION = (2026, 1)
    monkeypatch.setattr(plat.importlib, "import_module", lambda n: mod)
    assert plat._module_version("pycuda") == ("2026.1", mod)
