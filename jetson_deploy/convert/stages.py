"""The conversion stages before INT8 and engines, each a function returning a small result.

``onnx_from_model`` (MODEL -> model.onnx), ``check_parity`` (ONNX Runtime vs
PyTorch), ``check_fp16`` (half-precision estimate and overflow scan) and
``fold_graph`` (pre/postprocessing folded into the graph, checked again).  A
stage refuses with :class:`CheckFailed` when its check fails, unless ``force``.
"""
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from .._lazy import require
from ..errors import BadInput, CheckFailed
from ..vocab import DYNAMIC_BATCH_MAX
from ..spec import ModelSpec
from . import parity as _parity
from .export import check_names, check_onnx, export_later, export_onnx, model_opset
from .load import KIND_EXPORTED, KIND_ONNX, LoadedModel
from .options import CheckOptions, ExportOptions, FoldOptions
from .outputs import describe_selection, flatten_outputs, make_selector_module, select_outputs

log = logging.getLogger(__name__)

Reference = Callable[[Any], "Dict[str, Any]"]  # numpy batch -> {name: array}


@dataclass
class Exported:
    """``model.onnx`` and what later stages need from the export."""

    onnx_path: Path
    outputs_kept: "List[str]"
    info: "Dict[str, Any]"  # opset, exporter, dynamic_batch
    reference: "Optional[Reference]" = None  # the PyTorch model, for parity
    module: Any = None  # the exported nn.Module (torch2trt builds from it)
    example: Any = None  # its example input
    checks: "Dict[str, Any]" = field(default_factory=dict)  # onnx.checker + shape inference
    export: Any = None  # export.ExportInfo: exports again at a later opset when parity fails


@dataclass
class Parity:
    """ONNX Runtime vs the reference, and the batches later checks reuse."""

    record: "Dict[str, Any]"
    frames: "List[Any]"
    inputs: "List[Any]"
    refs: "List[Dict[str, Any]]"  # reference outputs (the ONNX model's own without PyTorch)


@dataclass
class Folded:
    """The spec after folding, what was folded and the folded graph's check."""

    spec: "ModelSpec"
    record: "Dict[str, Any]" = field(default_factory=dict)
    parity: "Optional[Dict[str, Any]]" = None
    unfolded: "Optional[Path]" = None  # copy of the unfolded model (INT8 calibrates it)
    checks: "Optional[Dict[str, Any]]" = None  # onnx.checker + shape inference of the folded graph


# ---- export ------------------------------------------------------------------------------

def onnx_from_model(loaded: "LoadedModel", spec: "ModelSpec", opts: "ExportOptions", work: Path) -> "Exported":
    """MODEL -> ``work/model.onnx``, then onnx.checker and shape inference."""
    onnx_path = work / "model.onnx"
    if loaded.kind == KIND_ONNX:
        exported = _onnx_from_onnx_file(loaded, spec, opts, onnx_path)
    else:
        exported = _onnx_from_torch(loaded, spec, opts, onnx_path)
    exported.checks = check_onnx(onnx_path)
    log.info("onnx.checker and shape inference passed ({} nodes)".format(exported.checks["nodes"]))
    return exported


def _onnx_from_onnx_file(loaded: "LoadedModel", spec: "ModelSpec", opts: "ExportOptions", onnx_path: Path) -> "Exported":
    src = loaded.onnx_path
    assert src is not None
    if opts.opset is not None:
        raise BadInput("--opset does not apply to an .onnx MODEL (it keeps its own opset); re-export it from PyTorch to change it")
    _copy_onnx(src, onnx_path)
    from .fold import select_onnx_outputs

    kept = select_onnx_outputs(onnx_path, spec, opts.outputs)
    check_names(onnx_path, spec.input_name, spec.outputs, shown=src)
    onnx_mod = require("onnx", "reading ONNX models")
    m = onnx_mod.load(str(onnx_path), load_external_data=False)
    info = {"opset": model_opset(m), "exporter": "none (ONNX input)", "dynamic_batch": _is_dynamic(m)}
    if opts.dynamic_batch and not info["dynamic_batch"]:
        raise BadInput("--dynamic-batch: {} has a fixed batch size; re-export it with a dynamic first axis".format(src))
    log.info("ONNX input {}: opset {}, reference for parity: none (no PyTorch model)".format(src, info["opset"]))
    return Exported(onnx_path, kept, info)


def _onnx_from_torch(loaded: "LoadedModel", spec: "ModelSpec", opts: "ExportOptions", onnx_path: Path) -> "Exported":
    example = _example_input(spec)
    module = loaded.module
    raw = _run_once(module, example)
    flat = flatten_outputs(raw)
    paths = [p for p, _ in flat]
    chosen = select_outputs(paths, opts.outputs, len(spec.outputs))
    single = len(flat) == 1 and not isinstance(raw, (tuple, list, dict)) and chosen == paths
    if len(paths) > 1 or chosen != ["0"]:
        log.info(describe_selection(paths, chosen, spec.outputs))
    # A single-tensor model is exported as is, so ONNX node names match its module
    # paths (parser errors then name '/layer1/conv1/Conv', not '/inner/layer1/...').
    export_module = module if single else make_selector_module(module, chosen, single)
    info = export_onnx(
        export_module, example, onnx_path, spec.input_name, spec.outputs, opset=opts.opset, dynamic_batch=opts.dynamic_batch,
        trace_first=loaded.kind == KIND_EXPORTED or loaded.kind == "torchscript", max_opset=target_max_opset(),
    )
    for n in info.notes:
        log.info(n)
    log.info(export_line(info, opts.dynamic_batch))
    reference = _parity.torch_runner(export_module, spec.outputs)
    exported = Exported(onnx_path, list(chosen), info.to_dict(), reference, export_module, example)
    exported.export = info
    return exported


def export_line(info: Any, dynamic_batch: bool) -> str:
    """``exported ONNX opset 14 with the torchscript exporter (chosen: ...); TensorRT >= 8.4 parses it``."""
    from ..bundle.opset import jetpack_for, min_tensorrt_for_opset

    why = ""
    if info.chosen and info.skipped:
        why = " (chosen: {})".format("; ".join(info.skipped))
    elif info.chosen:
        why = " (chosen: the lowest opset that exports)"
    trt = min_tensorrt_for_opset(info.opset)
    reads = "; TensorRT >= {} (JetPack {}+) parses it".format(trt, jetpack_for(trt)) if trt else "; no TensorRT release is known to parse it"
    return "exported ONNX opset {} with the {} exporter{}{}{}".format(
        info.opset, info.exporter, ", dynamic batch" if dynamic_batch else "", why, reads)


def target_max_opset() -> "Optional[int]":
    """The highest opset the TensorRT here parses (the engine is built for it); None without TensorRT."""
    from .engine_step import tensorrt_here

    trt = tensorrt_here()
    version = getattr(trt, "__version__", None) if trt is not None else None
    if not version:
        return None
    from ..bundle.opset import max_opset_for_tensorrt

    return max_opset_for_tensorrt(version)


def export_program(exported: "Exported", opts: "ExportOptions", work: Path) -> "Optional[Path]":
    """``--export-program``: the network as a torch.export program (``model.pt2``), so ``run`` and
    ``bench`` take the torch CUDA path on a GPU without TensorRT.  With ``--dynamic-batch`` its
    batch axis is a ``torch.export.Dim`` up to :data:`~jetson_deploy.vocab.DYNAMIC_BATCH_MAX` (the
    TensorRT profile's maximum), so N sources run through one program.  Checked against the module
    once (at batch 1 and at the maximum when dynamic)."""
    if not opts.program:
        return None
    if exported.module is None or exported.example is None:
        raise BadInput("--export-program needs a PyTorch model (file.py:factory, module:factory, TorchScript or .pt2), "
                       "not an ONNX file")
    torch = require("torch", "--export-program")
    path = work / "model.pt2"
    example, dynamic, checks = exported.example, None, [exported.example]
    if opts.dynamic_batch:
        top = max(DYNAMIC_BATCH_MAX, int(example.shape[0]))
        # traced at batch 2: an example of batch 1 would specialise the axis to 1 (torch.export's 0/1 rule)
        example = _rows_like(torch, exported.example, 2)
        dynamic = ({0: torch.export.Dim("batch", min=1, max=top)},)
        checks = [_rows_like(torch, exported.example, 1), _rows_like(torch, exported.example, top)]
    try:
        ep = torch.export.export(exported.module, (example,), dynamic_shapes=dynamic)
        torch.export.save(ep, str(path))
        loaded = torch.export.load(str(path)).module()
        diff = 0.0
        with torch.no_grad():
            for x in checks:
                got, ref = flatten_outputs(loaded(x)), flatten_outputs(exported.module(x))
                if got:
                    diff = max([diff] + [float((a.float() - b.float()).abs().max()) for (_, a), (_, b) in zip(got, ref)])
    except Exception as exc:
        text = str(exc).strip()
        raise BadInput("--export-program: torch.export failed{}: {}: {}".format(
            " with a dynamic batch axis" if dynamic else "", type(exc).__name__, text.splitlines()[0][:300] if text else ""))
    log.info("exported program model.pt2 (torch.export{}), max |diff| against the module {:.3g}".format(
        ", batch 1 to {}".format(checks[-1].shape[0]) if dynamic else "", diff))
    return path


def _rows_like(torch: Any, x: Any, rows: int) -> Any:
    """``x`` (batch first) with ``rows`` rows: its first row repeated."""
    return x[:1].expand((rows,) + tuple(x.shape[1:])).contiguous()


def _example_input(spec: "ModelSpec") -> Any:
    torch = require("torch", "exporting PyTorch models")
    import numpy as np

    dtype = {"uint8": torch.uint8, "int8": torch.int8}.get(spec.dtype, torch.float32)
    frames = _parity.make_frames(spec, spec.batch, seed=1234)
    x = np.stack([_parity.preprocess(f, spec) for f in frames], axis=0)
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)


def _run_once(module: Any, example: Any) -> Any:
    """One forward pass on the spec's input: a model that cannot take it fails here, in one line."""
    torch = require("torch", "exporting PyTorch models")
    try:
        with torch.no_grad():
            return module(example)
    except Exception as exc:
        text = str(exc).strip()
        raise BadInput(
            "the model failed on an input of shape {} {} from the spec: {}: {}".format(
                list(example.shape), str(example.dtype).replace("torch.", ""), type(exc).__name__, text.splitlines()[0][:300] if text else ""
            )
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


def _is_dynamic(model: Any) -> bool:
    inp = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if not inp:
        return False
    dims = inp[0].type.tensor_type.shape.dim
    return bool(dims) and not dims[0].HasField("dim_value")


# ---- checks ------------------------------------------------------------------------------

def check_parity(exported: "Exported", spec: "ModelSpec", opts: "CheckOptions", dynamic_batch: bool) -> "Parity":
    """ONNX Runtime vs PyTorch on synthetic frames preprocessed with the spec, plus calibration
    frames when ``--calib`` is given (exit 1 above tolerance).

    With the opset chosen here, a parity failure tries the next opsets that export before failing.
    """
    frames = _parity.make_frames(spec, max(1, opts.samples) * spec.batch, seed=0)
    inputs = _parity.batches(frames, spec, spec.batch) + calibration_batches(opts.calib, spec, opts.samples)
    n_calib = len(inputs) - len(_parity.batches(frames, spec, spec.batch))
    reference = exported.reference
    if reference is None:
        onnx_outs = _ort_outputs(exported.onnx_path, inputs)
        record = {"reference": None, "skipped": "the model was given as ONNX: there is no PyTorch reference", "passed": None, "batches": len(inputs)}
        return Parity(record, frames, inputs, onnx_outs)  # the unfolded ONNX model is the reference for folding checks
    refs = [reference(x) for x in inputs]
    extra_in = _parity.batches(frames[: 2 * spec.batch], spec, 2 * spec.batch) if dynamic_batch else []
    extra_refs = [reference(x) for x in extra_in]
    record = _compare_onnx(exported.onnx_path, inputs + extra_in, refs + extra_refs, spec, opts)
    if not record["passed"] and not opts.force:
        record = _parity_retry(exported, inputs + extra_in, refs + extra_refs, spec, opts, record)
    if n_calib:
        record["calibration_batches"] = n_calib
    log.info(parity_line("ONNX Runtime vs PyTorch", record) + (" (incl. {} calibration batches)".format(n_calib) if n_calib else ""))
    if not record["passed"]:
        if not opts.force:
            raise CheckFailed(_parity.failure_line(record, "ONNX Runtime vs PyTorch"))
        log.info("parity failed; continuing because of --force")
    return Parity(record, frames, inputs, refs + extra_refs)


def _ort_outputs(onnx_path: Path, inputs: "List[Any]") -> "List[Dict[str, Any]]":
    ort_model = _parity.OrtModel(onnx_path)
    return [ort_model(x) for x in inputs]


def _compare_onnx(onnx_path: Path, inputs: "List[Any]", refs: "List[Dict[str, Any]]", spec: "ModelSpec", opts: "CheckOptions") -> "Dict[str, Any]":
    record = _parity.compare(refs, _ort_outputs(onnx_path, inputs), spec.outputs, spec.task, opts.tolerance)
    record["reference"] = "torch-fp32"
    return record


def _parity_retry(exported: "Exported", inputs: "List[Any]", refs: "List[Dict[str, Any]]", spec: "ModelSpec",
                  opts: "CheckOptions", failed: "Dict[str, Any]") -> "Dict[str, Any]":
    """The opset was chosen here and parity failed: the next opsets that export, until one passes.

    None passing leaves the first export (and its failed record) in place.
    """
    info = exported.export
    if info is None or not info.chosen or not info.later:
        return failed
    backup = exported.onnx_path.with_name("model.first.onnx")
    shutil.copyfile(str(exported.onnx_path), str(backup))
    current = info
    while True:
        why = "parity max abs error {:.3g}".format(failed.get("max_abs_error", 0.0))
        again = export_later(current, why)
        if again is None:
            break
        checks = check_onnx(exported.onnx_path)
        record = _compare_onnx(exported.onnx_path, inputs, refs, spec, opts)
        log.info("parity failed at opset {} ({}); opset {}: {}".format(current.opset, why, again.opset, "passed" if record["passed"] else "failed too"))
        if record["passed"]:
            exported.export, exported.info, exported.checks = again, again.to_dict(), checks
            return record
        current = again
    shutil.copyfile(str(backup), str(exported.onnx_path))
    return failed


def calibration_batches(calib: Any, spec: "ModelSpec", samples: int) -> "List[Any]":
    """Up to ``samples`` batches of real (preprocessed) frames from a calibration set, or []."""
    if calib is None:
        return []
    from ..calibration.dataset import load_calibration_set
    import numpy as np

    try:
        cs = load_calibration_set(Path(calib))
    except Exception:  # the INT8 stage reports an unusable set in its own words
        return []
    dtype = np.uint8 if spec.dtype == "uint8" else np.float32
    out = []
    for x in cs.iter_batches(spec.batch, dtype=dtype, drop_last=True):
        if tuple(x.shape[1:]) != tuple(spec.shape[1:]):
            return []
        out.append(np.ascontiguousarray(x))
        if len(out) >= max(1, samples):
            break
    return out


def check_fp16(onnx_path: Path, spec: "ModelSpec", parity: "Parity", work: Path, force: bool, has_torch: bool) -> "Dict[str, Any]":
    """FP16 estimate in ONNX Runtime and a scan for activations beyond float16's range."""
    fp16 = _parity.fp16_estimate(onnx_path, work, parity.inputs, parity.refs, spec.outputs, spec.task)
    if fp16.get("skipped"):
        log.info("FP16 estimate skipped: " + fp16["skipped"])
    else:
        if fp16.get("reference") and not has_torch:
            fp16["reference"] = "onnxruntime-fp32"
        log.info("FP16 estimate (ONNX Runtime, half weights/activations): max abs error {:.3g}{}".format(
            fp16["max_abs_error"], ", top-1 agreement {:.4f}".format(fp16["top1_agreement"]) if "top1_agreement" in fp16 else ""))
    over = _parity.half_range_overflows(onnx_path, work, parity.inputs)
    fp16["overflows"] = over
    if over or (not fp16.get("skipped") and not fp16.get("finite", True)):
        where = ", ".join("{} (max {:.3g})".format(o["tensor"], o["max_abs"]) for o in over) or "an output is inf/nan"
        msg = "FP16 overflows: activations beyond float16's 65504 at {}; use --precision fp32 or int8, or rescale the model".format(where)
        if not force:
            raise CheckFailed(msg + " (--force writes the bundle anyway)")
        log.info(msg + "; continuing because of --force")
    return fp16


# ---- folding -----------------------------------------------------------------------------

def fold_graph(
    onnx_path: Path, spec: "ModelSpec", opts: "FoldOptions", parity: "Parity", check: "CheckOptions", has_torch: bool,
    keep_unfolded: "Optional[Path]" = None,
) -> "Folded":
    """Fold pre/postprocessing into ``onnx_path`` and check it against ``preprocess()`` + the unfolded model.

    ``keep_unfolded``: where to copy the model first (INT8 calibration sets fit the unfolded model).
    """
    if not opts.any:
        return Folded(spec)
    if keep_unfolded is not None:
        shutil.copyfile(str(onnx_path), str(keep_unfolded))
    from . import fold

    out_spec, record = fold.fold_model(onnx_path, spec, preprocess=opts.preprocess, postprocess=opts.postprocess, top_k=opts.top_k)
    checks = check_onnx(onnx_path)
    folded = _parity.OrtModel(onnx_path)
    got = [folded(x) for x in _parity.batches(parity.frames, out_spec, spec.batch)]
    want = [fold.reference_postprocess(r, spec, out_spec, record) for r in parity.refs[: len(got)]]
    fold_parity = _parity.compare(want, got, out_spec.outputs, spec.task, check.tolerance, folded_post=opts.postprocess)
    fold_parity["reference"] = "preprocess() + {}".format("PyTorch model" if has_torch else "unfolded ONNX model")
    log.info(parity_line("folded graph vs preprocess() + unfolded model", fold_parity))
    if not fold_parity["passed"] and not check.force:
        raise CheckFailed(_parity.failure_line(fold_parity, "folded graph"))
    log.info("folded into the graph: {}".format(", ".join(record.get("steps", []))))
    return Folded(out_spec, record, fold_parity, keep_unfolded, checks)


def refolder(spec: "ModelSpec", opts: "FoldOptions") -> "Optional[Callable[[Path], None]]":
    """The same fold for another copy of the model (the Q/DQ model), or None."""
    if not opts.any:
        return None
    from . import fold

    def apply(p: Path) -> None:
        fold.fold_model(p, spec, preprocess=opts.preprocess, postprocess=opts.postprocess, top_k=opts.top_k)
        check_onnx(p)

    return apply


def parity_line(what: str, p: "Dict[str, Any]") -> str:
    parts = ["{}: max abs error {:.3g}".format(what, p.get("max_abs_error", 0.0))]
    if p.get("top1_agreement") is not None:
        parts.append("top-1 agreement {:.4f}".format(p["top1_agreement"]))
    parts.append("{} batches".format(p.get("batches")))
    parts.append("passed" if p.get("passed") else "FAILED")
    return ", ".join(parts)
