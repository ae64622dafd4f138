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
from jetson_deploy.runtime.options import RunOptions  # noqa: E402
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
    with create_engine(b, RunOptions(backend="torch", device="cpu")) as te, create_engine(b, RunOptions(backend="onnxruntime")) as oe:
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
    with create_engine(b, RunOptions(backend="torch", device="cpu")) as te:
        d = te.describe()
    assert d["bundle_precision"] == "fp16" and d["precision"] == "fp32" and "runs FP32" in d["precision_note"]


def test_run_prints_backend_choice_and_gpu_hint(tmp_path: Path, monkeypatch) -> None:
    spec_path = spec_file(tmp_path, "residual_cnn")
    convert(model_ref("residual_cnn"), spec_path, tmp_path / "b", build_engine=False)
    from jetson_deploy.runtime import backends

    monkeypatch.setattr(backends, "_cuda_driver_devices", lambda: 1)  # a GPU, but no TensorRT and no model.pt2
    r = CliRunner().invoke(cli, ["run", str(tmp_path / "b"), "--source", "synthetic://64x48", "--max-frames", "3",
                                 "--interval", "0", "--json"])
    assert r.exit_code == 0, r.output
    line = [ln for ln in r.output.splitlines() if ln.startswith("backend:")]
    assert len(line) == 1 and "onnxruntime" in line[0] and "--export-program" in line[0], r.output
    assert json.loads([ln for ln in r.output.splitlines() if ln.startswith("{")][-1])["backend"] == "onnxruntime"


def test_dynamic_batch_program_runs_every_batch_from_the_cli(tmp_path: Path) -> None:
    """Issue #23: ``convert --dynamic-batch --export-program`` wrote a batch-1 program, so four
    sources failed on the torch path ("Guard failed: x.size()[0] == 1").  The program's batch axis is
    dynamic now (up to the profile's maximum), and ``run`` with four sources takes it, as a subprocess."""
    import subprocess
    import sys

    spec_path = spec_file(tmp_path, "residual_cnn")
    jd = [sys.executable, "-m", "jetson_deploy"]
    out = subprocess.run(jd + ["convert", model_ref("residual_cnn"), "--spec", str(spec_path), "-o", str(tmp_path / "b"),
                               "--no-build-engine", "--dynamic-batch", "--export-program"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "batch 1 to 8" in out.stderr
    prog = torch.export.load(str(tmp_path / "b" / "model.pt2")).module()
    shape = json.loads((tmp_path / "b" / "manifest.json").read_text())["spec"]["input"]["shape"]
    for n in (1, 3, 8):
        assert prog(torch.zeros([n] + shape[1:])).shape[0] == n
    run = subprocess.run(jd + ["run", str(tmp_path / "b")] + ["--source", "synthetic://64x48?pool=2"] * 4 +
                         ["--backend", "torch", "--device", "cpu", "--max-frames", "12", "--interval", "0", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    assert run.returncode == 0, run.stderr
    d = json.loads(run.stdout)
    assert d["frames"] == 12 and d["batch"] == {"rows": 4, "dynamic": False, "chunks": 1} and d["backend"] == "torch"
    assert len(d["sources"]) == 4
