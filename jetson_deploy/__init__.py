"""jetson-deploy: PyTorch -> calibrated INT8/FP16 TensorRT bundles -> live Jetson pipelines.

Importing the package is cheap: heavy dependencies (torch, tensorrt, pycuda,
onnxruntime, cv2) load only inside the functions that need them, and the public
names below resolve on first use (PEP 562).

    import jetson_deploy as jd
    spec = jd.load_spec("spec.yaml")
    jd.build_calibration_set(["frames/"], spec, "calib")
    jd.convert_model("net.py:build", spec, "net-1.0.0", precision="int8", calib="calib")
    summary = jd.run_pipeline("net-1.0.0", "csi://0", "out.jsonl")
"""
import importlib
from typing import Any, Dict, Tuple

__version__ = "0.1.0"

from .errors import BadInput, CheckFailed, JetsonDeployError, MissingDependency  # noqa: E402

# public name -> (module, attribute); one per pipeline stage, in data-flow order
_API: "Dict[str, Tuple[str, str]]" = {
    "ModelSpec": ("jetson_deploy.spec", "ModelSpec"),
    "load_spec": ("jetson_deploy.spec", "load_spec"),
    "build_calibration_set": ("jetson_deploy.calibration.dataset", "build_calibration_set"),
    "load_calibration_set": ("jetson_deploy.calibration.dataset", "load_calibration_set"),
    "compute_int8": ("jetson_deploy.calibration.quantize", "compute_int8"),
    "convert_model": ("jetson_deploy.convert.pipeline", "convert"),
    "BundleWriter": ("jetson_deploy.bundle", "BundleWriter"),
    "open_bundle": ("jetson_deploy.bundle", "open_bundle"),
    "deploy_bundle": ("jetson_deploy.deploy", "deploy"),
    "rollback_bundle": ("jetson_deploy.deploy", "rollback"),
    "create_engine": ("jetson_deploy.runtime.backends", "create_engine"),
    "open_session": ("jetson_deploy.runtime.session", "open_session"),
    "RunOptions": ("jetson_deploy.runtime.options", "RunOptions"),
    "run_pipeline": ("jetson_deploy.runtime.session", "run_pipeline"),
    "run_bench": ("jetson_deploy.bench", "run_bench"),
    "probe_platform": ("jetson_deploy.machine", "probe"),
}

__all__ = ["__version__", "BadInput", "CheckFailed", "JetsonDeployError", "MissingDependency"] + sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError("module 'jetson_deploy' has no attribute {!r}".format(name))


def __dir__() -> Any:
    return sorted(set(globals()) | set(_API))


from ._lazy import pep562 as _pep562  # noqa: E402

_pep562(__name__)
