"""Suite-wide pytest set-up: import paths, markers, deterministic RNG.

Markers (auto-skipped when the machine lacks what they need):
``needs_torch``, ``needs_cv2``, ``needs_ort``, ``needs_cuda``, ``needs_sshd``.
"""
import importlib.util
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
for p in (str(ROOT), str(TESTS)):
    if p not in sys.path:
        sys.path.insert(0, p)

# Keep engine caches and similar per-user state out of the real home directory.
os.environ.setdefault("JETSON_DEPLOY_CACHE", str(Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / "jd-test-engine-cache-{}".format(os.getpid())))


def _has(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


def _cuda() -> bool:
    if not _has("torch"):
        return False
    import torch

    return torch.cuda.is_available()


MARKERS = {
    "needs_torch": (lambda: _has("torch"), "torch not installed"),
    "needs_cv2": (lambda: _has("cv2"), "OpenCV not installed"),
    "needs_ort": (lambda: _has("onnxruntime"), "onnxruntime not installed"),
    "needs_cuda": (_cuda, "no CUDA GPU"),
    "needs_sshd": (lambda: shutil.which("sshd") is not None or os.path.exists("/usr/sbin/sshd"), "OpenSSH server not installed (scripts/install_system_deps.sh)"),
}


def pytest_configure(config):
    for name, (_, why) in MARKERS.items():
        config.addinivalue_line("markers", "{}: skipped when {}".format(name, why))
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config, items):
    cache = {}
    for item in items:
        for name, (check, why) in MARKERS.items():
            if item.get_closest_marker(name) is not None:
                if name not in cache:
                    cache[name] = check()
                if not cache[name]:
                    item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """Tests may seed freely; the next test starts from the state it had."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)
