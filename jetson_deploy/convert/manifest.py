"""The one place that turns the stages' results into the bundle's manifest and files.

:func:`manifest_sections` reads the results (it computes nothing new but the
source's hashes and tool versions); :func:`write_bundle` hands sections and files
to :class:`~jetson_deploy.bundle.BundleWriter`, which writes atomically.
"""
import platform as _platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from .._lazy import has_module, optional
from .engine_step import Engines
from .load import LoadedModel
from .options import ConvertOptions
from .stages import Exported, Folded, Parity


@dataclass
class Stages:
    """The results of every stage, as :func:`manifest_sections` reads them."""

    loaded: "LoadedModel"
    exported: "Exported"
    parity: "Parity"
    folded: "Folded"
    fp16: "Optional[Dict[str, Any]]" = None
    int8: Any = None  # convert.int8.Int8Data
    engines: "Engines" = field(default_factory=Engines)
    program: "Optional[Path]" = None  # model.pt2 (convert --export-program)


def _versions() -> "Dict[str, Optional[str]]":
    out: "Dict[str, Optional[str]]" = {mod: _version_of(mod) for mod in ("torch", "onnx", "onnxruntime")}
    out["python"] = _platform.python_version()
    return out


def _version_of(mod: str) -> "Optional[str]":
    """A package's version without importing it when it is not loaded yet (an .onnx MODEL never loads
    torch: importing it only to record its version cost seconds per convert)."""
    import sys

    loaded = sys.modules.get(mod)
    if loaded is None and has_module(mod):
        try:
            import importlib

            # importlib.metadata: Python 3.8+, which convert needs (the host side); imported by name
            # so the device-side syntax check (3.6) does not count it
            return importlib.import_module("importlib.metadata").version(mod)
        except Exception:  # another distribution name (onnxruntime-gpu), or Python 3.6: ask the module
            loaded = optional(mod)
    return getattr(loaded, "__version__", None) if loaded is not None else None


def _source(loaded: "LoadedModel", info: "Dict[str, Any]", versions: "Dict[str, Optional[str]]") -> "Dict[str, Any]":
    source = dict(loaded.source)
    source.setdefault("model_sha256", None)
    if loaded.module is not None:
        from .load import params_sha256

        source["params_sha256"] = params_sha256(loaded.module)
    source["sha256"] = source.get("weights_sha256") or source.get("model_sha256")
    opset = info.get("opset")
    source.update({"torch": versions["torch"], "onnx": versions["onnx"], "onnxruntime": versions["onnxruntime"], "opset": opset,
                   "onnx_opset": opset, "exporter": info.get("exporter")})
    return source


def _requires(st: "Stages") -> "Optional[Dict[str, Any]]":
    """``requires.tensorrt_min``: the oldest TensorRT that parses model.onnx (its opset, folded steps).

    Devices check it before any engine build (:func:`jetson_deploy.bundle.opset.check_tensorrt_compat`).
    """
    from ..bundle.opset import bundle_requirement, check_known_opset

    opset = st.exported.info.get("opset")
    check_known_opset(opset)
    need = bundle_requirement({"source": {"onnx_opset": opset}, "conversion": {"min_tensorrt": st.folded.record.get("min_tensorrt")}})
    if need is None:
        return None
    out = {"tensorrt_min": need[0], "why": need[1]}
    export = getattr(st.exported, "export", None)
    if export is not None and export.chosen and export.skipped:
        # convert tried the lower opsets: the device-side refusal must not advise --opset N again
        out["lower_opsets"] = "; ".join(export.skipped)
    return out


def _accuracy(st: "Stages", tolerance: float) -> "Dict[str, Any]":
    parity = st.parity.record
    accuracy: "Dict[str, Any]" = {
        "metric": "max_abs_error",
        "reference": parity.get("reference") or "none",
        "value": parity.get("max_abs_error"),
        "max_abs_error": parity.get("max_abs_error"),
        "top1_agreement": parity.get("top1_agreement"),
        "tolerance": tolerance,
    }
    if st.folded.parity is not None:
        accuracy["folded"] = {k: st.folded.parity.get(k) for k in ("max_abs_error", "top1_agreement", "passed")}
    if st.fp16 is not None:
        accuracy["fp16_estimate"] = st.fp16
    if st.int8 is not None and st.int8.accuracy:
        accuracy["int8"] = st.int8.accuracy
    return accuracy


def _conversion(st: "Stages", opts: "ConvertOptions", python: "Optional[str]") -> "Dict[str, Any]":
    info = st.exported.info
    checks = st.folded.checks or st.exported.checks
    conversion: "Dict[str, Any]" = {
        "converter": opts.engine.converter,
        "opset": info.get("opset"),
        "exporter": info.get("exporter"),
        "opset_chosen": bool(info.get("opset_chosen")),
        "dynamic_batch": bool(info.get("dynamic_batch")),
        "outputs_kept": st.exported.outputs_kept,
        "onnx_check": {k: checks[k] for k in ("checker", "shape_inference", "nodes", "inputs", "outputs")},
        "parity": st.parity.record,
        "engine": {"built": st.engines.built, "note": st.engines.note},
        "python": python,
    }
    fold_record = st.folded.record
    if fold_record:
        conversion["fold"] = fold_record
        conversion["fold_parity"] = st.folded.parity
        if fold_record.get("min_tensorrt"):
            conversion["min_tensorrt"] = fold_record["min_tensorrt"]
    if st.engines.record:
        conversion["build"] = st.engines.record
    return conversion


def manifest_sections(st: "Stages", opts: "ConvertOptions") -> "Dict[str, Any]":
    """The manifest keys convert owns (the writer adds name, version, created, artifacts)."""
    versions = _versions()
    sections: "Dict[str, Any]" = {
        "spec": st.folded.spec.to_dict(),
        "precision": opts.precision,
        "source": _source(st.loaded, st.exported.info, versions),
        "accuracy": _accuracy(st, opts.check.tolerance),
        "conversion": _conversion(st, opts, versions["python"]),
    }
    requires = _requires(st)
    if requires is not None:
        sections["requires"] = requires
    if st.int8 is not None:
        sections["calibration"] = st.int8.calibration
        sections["quantization"] = st.int8.quantization
    if st.engines.record:
        sections["build"] = {"workspace_mb": opts.engine.workspace_mb}
    return sections


def write_bundle(out: Path, name: str, st: "Stages", opts: "ConvertOptions") -> "Dict[str, Any]":
    """Write the bundle directory ``out`` atomically; return its manifest."""
    from ..bundle import BundleWriter

    spec = st.folded.spec
    with BundleWriter(out, name=name, version=opts.bundle.version, precision=opts.precision) as w:
        w.add_file(st.exported.onnx_path, "model.onnx", kind="onnx")
        if st.program is not None:
            w.add_file(st.program, "model.pt2", kind="exported-program")
        if spec.labels:
            w.add_bytes(("\n".join(spec.labels) + "\n").encode("utf-8"), "labels.txt", kind="labels")
        if st.int8 is not None:
            st.int8.add_to_bundle(w)
        for rel, path, target in st.engines.entries:
            w.add_file(path, rel, kind="engine", target=target)
        w.manifest.update(manifest_sections(st, opts))
        return w.manifest
