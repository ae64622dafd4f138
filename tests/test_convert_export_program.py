"""convert --export-program: model.pt2 in the bundle, usable by the torch backend; the backend
choice says in one line why it chose what it did."""
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from support import optional_module

pytestmark = pytest.mark.needs("torch", "onnx", "onnxruntime")
torch = optional_module("torch")

from support.convert import load_manifest, model_ref, spec_file  # noqa: E402
from jetson_deploy.cli import cli  # noqa: E402
from jetson_deploy.convert.pipeline import convert  # noqa: E402
from jetson_deploy.errors import BadInput  # noqa: E402


def test_cli_export_program_writes_pt2_that_the_torch_backend_runs(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "residual_cnn")
    r = CliRunner().invoke(cli, ["convert", model_ref("residual_cnn"), "--spec", str(spec_path), "-o", str(tmp_path / "b"),
                                 "--no-build-engine", "--export-program"])
    assert r.exit_code == 0, r.output
    m = load_manifest(tmp_path / "b")
    arts = {a["path"]: a["kind"] for a in m["artifacts"]}
    assert arts["model.pt2"] == "exported-program" and arts["model.onnx"] == "onnx"
    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.runtime.backends import create_engine

    b = open_bundle(tmp_path / "b")
    x = np.random.RandomState(0).rand(*b.spec.shape).astype(np.float32)
    with create_engine(b, backend="torch", device="cpu") as te, create_engine(b, backend="onnxruntime") as oe:
        got, want = te.infer({"input": x}), oe.infer({"input": x})
        assert te.describe()["precision"] == "fp32"
    for k in want:
        np.testing.assert_allclose(list(got.values())[0], want[k], rtol=1e-4, atol=1e-4)


def test_without_the_flag_no_pt2_and_onnx_input_refused(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "residual_cnn")
    convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", build_engine=False)
    assert "model.pt2" not in {a["path"] for a in load_manifest(tmp_path / "b")["artifacts"]}
    with pytest.raises(BadInput, match="export-program"):
        convert(str(tmp_path / "b" / "model.onnx"), spec_path, tmp_path / "c", build_engine=False, export_program=True)
    with pytest.raises(BadInput, match="export-program"):
        convert(model_ref("residual_cnn"), spec_path, tmp_path / "d", build_engine=False, export_program=True,
                fold_preprocess=True)


def test_fp16_bundle_on_cpu_says_it_runs_fp32(tmp_path: Path) -> None:
    spec_path = spec_file(tmp_path, "residual_cnn")
    convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", build_engine=False, export_program=True,
            precision="fp16", force=True)
    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.runtime.backends import create_engine

    b = open_bundle(tmp_path / "b")
    with create_engine(b, backend="torch", device="cpu") as te:
        d = te.describe()
    assert d["bundle_precision"] == "fp16" and d["precision"] == "fp32" and "runs FP32" in d["precision_note"]


def test_run_prints_backend_choice_and_gpu_hint(tmp_path: Path, monkeypatch) -> None:
    spec_path = spec_file(tmp_path, "residual_cnn")
    convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", build_engine=False)
    from jetson_deploy.runtime import backends

    monkeypatch.setattr(backends, "_gpu_present", lambda: True)  # a GPU, but no TensorRT and no model.pt2
    r = CliRunner().invoke(cli, ["run", str(tmp_path / "b"), "--source", "synthetic://64x48", "--max-frames", "3",
                                 "--interval", "0", "--json"])
    assert r.exit_code == 0, r.output
    line = [ln for ln in r.output.splitlines() if ln.startswith("backend:")]
    assert len(line) == 1 and "onnxruntime" in line[0] and "--export-program" in line[0], r.output
    assert json.loads([ln for ln in r.output.splitlines() if ln.startswith("{")][-1])["backend"] == "onnxruntime"
