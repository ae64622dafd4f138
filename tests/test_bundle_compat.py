"""The manifest's minimum TensorRT, checked on the device side before any engine build
(against the TensorRT test double of an older version)."""
import pytest

from jetson_deploy.runtime.options import RunOptions  # noqa: E402
from jetson_deploy.bundle import BundleWriter, open_bundle
from jetson_deploy.bundle.opset import (
    bundle_requirement, check_tensorrt_compat, compat_problem, max_opset_for_tensorrt, min_tensorrt_for_opset,
)
from jetson_deploy.errors import BadInput
from support.bundles import SPEC


def test_opset_table():
    assert [min_tensorrt_for_opset(n) for n in (11, 13, 14, 17, 18, 19, 20, 21)] == ["8.0", "8.0", "8.4", "8.4", "9.0", "9.0", "10.0", None]
    assert max_opset_for_tensorrt("8.2.1.8") == 13 and max_opset_for_tensorrt("8.5.2") == 17
    assert max_opset_for_tensorrt("8.6") == 17 and max_opset_for_tensorrt("10.3.0.30") == 20


def test_requirement_from_new_and_old_manifests():
    assert bundle_requirement({"requires": {"tensorrt_min": "8.4", "why": "ONNX opset 17"}}) == ("8.4", "ONNX opset 17")
    assert bundle_requirement({"source": {"opset": 17}}) == ("8.4", "ONNX opset 17")  # written before requires existed
    assert bundle_requirement({"source": {"opset": 13}, "conversion": {"min_tensorrt": "8.5"}})[0] == "8.5"
    assert bundle_requirement({"name": "old"}) is None
    assert compat_problem({"source": {"opset": 13}}, "8.2.1") is None


def _bundle(tmp_path, opset=17):
    from doubles import onnx_models

    onnx = onnx_models.classifier(tmp_path / "m.onnx", hw=16, opset=opset)
    with BundleWriter(tmp_path / "attn-0.1.0", name="attn", version="0.1.0", precision="fp16") as w:
        w.add_file(onnx, "model.onnx", kind="onnx")
        w.manifest["spec"] = dict(SPEC)
        w.manifest["source"] = {"opset": opset, "onnx_opset": opset, "exporter": "torchscript"}
        w.manifest["requires"] = {"tensorrt_min": min_tensorrt_for_opset(opset), "why": "ONNX opset {}".format(opset)}
    return tmp_path / "attn-0.1.0"


def test_schema_accepts_the_new_fields(tmp_path):
    b = open_bundle(_bundle(tmp_path))
    assert b.manifest["requires"]["tensorrt_min"] == "8.4"
    with pytest.raises(BadInput) as e:
        check_tensorrt_compat(b, "8.2.1.8")
    msg = str(e.value)
    assert "\n" not in msg
    assert "needs TensorRT >= 8.4 for ONNX opset 17" in msg and "8.2.1.8" in msg and "--opset 13" in msg and "JetPack 5.1" in msg
    check_tensorrt_compat(b, "8.5.2.2")
    check_tensorrt_compat(b, None)


@pytest.mark.needs("onnx", "onnxruntime")
def test_runtime_refuses_before_any_build(tmp_path, monkeypatch):
    from doubles import tensorrt_double as td
    from jetson_deploy.runtime.backends import create_engine

    trt = td.install(monkeypatch, "8.2")
    b = open_bundle(_bundle(tmp_path))
    with pytest.raises(BadInput, match=r"needs TensorRT >= 8.4 for ONNX opset 17; this device has TensorRT 8.2"):
        create_engine(b, RunOptions(backend="tensorrt", cache_dir=str(tmp_path / "cache")))
    assert trt._double.builds == []


@pytest.mark.needs("onnx", "onnxruntime")
def test_bundle_engine_command_refuses_in_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from doubles import tensorrt_double as td
    from jetson_deploy.cli import cli

    trt = td.install(monkeypatch, "8.2")
    d = str(_bundle(tmp_path))
    r = CliRunner().invoke(cli, ["bundle", "engine", d, "--sm", "53", "--cache-dir", str(tmp_path / "cache")])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "needs TensorRT >= 8.4" in lines[0], r.output
    assert trt._double.builds == []
    td.install(monkeypatch, "8.6")
    r = CliRunner().invoke(cli, ["bundle", "engine", d, "--sm", "87", "--cache-dir", str(tmp_path / "cache")])
    assert r.exit_code == 0 and "built" in r.output, r.output


def test_deploy_refuses_from_inventory_tensorrt_and_force_warns(tmp_path, caplog):
    from jetson_deploy.deploy.inventory import load_inventory
    from jetson_deploy.deploy.trt_check import check_hosts
    from jetson_deploy.errors import BadInput

    inv = tmp_path / "hosts.ini"
    inv.write_text("[nano]\nnano1 tensorrt=8.2.1\n[orin]\norin1 tensorrt=8.6.2\n")
    hosts = load_inventory(str(inv))
    manifest = {"name": "attn", "requires": {"tensorrt_min": "8.4", "why": "ONNX opset 17"}}

    def no_probe(h):
        raise AssertionError("inventory hosts are not probed")

    with pytest.raises(BadInput) as err:  # only nano1's TensorRT is too old
        check_hosts(manifest, hosts, no_probe)
    assert "nano1 (TensorRT 8.2.1 from inventory): bundle attn needs TensorRT >= 8.4" in str(err.value)
    assert "orin1" not in str(err.value) and "--force" in str(err.value)
    with caplog.at_level("WARNING", logger="jetson_deploy.deploy"):
        assert check_hosts(manifest, hosts, no_probe, force=True) == {"nano1": "8.2.1", "orin1": "8.6.2"}
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("jetson_deploy.deploy")]
    assert len(said) == 1 and said[0][0] == "WARNING" and "nano1" in said[0][1], said