"""``convert(...)``: MODEL + ModelSpec -> bundle (ONNX, parity, calibration data, engines).

The steps, each a small function (Polygraphy-style loaders):

1. :func:`~jetson_deploy.convert.load.load_model`  MODEL string -> module / ONNX file
2. :func:`~jetson_deploy.convert.export.export_onnx`  -> ``model.onnx`` (opset 13 by default)
3. :func:`~jetson_deploy.convert.export.check_onnx`   ``onnx.checker`` + shape inference
4. :mod:`~jetson_deploy.convert.parity`  ONNX Runtime vs PyTorch; exit 1 above ``tolerance``
5. :mod:`~jetson_deploy.convert.fold`   optional pre/postprocessing folded into the graph,
   checked against ``preprocess()`` + the unfolded model
6. INT8 calibration data (ranges, caches, Q/DQ model) when ``precision='int8'``
7. a TensorRT engine when TensorRT is importable (``build_engine``)
8. the bundle, written atomically by :class:`~jetson_deploy.bundle.BundleWriter`
"""
import platform as _platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from .._lazy import has_module, optional, require
from ..errors import BadInput, CheckFailed
from ..spec import ModelSpec, load_spec
from . import parity as _parity
from .export import DEFAULT_OPSET, check_names, check_onnx, export_onnx, model_opset
from .load import KIND_EXPORTED, KIND_ONNX, LoadedModel, load_model
from .outputs import describe_selection, flatten_outputs, make_selector_module, select_outputs

PRECISIONS = ("fp32", "fp16", "int8")
CONVERTERS = ("onnx", "torch2trt")
BUILD_CHOICES = ("auto", True, False)


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


def _versions() -> "Dict[str, Optional[str]]":
    out: "Dict[str, Optional[str]]" = {}
    for mod in ("torch", "onnx", "onnxruntime"):
        m = optional(mod) if has_module(mod) else None
        out[mod] = getattr(m, "__version__", None) if m is not None else None
    out["python"] = _platform.python_version()
    return out


def _example_input(spec: "ModelSpec") -> Any:
    torch = require("torch", "exporting PyTorch models")
    dtype = {"uint8": torch.uint8, "int8": torch.int8}.get(spec.dtype, torch.float32)
    frames = _parity.make_frames(spec, spec.batch, seed=1234)
    import numpy as np

    x = np.stack([_parity.preprocess(f, spec) for f in frames], axis=0)
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.to(dtype)


def _check_options(precision: str, converter: str, build_engine: Any, calib: Any, fold_pre: bool, fold_post: bool, tolerance: float) -> None:
    if precision not in PRECISIONS:
        raise BadInput("--precision {!r} must be one of {}".format(precision, "|".join(PRECISIONS)))
    if converter not in CONVERTERS:
        raise BadInput("--converter {!r} must be one of {}".format(converter, "|".join(CONVERTERS)))
    if build_engine not in BUILD_CHOICES:
        raise BadInput("build_engine must be 'auto', True or False, got {!r}".format(build_engine))
    if precision == "int8" and calib is None:
        raise BadInput("--precision int8 needs --calib CALIB_DIR (make one with: jetson-deploy calibrate IMAGES... --spec SPEC -o CALIB_DIR)")
    if calib is not None and precision != "int8":
        raise BadInput("--calib is used for --precision int8 only (got --precision {})".format(precision))
    if converter == "torch2trt" and build_engine is False:
        raise BadInput("--converter torch2trt builds the engine in PyTorch; it cannot be combined with --no-build-engine")
    if converter == "torch2trt" and (fold_pre or fold_post):
        raise BadInput("--fold-preprocess/--fold-postprocess work on the ONNX graph: use them with --converter onnx")
    if not (tolerance > 0):
        raise BadInput("--tolerance must be positive, got {}".format(tolerance))


def convert(
    model: Any,
    spec: "Union[str, Path, Dict[str, Any], ModelSpec]",
    out: "Union[str, Path]",
    *,
    name: "Optional[str]" = None,
    version: str = "0.1.0",
    precision: str = "fp32",
    calib: "Optional[Union[str, Path]]" = None,
    converter: str = "onnx",
    weights: "Optional[Union[str, Path]]" = None,
    build_engine: Any = "auto",
    outputs: "Optional[Sequence[Any]]" = None,
    opset: "Optional[int]" = None,
    dynamic_batch: bool = False,
    fold_preprocess: bool = False,
    fold_postprocess: bool = False,
    top_k: "Optional[int]" = None,
    tolerance: float = _parity.DEFAULT_TOLERANCE,
    min_agreement: float = 0.99,
    force: bool = False,
    auto_exclude: bool = False,
    parity_samples: int = _parity.DEFAULT_SAMPLES,
    workspace_mb: int = 1024,
    dla_core: "Optional[int]" = None,
    timing_cache: "Optional[Union[str, Path]]" = None,
    progress: bool = False,
    log: "Optional[Callable[[str], None]]" = None,
) -> "ConvertResult":
    """Convert MODEL with SPEC into a bundle directory ``out``; see the module docstring.

    ``out`` is the bundle directory, or a ``.tar``/``.jdb`` file to get the bundle packed.
    ``dla_core``/``timing_cache`` go to the TensorRT builder (DLA with GPU fallback; the
    timing cache is read and written back).

    Raises :class:`BadInput` (exit 2) for unusable input and :class:`CheckFailed`
    (exit 1) when parity or the INT8 agreement gate fails (unless ``force``).
    """
    say = log or (lambda msg: None)
    spec = load_spec(spec)
    _check_options(precision, converter, build_engine, calib, fold_preprocess, fold_postprocess, tolerance)
    if spec.dtype in ("float16", "int8"):
        raise BadInput(
            "spec input.dtype {} is not a model input convert can export: use float32 (or uint8 for models that take raw "
            "pixels); --precision fp16/int8 sets the engine's inner precision".format(spec.dtype)
        )
    if fold_preprocess and spec.dtype == "uint8":
        raise BadInput("--fold-preprocess: the spec's input is already uint8, there is no normalisation to fold")
    if fold_postprocess and spec.task not in ("classify", "segment"):
        raise BadInput("--fold-postprocess supports task classify (softmax/top-k) and segment (argmax mask), the spec's task is {}".format(spec.task))
    messages: "List[str]" = []

    def note(msg: str) -> None:
        messages.append(msg)
        say(msg)

    loaded = load_model(model, weights=weights)
    for n in loaded.notes:
        note(n)
    bundle_name = name or loaded.name_hint
    out = Path(out)
    packed = out.suffix.lower() in (".tar", ".jdb")
    work = Path(tempfile.mkdtemp(prefix="jetson-deploy-convert-"))
    build_opts = {"workspace_mb": workspace_mb, "dla_core": dla_core, "timing_cache": timing_cache}
    try:
        res = _convert(
            loaded, spec, work / "bundle" if packed else out, work, bundle_name, version, precision, calib, converter, build_engine,
            outputs, opset, dynamic_batch, fold_preprocess, fold_postprocess, top_k, tolerance, min_agreement, force, auto_exclude,
            parity_samples, build_opts, progress, note, messages,
        )
        if packed:
            from ..bundle import pack_bundle

            pack_bundle(res.bundle, out)
            res.bundle = out
            note("packed into {}".format(out))
        return res
    finally:
        shutil.rmtree(str(work), ignore_errors=True)


def _convert(
    loaded: "LoadedModel", spec: "ModelSpec", out: Path, work: Path, bundle_name: str, version: str, precision: str, calib: Any,
    converter: str, build_engine: Any, outputs: "Optional[Sequence[Any]]", opset: "Optional[int]", dynamic_batch: bool,
    fold_pre: bool, fold_post: bool, top_k: "Optional[int]", tolerance: float, min_agreement: float, force: bool,
    auto_exclude: bool, parity_samples: int, build_opts: "Dict[str, Any]", progress: bool, note: "Callable[[str], None]", messages: "List[str]",
) -> "ConvertResult":
    onnx_path = work / "model.onnx"
    kept: "List[str]" = []
    reference = None  # numpy batch -> {name: array}, from PyTorch
    export_info: "Dict[str, Any]" = {}
    export_module = None
    example = None

    # ---- 1-2: ONNX ---------------------------------------------------------------------
    if loaded.kind == KIND_ONNX:
        src = loaded.onnx_path
        assert src is not None
        if opset is not None:
            raise BadInput("--opset does not apply to an .onnx MODEL (it keeps its own opset); re-export it from PyTorch to change it")
        _copy_onnx(src, onnx_path)
        from .fold import select_onnx_outputs

        kept = select_onnx_outputs(onnx_path, spec, outputs, note)
        check_names(onnx_path, spec.input_name, spec.outputs)
        onnx_mod = require("onnx", "reading ONNX models")
        m = onnx_mod.load(str(onnx_path), load_external_data=False)
        export_info = {"opset": model_opset(m), "exporter": "none (ONNX input)", "dynamic_batch": _is_dynamic(m)}
        if dynamic_batch and not export_info["dynamic_batch"]:
            raise BadInput("--dynamic-batch: {} has a fixed batch size; re-export it with a dynamic first axis".format(src))
        note("ONNX input {}: opset {}, reference for parity: none (no PyTorch model)".format(src, export_info["opset"]))
    else:
        example = _example_input(spec)
        torch = require("torch", "exporting PyTorch models")
        module = loaded.module
        try:
            with torch.no_grad():
                raw = module(example)
        except Exception as exc:
            raise BadInput(
                "the model failed on an input of shape {} {} from the spec: {}: {}".format(
                    list(example.shape), str(example.dtype).replace("torch.", ""), type(exc).__name__, str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
                )
            )
        flat = flatten_outputs(raw)
        paths = [p for p, _ in flat]
        chosen = select_outputs(paths, outputs, len(spec.outputs))
        single = len(flat) == 1 and not isinstance(raw, (tuple, list, dict)) and chosen == paths
        kept = list(chosen)
        line = describe_selection(paths, chosen, spec.outputs)
        if len(paths) > 1 or chosen != ["0"]:
            note(line)
        # A single-tensor model is exported as is, so ONNX node names match its module
        # paths (parser errors then name '/layer1/conv1/Conv', not '/inner/layer1/...').
        export_module = module if single else make_selector_module(module, chosen, single)
        used_opset = opset if opset is not None else DEFAULT_OPSET
        info = export_onnx(
            export_module, example, onnx_path, spec.input_name, spec.outputs, opset=used_opset, dynamic_batch=dynamic_batch,
            trace_first=loaded.kind == KIND_EXPORTED or loaded.kind == "torchscript",
        )
        for n in info.notes:
            note(n)
        export_info = info.to_dict()
        note("exported ONNX opset {} with the {} exporter{}".format(info.opset, info.exporter, ", dynamic batch" if dynamic_batch else ""))
        reference = _parity.torch_runner(export_module, spec.outputs)

    # ---- 3: checker + shape inference ----------------------------------------------------
    checks = check_onnx(onnx_path)
    note("onnx.checker and shape inference passed ({} nodes)".format(checks["nodes"]))

    # ---- 4: parity -------------------------------------------------------------------------
    frames = _parity.make_frames(spec, max(1, parity_samples) * spec.batch, seed=0)
    inputs = _parity.batches(frames, spec, spec.batch)
    ort_model = _parity.OrtModel(onnx_path)
    onnx_outs = [ort_model(x) for x in inputs]
    parity: "Dict[str, Any]"
    if reference is not None:
        refs = [reference(x) for x in inputs]
        if dynamic_batch:
            both = _parity.batches(frames[: 2 * spec.batch], spec, 2 * spec.batch)
            refs += [reference(x) for x in both]
            onnx_outs += [ort_model(x) for x in both]
        parity = _parity.compare(refs, onnx_outs, spec.outputs, spec.task, tolerance)
        parity["reference"] = "torch-fp32"
        note(_parity_line("ONNX Runtime vs PyTorch", parity))
        if not parity["passed"]:
            if not force:
                raise CheckFailed(_parity.failure_line(parity, "ONNX Runtime vs PyTorch"))
            note("parity failed; continuing because of --force")
    else:
        parity = {"reference": None, "skipped": "the model was given as ONNX: there is no PyTorch reference", "passed": None, "batches": len(inputs)}
        refs = onnx_outs  # the unfolded ONNX model is the reference for folding checks

    fp16: "Optional[Dict[str, Any]]" = None
    if precision == "fp16":
        fp16 = _parity.fp16_estimate(onnx_path, work, inputs, refs, spec.outputs, spec.task)
        if fp16.get("skipped"):
            note("FP16 estimate skipped: " + fp16["skipped"])
        else:
            if fp16.get("reference") and reference is None:
                fp16["reference"] = "onnxruntime-fp32"
            note("FP16 estimate (ONNX Runtime, half weights/activations): max abs error {:.3g}{}".format(
                fp16["max_abs_error"], ", top-1 agreement {:.4f}".format(fp16["top1_agreement"]) if "top1_agreement" in fp16 else ""))
        over = _parity.half_range_overflows(onnx_path, work, inputs)
        fp16["overflows"] = over
        if over or (not fp16.get("skipped") and not fp16.get("finite", True)):
            where = ", ".join("{} (max {:.3g})".format(o["tensor"], o["max_abs"]) for o in over) or "an output is inf/nan"
            msg = "FP16 overflows: activations beyond float16's 65504 at {}; use --precision fp32 or int8, or rescale the model".format(where)
            if not force:
                raise CheckFailed(msg + " (--force writes the bundle anyway)")
            note(msg + "; continuing because of --force")

    # ---- 5: folding ------------------------------------------------------------------------
    out_spec = spec
    unfolded: "Optional[Path]" = None
    if precision == "int8" and (fold_pre or fold_post):
        unfolded = work / "unfolded.onnx"
        shutil.copyfile(str(onnx_path), str(unfolded))  # calibration sets fit the unfolded model
    fold_record: "Dict[str, Any]" = {}
    fold_parity: "Optional[Dict[str, Any]]" = None
    if fold_pre or fold_post:
        from . import fold

        out_spec, fold_record = fold.fold_model(onnx_path, spec, preprocess=fold_pre, postprocess=fold_post, top_k=top_k)
        checks = check_onnx(onnx_path)
        folded = _parity.OrtModel(onnx_path)
        f_inputs = _parity.batches(frames, out_spec, spec.batch)
        got = [folded(x) for x in f_inputs]
        want = [fold.reference_postprocess(r, spec, out_spec, fold_record) for r in refs[: len(got)]]
        fold_parity = _parity.compare(want, got, out_spec.outputs, spec.task, tolerance, folded_post=fold_post)
        fold_parity["reference"] = "preprocess() + {}".format("PyTorch model" if reference is not None else "unfolded ONNX model")
        note(_parity_line("folded graph vs preprocess() + unfolded model", fold_parity))
        if not fold_parity["passed"] and not force:
            raise CheckFailed(_parity.failure_line(fold_parity, "folded graph"))
        note("folded into the graph: {}".format(", ".join(fold_record.get("steps", []))))

    # ---- 6: INT8 calibration data ------------------------------------------------------------
    int8 = None
    if precision == "int8":
        from .int8 import prepare_int8

        fold_qdq = None
        if fold_pre or fold_post:
            from . import fold as _fold

            def fold_qdq(p: Path) -> None:
                _fold.fold_model(p, spec, preprocess=fold_pre, postprocess=fold_post, top_k=top_k)
                check_onnx(p)

        int8 = prepare_int8(
            onnx_path, spec, out_spec, calib, work, min_agreement=min_agreement, force=force, auto_exclude=auto_exclude,
            note=note, unfolded_onnx=unfolded, fold=fold_qdq, trt_version=_trt_version(), progress=progress,
        )

    # ---- 7: engines ---------------------------------------------------------------------------
    from .engine_step import build_engines

    workspace_mb = build_opts["workspace_mb"]
    engines, engine_built, engine_note, build_record = build_engines(
        onnx_path, out_spec, precision, converter, build_engine, int8, work, workspace_mb=workspace_mb,
        dla_core=build_opts.get("dla_core"), timing_cache=build_opts.get("timing_cache"),
        dynamic_batch=dynamic_batch, torch_module=export_module, example=example, note=note,
        min_tensorrt=fold_record.get("min_tensorrt"),
    )

    # ---- 8: the bundle ----------------------------------------------------------------------
    from ..bundle import BundleWriter

    versions = _versions()
    source = dict(loaded.source)
    source.setdefault("model_sha256", None)
    if loaded.module is not None:
        from .load import params_sha256

        source["params_sha256"] = params_sha256(loaded.module)
    source["sha256"] = source.get("weights_sha256") or source.get("model_sha256")
    source.update({"torch": versions["torch"], "onnx": versions["onnx"], "onnxruntime": versions["onnxruntime"], "opset": export_info.get("opset")})
    accuracy: "Dict[str, Any]" = {
        "metric": "max_abs_error",
        "reference": parity.get("reference") or "none",
        "value": parity.get("max_abs_error"),
        "max_abs_error": parity.get("max_abs_error"),
        "top1_agreement": parity.get("top1_agreement"),
        "tolerance": tolerance,
    }
    if fold_parity is not None:
        accuracy["folded"] = {k: fold_parity.get(k) for k in ("max_abs_error", "top1_agreement", "passed")}
    if fp16 is not None:
        accuracy["fp16_estimate"] = fp16
    conversion: "Dict[str, Any]" = {
        "converter": converter,
        "opset": export_info.get("opset"),
        "exporter": export_info.get("exporter"),
        "dynamic_batch": bool(export_info.get("dynamic_batch")),
        "outputs_kept": kept,
        "onnx_check": {k: checks[k] for k in ("checker", "shape_inference", "nodes", "inputs", "outputs")},
        "parity": parity,
        "engine": {"built": engine_built, "note": engine_note},
        "python": versions["python"],
    }
    if fold_record:
        conversion["fold"] = fold_record
        conversion["fold_parity"] = fold_parity
        if fold_record.get("min_tensorrt"):
            conversion["min_tensorrt"] = fold_record["min_tensorrt"]
    if build_record:
        conversion["build"] = build_record

    with BundleWriter(out, name=bundle_name, version=version, precision=precision) as w:
        w.add_file(onnx_path, "model.onnx", kind="onnx")
        if out_spec.labels:
            w.add_bytes(("\n".join(out_spec.labels) + "\n").encode("utf-8"), "labels.txt", kind="labels")
        if int8 is not None:
            int8.add_to_bundle(w)
        for rel, path, target in engines:
            w.add_file(path, rel, kind="engine", target=target)
        w.manifest["spec"] = out_spec.to_dict()
        w.manifest["precision"] = precision
        w.manifest["source"] = source
        w.manifest["accuracy"] = accuracy
        w.manifest["conversion"] = conversion
        if int8 is not None:
            w.manifest["calibration"] = int8.calibration
            w.manifest["quantization"] = int8.quantization
            if int8.accuracy:
                w.manifest["accuracy"]["int8"] = int8.accuracy
        if build_record:
            w.manifest["build"] = {"workspace_mb": workspace_mb}
        manifest = w.manifest
    if out.parent != work:
        note("bundle written: {} ({})".format(out, engine_note))
    return ConvertResult(
        bundle=out, manifest=manifest, spec=out_spec, parity=parity if fold_parity is None else dict(parity, folded=fold_parity),
        outputs_kept=kept, engine_built=engine_built, engine_note=engine_note, engines=[e[0] for e in engines], messages=list(messages),
    )


def _copy_onnx(src: Path, dst: Path) -> None:
    """Copy an ONNX MODEL into the work dir as one self-contained file (external weights inlined)."""
    onnx = require("onnx", "reading ONNX models")
    try:
        m = onnx.load(str(src), load_external_data=False)
    except Exception as exc:
        raise BadInput("cannot read ONNX file {}: {}".format(src, " ".join(str(exc).split())[:200] or type(exc).__name__))
    external = any(i.HasField("data_location") and i.data_location == onnx.TensorProto.EXTERNAL for i in m.graph.initializer)
    if not external:
        shutil.copyfile(str(src), str(dst))
        return
    try:
        m = onnx.load(str(src))  # reads the external data beside the file
        onnx.save(m, str(dst))
    except Exception as exc:
        raise BadInput("cannot inline the external weights of {}: {}".format(src, " ".join(str(exc).split())[:200] or type(exc).__name__))


def _trt_version() -> "Optional[str]":
    """TensorRT's version when it is importable here (so an INT8 cache is written for it too)."""
    from .engine_step import tensorrt_here

    trt = tensorrt_here()
    if trt is None:
        return None
    return str(getattr(trt, "__version__", "")) or None


def _is_dynamic(model: Any) -> bool:
    inp = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if not inp:
        return False
    dims = inp[0].type.tensor_type.shape.dim
    return bool(dims) and not dims[0].HasField("dim_value")


def _parity_line(what: str, p: "Dict[str, Any]") -> str:
    parts = ["{}: max abs error {:.3g}".format(what, p.get("max_abs_error", 0.0))]
    if p.get("top1_agreement") is not None:
        parts.append("top-1 agreement {:.4f}".format(p["top1_agreement"]))
    parts.append("{} batches".format(p.get("batches")))
    parts.append("passed" if p.get("passed") else "FAILED")
    return ", ".join(parts)
