"""Architectures nobody here wrote (tests/models/attention.py) convert with default flags and
match PyTorch in ONNX Runtime; the opset is chosen and recorded; a failing export is one line."""
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.needs("torch", "onnx", "onnxruntime")

from support.convert import load_manifest, ort_run  # noqa: E402

ATTN_FILE = Path(__file__).resolve().parent / "models" / "attention.py"


def _spec(tmp_path: Path, key: str) -> Path:
    from models.attention import SPECS

    p = tmp_path / "{}.spec.json".format(key)
    p.write_text(json.dumps(SPECS[key]))
    return p


def _ref(factory: str) -> str:
    return "{}:{}".format(ATTN_FILE, factory)


@pytest.mark.parametrize("factory,opset", [("tiny_vit", 14), ("tiny_swin", 14), ("tiny_segformer", 14), ("dw_net", 13), ("tiny_yolo", 14)])
def test_default_flags_convert_and_match(tmp_path, factory, opset):
    import torch

    from jetson_deploy.convert import convert
    from models import attention

    res = convert(_ref(factory), _spec(tmp_path, factory), tmp_path / "b", build_engine=False)
    m = load_manifest(tmp_path / "b")
    assert m["source"]["onnx_opset"] == opset and m["conversion"]["opset"] == opset and m["conversion"]["opset_chosen"]
    assert m["source"]["exporter"] == "torchscript"
    assert m["requires"]["tensorrt_min"] == ("8.0" if opset == 13 else "8.4")
    assert res.parity["passed"] and res.parity["max_abs_error"] <= 1e-3
    # independently of convert's own check: ONNX Runtime vs PyTorch on a fresh input
    x = np.random.RandomState(3).randn(*attention.SPECS[factory]["input"]["shape"]).astype(np.float32)
    want = getattr(attention, factory)()(torch.from_numpy(x)).detach().numpy()
    got = list(ort_run(tmp_path / "b" / "model.onnx", x).values())[0]
    assert np.max(np.abs(got - want)) <= 1e-3 * (1 + np.max(np.abs(want)))
    if opset > 13:
        assert any("opset 13: operator aten::scaled_dot_product_attention" in msg for msg in res.messages)


def test_detector_outputs_decode_in_the_runtime(tmp_path):
    from jetson_deploy.convert import convert
    from jetson_deploy.runtime.postprocess import Postprocessor
    from jetson_deploy.spec import load_spec

    convert(_ref("tiny_yolo"), _spec(tmp_path, "tiny_yolo"), tmp_path / "b", build_engine=False)
    spec = load_spec(load_manifest(tmp_path / "b")["spec"])
    out = ort_run(tmp_path / "b" / "model.onnx", np.zeros((1, 3, 64, 64), np.float32))
    assert out["output0"].shape == (1, 7, 64)
    r = Postprocessor(spec, conf=0.0)(out, (64, 64))
    assert r.detections and all(d.label in ("p", "q", "r") for d in r.detections)


def test_forced_opset_fails_in_one_line_naming_op_and_module(tmp_path):
    from click.testing import CliRunner

    from jetson_deploy.cli import cli

    r = CliRunner().invoke(cli, ["convert", _ref("tiny_segformer"), "--spec", str(_spec(tmp_path, "tiny_segformer")),
                                 "-o", str(tmp_path / "b"), "--opset", "13", "--no-build-engine"])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) <= 3, r.output
    err = lines[-1]
    assert "aten::scaled_dot_product_attention" in err and "m.encoder.block.0.block.0.attention (attention.py:" in err
    assert "try --opset 14" in err
    log = Path(err.rsplit("details: ", 1)[1])
    assert "graph(" in log.read_text()  # the dump went to the log, not the terminal
    assert "graph(" not in r.output and "DeprecationWarning" not in r.output
    log.unlink()


def test_default_export_prints_nothing(tmp_path, capfd):
    from jetson_deploy.convert import convert

    convert(_ref("tiny_vit"), _spec(tmp_path, "tiny_vit"), tmp_path / "b", build_engine=False)
    out, err = capfd.readouterr()
    assert "graph(" not in out + err and "DeprecationWarning" not in out + err


def test_module_path_from_dump():
    from jetson_deploy.convert.export import module_path_from_dump

    line = ("  %9 : Float(1) = aten::scaled_dot_product_attention(%1, %2), scope: m.Net::/torch.nn.modules.container.Sequential::"
            "blocks/m.Block::blocks.0/m.Attention::attn # /x/model.py:53:0")
    assert module_path_from_dump(line, "aten::scaled_dot_product_attention") == "m.blocks.0.attn (model.py:53)"
    assert module_path_from_dump(line, "aten::other") is None


@pytest.mark.slow
def test_fold_fp16_and_int8_on_attention_models(tmp_path):
    from jetson_deploy.calibration.dataset import build_calibration_set
    from jetson_deploy.convert import convert
    from support.calib import write_images

    res = convert(_ref("tiny_segformer"), _spec(tmp_path, "tiny_segformer"), tmp_path / "seg", build_engine=False,
                  fold_preprocess=True, fold_postprocess=True, precision="fp16")
    m = load_manifest(tmp_path / "seg")
    assert res.parity["folded"]["passed"] and m["accuracy"]["fp16_estimate"]["max_abs_error"] < 0.05
    assert m["requires"]["tensorrt_min"] == "8.5" and "preprocessing" in m["requires"]["why"]  # fold needs 8.5 > opset 14's 8.4
    write_images(tmp_path / "imgs", 24, seed=1)
    build_calibration_set([tmp_path / "imgs"], _spec(tmp_path, "tiny_vit"), tmp_path / "calib", num=24, holdout=0.2, progress=False)
    res = convert(_ref("tiny_vit"), _spec(tmp_path, "tiny_vit"), tmp_path / "vit", build_engine=False, precision="int8",
                  calib=tmp_path / "calib", min_agreement=0.0)
    assert res.parity["passed"] and res.parity["calibration_batches"] >= 1
    assert "model.qdq.onnx" in [a["path"] for a in load_manifest(tmp_path / "vit")["artifacts"]]


ANTIALIAS = '''
import torch
import torch.nn.functional as F

class Resizer(torch.nn.Module):
    """Antialiased resize (as image processors do): aten::_upsample_bilinear2d_aa has no
    TorchScript-exporter symbolic at any opset; ONNX Resize gained antialias at 18."""
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    def forward(self, x):
        y = F.interpolate(self.conv(x), size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
        return y.mean(dim=(2, 3))

def make():
    torch.manual_seed(0)
    return Resizer().eval()
'''


@pytest.mark.slow
def test_dynamo_exporter_when_torchscript_cannot(tmp_path):
    from jetson_deploy.convert import convert
    from models.attention import SPECS

    (tmp_path / "aa.py").write_text(ANTIALIAS)
    spec = dict(SPECS["dw_net"], labels=["a", "b", "c", "d"])
    (tmp_path / "s.json").write_text(json.dumps(spec))
    res = convert("{}:make".format(tmp_path / "aa.py"), tmp_path / "s.json", tmp_path / "b", build_engine=False)
    m = load_manifest(tmp_path / "b")
    assert m["source"]["exporter"] == "dynamo" and m["source"]["onnx_opset"] == 18
    assert m["requires"]["tensorrt_min"] == "9.0" and res.parity["passed"]


@pytest.mark.slow
def test_the_log_a_failed_export_names_outlives_the_run(tmp_path):
    """The CLI runs in a private temporary directory removed at exit: the log it points to is not in it."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + str(root / "tests"), TMPDIR=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "jetson_deploy", "convert", _ref("tiny_segformer"), "--spec",
                        str(_spec(tmp_path, "tiny_segformer")), "-o", str(tmp_path / "b"), "--opset", "13",
                        "--no-build-engine"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, env=env, timeout=300)
    assert p.returncode == 2
    log = Path(p.stderr.strip().splitlines()[-1].rsplit("details: ", 1)[1])
    assert log.is_file() and "graph(" in log.read_text()
    assert not [d for d in os.listdir(str(tmp_path)) if d.startswith("jd-run-")]  # the private dir is gone
