"""jetson-deploy convert through click: exit codes, one-line errors, --json."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from jetson_deploy.cli import cli

pytestmark = pytest.mark.needs("torch", "onnxruntime")

from support.convert import MODELS_FILE, assert_checksums, load_manifest, model_ref, spec_file  # noqa: E402


def _run(args):
    return CliRunner(mix_stderr=False).invoke(cli, ["convert"] + [str(a) for a in args]) if _mix_ok() else CliRunner().invoke(cli, ["convert"] + [str(a) for a in args])


def _mix_ok() -> bool:
    import inspect

    return "mix_stderr" in inspect.signature(CliRunner.__init__).parameters


def _error_lines(res) -> list:
    text = res.stderr if hasattr(res, "stderr") and res.stderr is not None else res.output
    return [ln for ln in text.splitlines() if ln.startswith("Error:")]


def test_help_lists_every_flag() -> None:
    res = CliRunner().invoke(cli, ["convert", "--help"])
    assert res.exit_code == 0
    for flag in ("--spec", "--out", "--name", "--version", "--precision", "--calib", "--converter", "--weights", "--build-engine",
                 "--no-build-engine", "--output", "--opset", "--dynamic-batch", "--fold-preprocess", "--fold-postprocess",
                 "--tolerance", "--min-agreement", "--force", "--auto-exclude", "--json"):
        assert flag in res.output, flag


def test_convert_json(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, "residual_cnn")
    res = _run([model_ref("residual_cnn"), "--spec", spec, "-o", tmp_path / "b", "--name", "res", "--version", "2.0.1", "--json", "--no-build-engine"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["name"] == "res" and data["version"] == "2.0.1"
    assert data["parity"]["passed"] is True and data["engine_built"] is False
    assert "device at first load" in data["engine_note"]
    assert sorted(data["artifacts"]) == ["labels.txt", "model.onnx"]
    assert_checksums(tmp_path / "b")


def test_plain_output_says_where_engines_come_from(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, "residual_cnn")
    res = _run([model_ref("residual_cnn"), "--spec", spec, "-o", tmp_path / "b"])
    assert res.exit_code == 0
    assert "wrote {}".format(tmp_path / "b") in res.stdout
    assert "TensorRT is not installed here: engines will be built on the device at first load" in res.stdout


@pytest.mark.parametrize(
    "model,pattern",
    [
        ("nope/missing.py:make", r"model file nope/missing.py does not exist"),
        ("{}:no_such_factory".format(MODELS_FILE), r"has no factory 'no_such_factory' \(callables there: .*residual_cnn"),
        ("{}:not_a_module".format(MODELS_FILE), r"not_a_module\(\) returned a dict, not a torch.nn.Module"),
        ("no_such_pkg_xyz.models:make", r"cannot import module 'no_such_pkg_xyz.models'"),
        ("missing.onnx", r"model file missing.onnx does not exist"),
        (str(MODELS_FILE), r"name the factory too"),
    ],
)
def test_bad_model_is_exit_2_one_line(tmp_path: Path, model: str, pattern: str) -> None:
    import re

    spec = spec_file(tmp_path, "residual_cnn")
    res = _run([model, "--spec", spec, "-o", tmp_path / "b"])
    assert res.exit_code == 2, res.output
    errs = _error_lines(res)
    assert len(errs) == 1 and re.search(pattern, errs[0]), errs
    assert "Traceback" not in (res.output + (res.stderr or ""))
    assert not (tmp_path / "b").exists()


def test_bad_spec_is_exit_2(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, "residual_cnn", task="classification")
    res = _run([model_ref("residual_cnn"), "--spec", spec, "-o", tmp_path / "b"])
    assert res.exit_code == 2
    assert "field 'task' must be one of" in _error_lines(res)[0]
    res = _run([model_ref("residual_cnn"), "--spec", tmp_path / "none.yaml", "-o", tmp_path / "b"])
    assert res.exit_code == 2 and "spec file" in _error_lines(res)[0]
    spec = spec_file(tmp_path, "residual_cnn", dtype="float16")
    res = _run([model_ref("residual_cnn"), "--spec", spec, "-o", tmp_path / "b"])
    assert res.exit_code == 2 and "spec input.dtype float16 is not a model input convert can export" in _error_lines(res)[0]


def test_spec_shape_that_the_model_cannot_take(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, "tiny_unet", shape=[1, 3, 30, 30])  # not a multiple of 4: the skip connection breaks
    res = _run([model_ref("tiny_unet"), "--spec", spec, "-o", tmp_path / "b"])
    assert res.exit_code == 2
    assert "the model failed on an input of shape [1, 3, 30, 30] float32 from the spec: RuntimeError" in _error_lines(res)[0]


def test_parity_failure_is_exit_1(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, "drifting")
    res = _run([model_ref("drifting"), "--spec", spec, "-o", tmp_path / "b"])
    assert res.exit_code == 1
    assert "parity failed above --tolerance" in _error_lines(res)[0]
    assert not (tmp_path / "b").exists()


def test_build_engine_without_tensorrt_is_exit_2(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    spec = spec_file(tmp_path, "residual_cnn")
    res = _run([model_ref("residual_cnn"), "--spec", spec, "-o", tmp_path / "b", "--build-engine"])
    assert res.exit_code == 2
    assert "--build-engine needs TensorRT, which is not installed here" in _error_lines(res)[0]


def test_incompatible_options_rejected(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, "residual_cnn")
    res = _run([model_ref("residual_cnn"), "--spec", spec, "-o", tmp_path / "b", "--precision", "int8"])
    assert res.exit_code == 2 and "--precision int8 needs --calib" in _error_lines(res)[0]
    res = _run([model_ref("residual_cnn"), "--spec", spec, "-o", tmp_path / "b", "--calib", tmp_path])
    assert res.exit_code == 2 and "--calib is used for --precision int8 only" in _error_lines(res)[0]
    spec_det = spec_file(tmp_path, "tiny_detector")
    res = _run([model_ref("tiny_detector"), "--spec", spec_det, "-o", tmp_path / "b", "--fold-postprocess"])
    assert res.exit_code == 2 and "--fold-postprocess supports task classify" in _error_lines(res)[0]
    res = _run([model_ref("residual_cnn"), "--spec", spec, "-o", tmp_path / "b", "--version", "1.0"])
    assert res.exit_code == 2 and "semantic version" in _error_lines(res)[0]
