"""The one bundle maker of the tests (:func:`write_bundle`) and the bundle helpers built on it."""
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


def write_bundle(dest: Path, name: str, version: str, files: "Dict[str, Any]", manifest: "Optional[Dict[str, Any]]" = None) -> Path:
    """Write a real bundle with BundleWriter: ``files`` maps path -> bytes or (bytes, kind, target)."""
    kinds = {".onnx": "onnx", ".txt": "labels", ".engine": "engine", ".pt2": "exported-program", ".cache": "calib-cache"}
    with BundleWriter(dest, name=name, version=version) as w:
        for rel, entry in files.items():
            blob, kind, target = entry if isinstance(entry, tuple) else (entry, None, None)
            kind = kind or kinds.get(Path(rel).suffix, "onnx")
            if kind == "engine" and target is None:
                target = {"tensorrt": "8.6.2", "sm": 87, "precision": "fp16"}
            if target is not None:
                w.add_bytes(blob, rel, kind=kind, target=target)
            else:
                w.add_bytes(blob, rel, kind=kind)
        for k, v in (manifest or {}).items():
            w.manifest[k] = v
    return dest


def random_bundle(dest: Path, name: str = "demo", version: str = "1.0.0", sizes: "Optional[Dict[str, int]]" = None) -> Path:
    """A bundle of random artifacts of the given sizes (transfer and layout tests)."""
    import os

    sizes = sizes or {"model.onnx": 40000, "labels.txt": 64, "engines/8.6.2_sm87_fp16.engine": 20000}
    return write_bundle(dest, name, version, {rel: os.urandom(n) for rel, n in sizes.items()})


def make_bundle(dest: Path, name: str = "demo", version: str = "0.1.0", engine: bool = True, extra: "Optional[Dict[str, Any]]" = None, onnx_size: int = 50000, qdq: bool = False, calib: "Optional[str]" = None) -> Path:
    """A small but real bundle: ONNX-sized random bytes, labels, one engine, spec, accuracy."""
    import random

    rng = random.Random(1234)
    onnx = bytes(rng.getrandbits(8) for _ in range(onnx_size))
    files: "Dict[str, Any]" = {"model.onnx": onnx, "labels.txt": b"circle\nsquare\ntriangle\nnone\n"}
    if engine:
        files["engines/8.6.2_sm87_fp16.engine"] = (b"PLAN" + onnx[:3000], "engine", dict(ENGINE_TARGET))
    if qdq:
        files["model.qdq.onnx"] = (b"QDQ" + onnx[:2000], "onnx-qdq", None)
    if calib:
        files["calibration/{}.cache".format(calib)] = (b"TRT-8601-EntropyCalibration2\ninput: 3c010a14\n", "calib-cache", {"tensorrt": calib})
    manifest = {
        "spec": dict(SPEC),
        "precision": "fp16",
        "accuracy": {"metric": "top1_agreement", "reference": "torch-fp32", "value": 1.0, "max_abs_error": 1e-5},
        "calibration": {"method": "entropy", "set_sha256": "ab" * 32, "samples": 64},
        "source": {"model": "jetson_deploy.demo:load_model", "sha256": "cd" * 32},
    }
    manifest.update(extra or {})
    return write_bundle(dest, name, version, files, manifest)


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(str(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
