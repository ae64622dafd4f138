"""Helpers for the convert tests (imported by tests/test_convert_*.py)."""
import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODELS_FILE = ROOT / "tests" / "models" / "__init__.py"


def spec_file(tmp: Path, key: str, **changes: Any) -> Path:
    """Write tests.models.SPECS[key] (with top-level/input changes) as JSON; return its path."""
    from models import SPECS

    spec = copy.deepcopy(SPECS[key])
    for k, v in changes.items():
        if k in ("shape", "dtype", "color", "name", "layout"):
            spec["input"][k] = v
        else:
            spec[k] = v
    path = Path(tmp) / "{}.spec.json".format(key)
    path.write_text(json.dumps(spec))
    return path


def model_ref(factory: str, form: str = "file") -> str:
    return "{}:{}".format(MODELS_FILE, factory) if form == "file" else "models:{}".format(factory)


def load_manifest(bundle: Path) -> "Dict[str, Any]":
    return json.loads((Path(bundle) / "manifest.json").read_text())


def assert_checksums(bundle: Path) -> None:
    """Every artifact's sha256/size in the manifest matches the file (computed here, independently)."""
    m = load_manifest(bundle)
    assert m["artifacts"], "no artifacts recorded"
    for art in m["artifacts"]:
        data = (Path(bundle) / art["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == art["sha256"], art["path"]
        assert len(data) == art["size"], art["path"]


def ort_run(onnx_path: Path, x: "np.ndarray") -> "Dict[str, np.ndarray]":
    import onnxruntime as ort

    s = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, {s.get_inputs()[0].name: x})))


def frame(h: int, w: int, seed: int = 5, channels: int = 3) -> "np.ndarray":
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, size=(h, w, channels)).astype(np.uint8)
