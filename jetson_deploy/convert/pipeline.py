"""``convert(model, spec, out, **options)``: MODEL + ModelSpec -> bundle, as a row of stages.

Each stage is a function that returns a small result (Polygraphy's loaders):

1. :func:`~jetson_deploy.convert.load.load_model`        MODEL string -> module / ONNX file
2. :func:`~jetson_deploy.convert.stages.onnx_from_model` -> ``model.onnx`` (+ onnx.checker, shape inference)
3. :func:`~jetson_deploy.convert.stages.check_parity`    ONNX Runtime vs PyTorch; exit 1 above ``tolerance``
4. :func:`~jetson_deploy.convert.stages.check_fp16`      ``--precision fp16``: half-precision estimate, overflow scan
5. :func:`~jetson_deploy.convert.stages.fold_graph`      optional pre/postprocessing folded into the graph, checked
6. :func:`~jetson_deploy.convert.int8.prepare_int8`      ``--precision int8``: ranges, caches, Q/DQ model, gate
7. :func:`~jetson_deploy.convert.engine_step.build_engines`  a TensorRT engine when TensorRT is importable
8. :func:`~jetson_deploy.convert.manifest.write_bundle`  the one place the manifest is built; written atomically

Options come grouped (:class:`~jetson_deploy.convert.options.ConvertOptions`); the
flat keywords (``precision=``, ``calib=`` ...) still work.  Messages go to the
``jetson_deploy.convert`` logger and are kept in :attr:`ConvertResult.messages`.
"""
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .._messages import collect_messages
from ..spec import ModelSpec, load_spec
from . import stages as _st
from .load import load_model
from .engine_step import Engines
from .manifest import Stages, write_bundle
from .options import ConvertOptions
from .spec_check import check_spec_fits

log = logging.getLogger(__name__)

# The loggers whose records make up ConvertResult.messages (calibration: INT8 notes).
MESSAGE_LOGGERS = ("jetson_deploy.convert", "jetson_deploy.calibration")


@dataclass
class ConvertResult:
    """What :func:`convert` did.  ``manifest`` is the manifest as written."""

    bundle: Path
    manifest: "Dict[str, Any]"
    spec: "ModelSpec"
    parity: "Optional[Dict[str, Any]]"
    outputs_kept: "List[str]"
    engine_built: bool
    engine_note: str
    engines: "List[str]" = field(default_factory=list)
    messages: "List[str]" = field(default_factory=list)

    def to_dict(self) -> "Dict[str, Any]":
        return {
            "bundle": str(self.bundle),
            "name": self.manifest.get("name"),
            "version": self.manifest.get("version"),
            "precision": self.manifest.get("precision"),
            "parity": self.parity,
            "outputs": list(self.spec.outputs),
            "outputs_kept": list(self.outputs_kept),
            "engine_built": self.engine_built,
            "engine_note": self.engine_note,
            "engines": list(self.engines),
            "artifacts": [a["path"] for a in self.manifest.get("artifacts", [])],
            "messages": list(self.messages),
        }


def convert(
    model: Any,
    spec: "Union[str, Path, Dict[str, Any], ModelSpec]",
    out: "Union[str, Path]",
    options: "Optional[ConvertOptions]" = None,
    **flat: Any
) -> "ConvertResult":
    """Convert MODEL with SPEC into a bundle directory ``out``; see the module docstring.

    ``out`` is the bundle directory, or a ``.tar``/``.jdb`` file to get the bundle packed.
    Give ``options``; the flat keywords of :data:`~jetson_deploy.convert.options.FLAT_NAMES` are a
    compatibility shim that warns and goes in 0.3.0.

    Raises :class:`BadInput` (exit 2) for unusable input and :class:`CheckFailed`
    (exit 1) when parity or the INT8 agreement gate fails (unless ``force``).
    """
    if options is not None and flat:
        raise TypeError("convert(): give options=ConvertOptions(...) or keywords, not both")
    if flat:
        import warnings

        warnings.warn("convert(model, spec, out, {}=...): keyword options are a compatibility shim removed in 0.3.0; "
                      "pass options=ConvertOptions(...)".format(sorted(flat)[0]), DeprecationWarning, stacklevel=2)
    opts = options or ConvertOptions.from_flat(**flat)
    source = "spec file {}".format(spec) if isinstance(spec, (str, Path)) else "the spec"
    spec = load_spec(spec)
    opts.validate(spec)
    out = Path(out)
    packed = out.suffix.lower() in (".tar", ".jdb")
    from .._files import BUNDLE, PACKED, prepare_output
    prepare_output(out, PACKED if packed else BUNDLE)  # refuse before minutes of work, not after
    with collect_messages(*MESSAGE_LOGGERS) as messages:
        loaded = load_model(model, weights=opts.export.weights)
        for n in loaded.notes:
            log.info(n)
        work = Path(tempfile.mkdtemp(prefix="jetson-deploy-convert-"))
        try:
            res = _run_stages(loaded, spec, work / "bundle" if packed else out, work, opts, source)
            res.messages = list(messages)
            if packed:
                from ..bundle import pack_bundle

                pack_bundle(res.bundle, out)
                res.bundle = out
                log.info("packed into {}".format(out))
            return res
        finally:
            shutil.rmtree(str(work), ignore_errors=True)


def _run_stages(loaded: Any, spec: "ModelSpec", out: Path, work: Path, opts: "ConvertOptions",
                source: str = "the spec") -> "ConvertResult":
    """The stages in order; each result feeds the next and, at the end, the manifest."""
    exported = _st.onnx_from_model(loaded, spec, opts.export, work)
    check_spec_fits(exported.checks["outputs"], spec, source)  # labels vs classes, output names: before minutes of checks
    has_torch = exported.reference is not None
    parity = _st.check_parity(exported, spec, opts.check, opts.export.dynamic_batch)
    fp16 = None
    if opts.precision == "fp16":
        fp16 = _st.check_fp16(exported.onnx_path, spec, parity, work, opts.check.force, has_torch)
    keep_unfolded = work / "unfolded.onnx" if opts.precision == "int8" and opts.fold.any else None
    folded = _st.fold_graph(exported.onnx_path, spec, opts.fold, parity, opts.check, has_torch, keep_unfolded)
    st = Stages(loaded, exported, parity, folded, fp16=fp16)
    if opts.precision == "int8":
        st.int8 = _int8_stage(st, spec, opts, work)
    st.engines = _engine_stage(st, opts, work)
    st.program = _st.export_program(exported, opts.export, work)
    manifest = write_bundle(out, opts.bundle.name or loaded.name_hint, st, opts)
    if out.parent != work:
        log.info("bundle written: {} ({})".format(out, st.engines.note))
    record = parity.record if folded.parity is None else dict(parity.record, folded=folded.parity)
    return ConvertResult(
        bundle=out, manifest=manifest, spec=folded.spec, parity=record, outputs_kept=exported.outputs_kept,
        engine_built=st.engines.built, engine_note=st.engines.note, engines=[e[0] for e in st.engines.entries],
    )


def _int8_stage(st: "Stages", spec: "ModelSpec", opts: "ConvertOptions", work: Path) -> Any:
    from .int8 import prepare_int8

    return prepare_int8(
        st.exported.onnx_path, spec, opts.int8, work, force=opts.check.force, unfolded_onnx=st.folded.unfolded,
        fold=_st.refolder(spec, opts.fold), trt_version=_trt_version(),
    )


def _engine_stage(st: "Stages", opts: "ConvertOptions", work: Path) -> "Engines":
    from .engine_step import build_engines

    return build_engines(
        st.exported.onnx_path, st.folded.spec, opts.precision, opts.engine, st.int8, work, dynamic_batch=opts.export.dynamic_batch,
        torch_module=st.exported.module, example=st.exported.example, min_tensorrt=st.folded.record.get("min_tensorrt"),
    )


def _trt_version() -> "Optional[str]":
    """TensorRT's version when it is importable here (so an INT8 cache is written for it too)."""
    from .engine_step import tensorrt_here

    trt = tensorrt_here()
    if trt is None:
        return None
    return str(getattr(trt, "__version__", "")) or None
