"""ONNX export and checking.

Exporter choice (see docs/convert.md): the TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``).  It writes any opset from 9 up, so the
default opset 13 is native, not down-converted: TensorRT 8.2 (JetPack 4.6) parses
up to opset 13, 8.5/8.6 (JetPack 5) up to 17, 10.x (JetPack 6) later ones, so 13
is what every target reads.  The dynamo exporter starts at opset 18 and its down
conversion fails on common ops (``No Adapter From Version $14 for Relu``); it is
used only as a fallback for a ``.pt2`` program that cannot be traced, and then the
opset it wrote is recorded.
"""
import contextlib
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .._lazy import require
from ..errors import BadInput, CheckFailed

DEFAULT_OPSET = 13
MIN_OPSET = 11
BATCH_DIM = "batch"


@dataclass
class ExportInfo:
    path: Path
    opset: int
    exporter: str
    dynamic_batch: bool
    input_name: str
    output_names: "List[str]"
    notes: "List[str]" = field(default_factory=list)

    def to_dict(self) -> "Dict[str, Any]":
        return {
            "opset": self.opset,
            "exporter": self.exporter,
            "dynamic_batch": self.dynamic_batch,
            "input": self.input_name,
            "outputs": list(self.output_names),
        }


def export_onnx(
    module: Any,
    example: Any,
    path: Any,
    input_name: str,
    output_names: "Sequence[str]",
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    trace_first: bool = False,
) -> "ExportInfo":
    """Export ``module(example)`` to ``path`` with the given names; return what was done.

    ``trace_first`` traces with ``torch.jit.trace`` before exporting (needed for the
    ``GraphModule`` of a ``torch.export`` program, which refuses ``train()``).
    """
    torch = require("torch", "ONNX export")
    if opset < MIN_OPSET:
        raise BadInput("--opset {} is too old: use {} or newer (default {}, read by TensorRT 8.2 and later)".format(opset, MIN_OPSET, DEFAULT_OPSET))
    path = Path(path)
    names = list(output_names)
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {input_name: {0: BATCH_DIM}}
        for n in names:
            dynamic_axes[n] = {0: BATCH_DIM}
    target = module
    notes: "List[str]" = []
    # Exporters print progress to stdout; --json promises stdout holds only the result.
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(sys.stderr):
        # The TorchScript exporter is deprecated in torch >= 2.9 but is the one writing opset 13:
        # its DeprecationWarning is noise.  TracerWarnings are not: they flag Python control flow
        # or constants frozen at trace time, so they are reported (parity then checks the result).
        warnings.simplefilter("always")
        if trace_first:
            try:
                with torch.no_grad():
                    target = torch.jit.trace(module, (example,), check_trace=False, strict=False)
            except Exception as exc:
                return _export_dynamo(module, example, path, input_name, names, opset, dynamic_batch, exc)
        kwargs = dict(opset_version=opset, input_names=[input_name], output_names=names,
                      dynamic_axes=dynamic_axes, do_constant_folding=True)
        try:
            with torch.no_grad():
                try:
                    torch.onnx.export(target, (example,), str(path), dynamo=False, **kwargs)
                except TypeError as exc:
                    if "dynamo" not in str(exc):
                        raise
                    # torch < 2.1 has no 'dynamo' argument: its only exporter is the TorchScript one.
                    torch.onnx.export(target, (example,), str(path), **kwargs)
        except Exception as exc:
            raise _export_error(exc, opset)
    notes.extend(_tracer_notes(caught))
    return ExportInfo(path, opset, "torchscript", dynamic_batch, input_name, names, notes)


def _tracer_notes(caught: Any, limit: int = 3) -> "List[str]":
    seen: "List[str]" = []
    for w in caught or []:
        if getattr(w.category, "__name__", "") != "TracerWarning":
            continue
        msg = " ".join(str(w.message).split())
        msg = msg[:200] + ("..." if len(msg) > 200 else "")
        where = "{}:{}".format(Path(str(w.filename)).name, w.lineno)
        line = "tracing warning at {}: {}".format(where, msg)
        if line not in seen:
            seen.append(line)
    extra = len(seen) - limit
    out = seen[:limit]
    if extra > 0:
        out.append("... and {} more tracing warning(s)".format(extra))
    return out


def _export_error(exc: "BaseException", opset: int) -> "BadInput":
    msg = str(exc).strip().splitlines()
    first = msg[0] if msg else type(exc).__name__
    return BadInput("ONNX export failed at opset {}: {}: {} (try a newer --opset, or fix the op in the model)".format(opset, type(exc).__name__, first[:300]))


def _export_dynamo(module: Any, example: Any, path: Path, input_name: str, names: "List[str]", opset: int, dynamic_batch: bool, why: "BaseException") -> "ExportInfo":
    torch = require("torch", "ONNX export")
    require("onnxscript", "the torch.export-based ONNX exporter")
    dyn = None
    if dynamic_batch:
        dyn = ({0: torch.export.Dim("batch", min=1, max=1024)},)
    used = max(opset, 18)
    try:
        prog = torch.onnx.export(
            module, (example,), dynamo=True, opset_version=used, input_names=[input_name], output_names=names, dynamic_shapes=dyn
        )
        prog.save(str(path))
    except Exception as exc:
        raise BadInput(
            "ONNX export failed: tracing gave {}: {}; the torch.export exporter gave {}: {}".format(
                type(why).__name__, str(why).splitlines()[0][:200], type(exc).__name__, str(exc).splitlines()[0][:200]
            )
        )
    info = ExportInfo(path, used, "dynamo", dynamic_batch, input_name, names)
    info.notes.append(
        "exported with the torch.export-based exporter at opset {} (tracing failed: {}); TensorRT 8.2/8.5 cannot parse it".format(
            used, str(why).splitlines()[0][:120]
        )
    )
    return info


def model_opset(model: Any) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def check_onnx(path: Any, write_inferred: bool = True) -> "Dict[str, Any]":
    """``onnx.checker`` (full) + strict shape inference; returns a summary, raises CheckFailed.

    With ``write_inferred`` the model is saved back with the inferred value_info, so
    intermediate shapes are visible to tools (Netron, TensorRT's parser logs).
    """
    onnx = require("onnx", "checking ONNX models")
    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise BadInput("cannot read ONNX file {}: {}".format(path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise CheckFailed("onnx.checker rejected {}: {}".format(path.name, " ".join(str(exc).split())[:400]))
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:
        raise CheckFailed("ONNX shape inference failed on {}: {}".format(path.name, " ".join(str(exc).split())[:400]))
    if write_inferred:
        from .._files import atomic_write_bytes

        atomic_write_bytes(path, inferred.SerializeToString())
    return {
        "checker": "passed",
        "shape_inference": "passed",
        "opset": model_opset(model),
        "ir_version": int(model.ir_version),
        "nodes": len(model.graph.node),
        "inputs": graph_io(inferred.graph.input, inferred.graph.initializer),
        "outputs": graph_io(inferred.graph.output, ()),
    }


_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


def graph_io(values: Any, initializers: Any) -> "List[Dict[str, Any]]":
    """Name, shape (ints or dim names) and dtype of graph inputs/outputs, initializers skipped."""
    init_names = {i.name for i in initializers}
    res = []
    for v in values:
        if v.name in init_names:
            continue
        t = v.type.tensor_type
        dims: "List[Any]" = []
        for d in t.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or "?")
        res.append({"name": v.name, "shape": dims, "dtype": _ONNX_DTYPES.get(t.elem_type, str(t.elem_type))})
    return res


def onnx_io(path: Any) -> "Dict[str, List[Dict[str, Any]]]":
    onnx = require("onnx", "reading ONNX models")
    m = onnx.load(str(path), load_external_data=False)
    return {"inputs": graph_io(m.graph.input, m.graph.initializer), "outputs": graph_io(m.graph.output, ())}


def check_names(path: Any, input_name: str, output_names: "Optional[Sequence[str]]") -> "List[str]":
    """For ONNX files given by the user: the spec's names must be the graph's names.

    Returns the graph's output names.  We do not rename silently: the spec is what the
    runtime binds by name.
    """
    io = onnx_io(path)
    ins = [i["name"] for i in io["inputs"]]
    outs = [o["name"] for o in io["outputs"]]
    if len(ins) != 1:
        raise BadInput("{} has {} inputs ({}); jetson-deploy models take one image input".format(Path(path).name, len(ins), ", ".join(ins)))
    if ins[0] != input_name:
        raise BadInput("{} names its input {!r} but the spec says input.name {!r}: set input.name: {} in the spec".format(Path(path).name, ins[0], input_name, ins[0]))
    if output_names is not None and list(output_names) != outs:
        raise BadInput(
            "{} has outputs {} but the spec lists {}: set outputs: [{}] in the spec".format(Path(path).name, outs, list(output_names), ", ".join(outs))
        )
    return outs
