"""Shared helpers for the bundle tests (imported by tests/test_bundle_*.py)."""
import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional

from jetson_deploy.bundle import BundleWriter

SPEC: "Dict[str, Any]" = {
    "task": "classify",
    "input": {"name": "input", "shape": [1, 3, 16, 16], "dtype": "float32", "color": "rgb"},
    "preprocess": {"resize": [16, 16], "keep_aspect": False, "scale": 1 / 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    "outputs": ["logits"],
    "labels": ["circle", "square", "triangle", "none"],
}
ENGINE_TARGET = {"tensorrt": "8.6.2", "sm": 87, "precision": "fp16", "jetpack": "6.0", "platform": "orin"}


def make_bundle(dest: Path, name: str = "demo", version: str = "0.1.0", engine: bool = True, extra: "Optional[Dict[str, Any]]" = None, onnx_size: int = 50000, qdq: bool = False, calib: "Optional[str]" = None) -> Path:
    """A small but real bundle: ONNX-sized random bytes, labels, one engine, spec, accuracy."""
    import random

    rng = random.Random(1234)
    onnx = bytes(rng.getrandbits(8) for _ in range(onnx_size))
    with BundleWriter(dest, name=name, version=version) as w:
        w.add_bytes(onnx, "model.onnx", kind="onnx")
        w.add_bytes(b"circle\nsquare\ntriangle\nnone\n", "labels.txt", kind="labels")
        if engine:
            w.add_bytes(b"PLAN" + onnx[:3000], "engines/8.6.2_sm87_fp16.engine", kind="engine", target=dict(ENGINE_TARGET))
        if qdq:
            w.add_bytes(b"QDQ" + onnx[:2000], "model.qdq.onnx", kind="onnx-qdq")
        if calib:
            w.add_bytes(b"TRT-8601-EntropyCalibration2\ninput: 3c010a14\n", "calibration/{}.cache".format(calib), kind="calib-cache", target={"tensorrt": calib})
        w.manifest["spec"] = dict(SPEC)
        w.manifest["precision"] = "fp16"
        w.manifest["accuracy"] = {"metric": "top1_agreement", "reference": "torch-fp32", "value": 1.0, "max_abs_error": 1e-5}
        w.manifest["calibration"] = {"method": "entropy", "set_sha256": "ab" * 32, "samples": 64}
        w.manifest["source"] = {"model": "jetson_deploy.demo:load_model", "sha256": "cd" * 32}
        for k, v in (extra or {}).items():
            w.manifest[k] = v
    return dest


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def edit_manifest(bundle: Path, fn) -> None:
    """Edit manifest.json in place (a tamper: no re-sign, no re-hash)."""
    p = Path(bundle) / "manifest.json"
    m = json.loads(p.read_text())
    fn(m)
    p.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")


def flip_byte(path: Path, offset: int = 10) -> None:
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0x01
    Path(path).write_bytes(bytes(data))
