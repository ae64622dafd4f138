"""End to end: the README's main job on the embedded default, through the CLI."""
import json

import pytest
from click.testing import CliRunner

from jetson_deploy.cli import cli

pytestmark = [pytest.mark.needs("torch", "cv2", "onnxruntime"), pytest.mark.slow]


def test_demo_writes_bundle_video_and_accurate_report(tmp_path):
    work = tmp_path / "demo"
    r = CliRunner().invoke(cli, ["demo", "--workdir", str(work), "--frames", "60", "--backend", "onnxruntime"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    report = json.loads((work / "report.json").read_text())
    assert report["frames"] == 60 and report["backend"] == "onnxruntime"
    assert report["accuracy"] >= 0.95
    assert report["fps"] > 0
    assert (work / "bundle" / "manifest.json").is_file()
    manifest = json.loads((work / "bundle" / "manifest.json").read_text())
    kinds = {a["kind"] for a in manifest["artifacts"]}
    assert {"onnx", "labels"} <= kinds

    import cv2

    cap = cv2.VideoCapture(str(work / "annotated.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 60
    lines = (work / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 60 and {"index", "label", "score", "latency_ms", "source"} <= set(json.loads(lines[0]))
    # the bundle the demo wrote verifies
    r = CliRunner().invoke(cli, ["bundle", "verify", str(work / "bundle")])
    assert r.exit_code == 0, r.output


def test_demo_int8_calibrates_gates_and_runs_the_qdq_model(tmp_path):
    work = tmp_path / "demo8"
    r = CliRunner().invoke(cli, ["demo", "--workdir", str(work), "--frames", "30", "--backend", "onnxruntime", "--precision", "int8"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    report = json.loads((work / "report.json").read_text())
    assert report["precision"] == "int8" and report["accuracy"] >= 0.95
    assert report["int8_agreement"]["value"] >= 0.99
    assert report["int8_agreement"]["samples"] >= 100 and "note" not in report["int8_agreement"]
    manifest = json.loads((work / "bundle" / "manifest.json").read_text())
    kinds = [a["kind"] for a in manifest["artifacts"]]
    assert "onnx-qdq" in kinds and kinds.count("calib-cache") >= 1 and "ranges" in kinds
