"""ONNX export and checking.

Opset choice (docs/convert.md): without ``--opset``, the lowest opset from 13 up that
exports (and, in :mod:`.stages`, passes parity), because the opset decides the oldest
TensorRT that parses the file (:mod:`jetson_deploy.bundle.opset`): 13 keeps TensorRT
8.2 (JetPack 4.6, Nano), 14-17 need 8.4+ (JetPack 5), 18+ need 9.0+ (JetPack 6).
Opsets 13-17 come from the TorchScript-based exporter (``dynamo=False``), which writes
them natively, with torch's attention fast path off (``nn.MultiheadAttention`` and
``nn.TransformerEncoderLayer`` in eval mode otherwise call fused kernels,
``aten::_native_multi_head_attention``, that no opset exports; off, they are plain
matmul/softmax or SDPA: opset 13 or 14, TensorRT 8.2/8.4).  torch's dynamo exporter writes opset 18 and cannot go lower (its down
conversion fails on common ops: ``No Adapter From Version $14 for Relu``): it is tried
when the TorchScript exporter fails at every opset up to 17 and the target's TensorRT
reads 18, and the manifest says which exporter made the file.

Exporters are loud (graph dumps from C++ on stdout, deprecation warnings): their output
goes to a log file, and a failure is one line naming the operator, the module it came
from and what to try, with the log's path.
"""
import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from .._lazy import require
from ..errors import BadInput, CheckFailed

log = logging.getLogger(__name__)

DEFAULT_OPSET = 13  # the first opset tried; the lowest one TensorRT 8.2 (JetPack 4.6) reads
MIN_OPSET = 11
MAX_TORCHSCRIPT_OPSET = 17  # the last one TensorRT 8.5/8.6 (JetPack 5) read
DYNAMO_OPSET = 18
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
    chosen: bool = False  # picked by convert (no --opset)
    request: Any = None  # the ExportRequest, to export again at a later opset (parity retry)
    later: "List[int]" = field(default_factory=list)  # the opsets left to try after this one
    skipped: "List[str]" = field(default_factory=list)  # why lower opsets were not used

    def to_dict(self) -> "Dict[str, Any]":
        return {
            "opset": self.opset,
            "exporter": self.exporter,
            "dynamic_batch": self.dynamic_batch,
            "input": self.input_name,
            "outputs": list(self.output_names),
            "opset_chosen": self.chosen,
        }


@dataclass
class ExportRequest:
    """What to export and how; the exporters' output goes to ``log_path``."""

    module: Any
    example: Any
    path: Path
    input_name: str
    output_names: "List[str]"
    dynamic_batch: bool = False
    trace_first: bool = False
    log_path: "Optional[Path]" = None
    auto: bool = True  # opset chosen here: opset 18 comes from the dynamo exporter


class ExportFailed(Exception):
    """One exporter attempt failed; ``op``/``where`` name the operator and module when known."""

    def __init__(self, opset: int, exporter: str, exc: "BaseException", op: "Optional[str]" = None,
                 where: "Optional[str]" = None, added_in: "Optional[int]" = None) -> None:
        Exception.__init__(self, _first_line(exc))
        self.opset, self.exporter, self.exc = opset, exporter, exc
        self.op, self.where, self.added_in = op, where, added_in
        self.tried: "List[int]" = [opset]

    def what(self) -> str:
        if self.op:
            at = " in {}".format(self.where) if self.where else ""
            return "operator {}{} is not exported at opset {}".format(self.op, at, self.opset)
        return "{}: {}".format(type(self.exc).__name__, _first_line(self.exc)[:200])


def export_log_path() -> Path:
    """A log file for the exporters' output, in the temporary directory (it outlives the work dir
    and the run's private temporary directory: the error line points the user to it)."""
    from .._scratch import lasting_tempdir

    fd, name = tempfile.mkstemp(prefix="jetson-deploy-export-", suffix=".log", dir=lasting_tempdir())
    os.close(fd)
    return Path(name)


def export_onnx(
    module: Any,
    example: Any,
    path: Any,
    input_name: str,
    output_names: "Sequence[str]",
    opset: "Optional[int]" = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    trace_first: bool = False,
    max_opset: "Optional[int]" = None,
) -> "ExportInfo":
    """Export ``module(example)`` to ``path``; ``opset=None`` picks the lowest opset that exports.

    ``max_opset``: the highest opset the target reads (None: any, so the dynamo exporter may be
    used).  ``trace_first`` traces with ``torch.jit.trace`` first (a ``torch.export`` program's
    ``GraphModule`` refuses ``train()``).  Raises one-line :class:`BadInput` on failure.
    """
    require("torch", "ONNX export")
    if opset is not None and opset < MIN_OPSET:
        raise BadInput("--opset {} is too old: use {} or newer (default: chosen, from {})".format(opset, MIN_OPSET, DEFAULT_OPSET))
    req = ExportRequest(module, example, Path(path), input_name, list(output_names), dynamic_batch, trace_first,
                        export_log_path(), auto=opset is None)
    opsets = candidate_opsets(opset, max_opset)
    try:
        info = export_first(req, opsets)
    except ExportFailed as failed:
        raise BadInput(failure_line(failed, req.log_path, forced=opset is not None))
    info.chosen = opset is None
    info.request = req
    info.later = [n for n in opsets if n > info.opset]
    _drop_log(req.log_path)
    return info


def export_later(info: "ExportInfo", why: str) -> "Optional[ExportInfo]":
    """Export again at the next opset that exports (parity failed at ``info.opset``); None if none does."""
    req = info.request
    if req is None or not info.later:
        return None
    req.log_path = export_log_path()
    try:
        again = export_first(req, info.later)
    except ExportFailed:
        _drop_log(req.log_path)
        return None
    _drop_log(req.log_path)
    again.chosen, again.request = info.chosen, req
    again.later = [n for n in info.later if n > again.opset]
    again.skipped = info.skipped + ["opset {}: {}".format(info.opset, why)]
    return again


def candidate_opsets(opset: "Optional[int]", max_opset: "Optional[int]" = None, after: int = 0) -> "List[int]":
    """Opsets to try in order: the forced one, else 13..17 then 18 (dynamo) up to ``max_opset``."""
    if opset is not None:
        return [opset] if opset > after else []
    top = DYNAMO_OPSET if max_opset is None else min(max_opset, DYNAMO_OPSET)
    return [n for n in range(DEFAULT_OPSET, top + 1) if n > after]


def export_first(req: "ExportRequest", opsets: "Sequence[int]") -> "ExportInfo":
    """The first opset of ``opsets`` that exports; else raises the most telling ExportFailed.

    That is the last one naming an operator of the TorchScript exporter (the op no opset
    up to 17 exports), else the last one; the dynamo exporter's own error goes to the log.
    """
    failures: "List[ExportFailed]" = []
    skip_below = 0
    for n in opsets:
        if n < skip_below:
            continue
        try:
            info = export_once(req, n)
            info.skipped = skipped_summary(failures)
            return info
        except ExportFailed as failed:
            failures.append(failed)
            log.debug("export at opset %s failed: %s", n, failed.what())
            if failed.added_in:
                skip_below = failed.added_in  # the exporter says where the op starts
    if not failures:
        raise ExportFailed(0, "none", RuntimeError("no opset to try"))
    named = [f for f in failures if f.op and f.exporter == "torchscript"]
    worst = named[-1] if named else failures[-1]
    worst.tried = [f.opset for f in failures]
    raise worst


def skipped_summary(failures: "Sequence[ExportFailed]") -> "List[str]":
    """Why the lower opsets were not used, one entry per reason: ``opsets 13-17: operator X in m.attn
    is not exported`` (consecutive opsets failing the same way are one entry; nothing is cut)."""
    groups: "List[Tuple[List[int], str]]" = []
    for f in failures:
        reason = f.what().replace(" at opset {}".format(f.opset), "")
        if groups and groups[-1][1] == reason:
            groups[-1][0].append(f.opset)
        else:
            groups.append(([f.opset], reason))
    out = []
    for opsets, reason in groups:
        at = "opset {}".format(opsets[0]) if len(opsets) == 1 else "opsets {}-{}".format(opsets[0], opsets[-1])
        out.append("{}: {}".format(at, reason))
    return out


def export_once(req: "ExportRequest", opset: int) -> "ExportInfo":
    """One attempt at ``opset`` (TorchScript exporter up to 17, dynamo from 18), quietly."""
    torch = require("torch", "ONNX export")
    with _quiet(req.log_path, "opset {}".format(opset)) as caught:
        if req.auto and opset >= DYNAMO_OPSET:
            return _export_dynamo(req, opset)
        target = req.module
        if req.trace_first:
            try:
                with torch.no_grad():
                    target = torch.jit.trace(req.module, (req.example,), check_trace=False, strict=False)
            except Exception as exc:  # no TorchScript opset will do: go straight to the dynamo exporter
                raise ExportFailed(opset, "torchscript", exc, added_in=DYNAMO_OPSET)
        with attention_fast_path_off(torch):
            _export_torchscript(torch, target, req, opset)
    info = ExportInfo(req.path, opset, "torchscript", req.dynamic_batch, req.input_name, req.output_names)
    info.notes.extend(_tracer_notes(caught))
    return info


@contextlib.contextmanager
def attention_fast_path_off(torch: Any) -> "Iterator[None]":
    """Export attention layers through their composite path (matmul, softmax / SDPA), not the fused
    inference kernels the TorchScript exporter cannot write at any opset; restored afterwards."""
    mha = getattr(getattr(torch, "backends", None), "mha", None)
    get, set_ = getattr(mha, "get_fastpath_enabled", None), getattr(mha, "set_fastpath_enabled", None)
    if get is None or set_ is None:  # torch < 2.1: no switch (and no fast path in export)
        yield
        return
    was = get()
    set_(False)
    try:
        yield
    finally:
        set_(was)


def _export_torchscript(torch: Any, target: Any, req: "ExportRequest", opset: int) -> None:
    dynamic_axes = None
    if req.dynamic_batch:
        dynamic_axes = {req.input_name: {0: BATCH_DIM}}
        for n in req.output_names:
            dynamic_axes[n] = {0: BATCH_DIM}
    kwargs = dict(opset_version=opset, input_names=[req.input_name], output_names=req.output_names,
                  dynamic_axes=dynamic_axes, do_constant_folding=True)
    dump_start = _log_size(req.log_path)
    try:
        with torch.no_grad():
            try:
                torch.onnx.export(target, (req.example,), str(req.path), dynamo=False, **kwargs)
            except TypeError as exc:
                if "dynamo" not in str(exc):
                    raise
                # torch < 2.1 has no 'dynamo' argument: its only exporter is the TorchScript one.
                torch.onnx.export(target, (req.example,), str(req.path), **kwargs)
    except Exception as exc:
        sys.stdout.flush()
        raise _located(exc, opset, "torchscript", req.log_path, dump_start)


def _export_dynamo(req: "ExportRequest", opset: int) -> "ExportInfo":
    torch = require("torch", "ONNX export")
    require("onnxscript", "the torch.export-based ONNX exporter (opset 18)")
    dyn = None
    if req.dynamic_batch:
        dyn = ({0: torch.export.Dim("batch", min=1, max=1024)},)
    try:
        prog = torch.onnx.export(req.module, (req.example,), dynamo=True, opset_version=opset, input_names=[req.input_name],
                                 output_names=req.output_names, dynamic_shapes=dyn)
        prog.save(str(req.path))
    except Exception as exc:
        raise _located(exc, opset, "dynamo", None, 0)
    return ExportInfo(req.path, opset, "dynamo", req.dynamic_batch, req.input_name, req.output_names)


# ---- quiet exporters and one-line failures -----------------------------------------------

@contextlib.contextmanager
def _quiet(log_path: "Optional[Path]", what: str) -> "Iterator[List[Any]]":
    """Send stdout/stderr (Python's and the C++ file descriptors 1 and 2) and warnings to ``log_path``.

    The TorchScript exporter prints the whole graph from C++ on failure and torch prints
    deprecation warnings; none of it belongs on the terminal (or on stdout under --json).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if log_path is None:
            with contextlib.redirect_stdout(sys.stderr):
                yield caught
            return
        with open(str(log_path), "a") as f:
            f.write("==== export at {}\n".format(what))
            f.flush()
            saved = _redirect_fds(f.fileno())
            try:
                with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                    yield caught
            finally:
                _restore_fds(saved)
                for w in caught:
                    f.write("warning: {}: {}\n".format(getattr(w.category, "__name__", "Warning"), w.message))


def _redirect_fds(target: int) -> "List[Tuple[int, int]]":
    saved = []
    for fd in (1, 2):
        try:
            for stream in (sys.__stdout__, sys.__stderr__):
                if stream is not None:
                    stream.flush()
            saved.append((fd, os.dup(fd)))
            os.dup2(target, fd)
        except OSError:  # no such descriptor (embedded interpreters): Python-level redirect only
            continue
    return saved


def _restore_fds(saved: "List[Tuple[int, int]]") -> None:
    for fd, copy in saved:
        os.dup2(copy, fd)
        os.close(copy)


def _log_size(log_path: "Optional[Path]") -> int:
    try:
        return os.path.getsize(str(log_path)) if log_path is not None else 0
    except OSError:
        return 0


def _drop_log(log_path: "Optional[Path]") -> None:
    if log_path is not None:
        try:
            os.unlink(str(log_path))
        except OSError:
            pass


_OP_RE = re.compile(r"operator '([A-Za-z0-9_:.]+)'")
_ADDED_RE = re.compile(r"added in version (\d+)")


def _located(exc: "BaseException", opset: int, exporter: str, log_path: "Optional[Path]", dump_start: int) -> "ExportFailed":
    """An ExportFailed naming the operator and, from the graph dump's scope, the module path."""
    text = str(exc)
    m = _OP_RE.search(text)
    op = m.group(1) if m else None
    added = _ADDED_RE.search(text)
    where = None
    if op and log_path is not None:
        try:
            with open(str(log_path), "r", errors="replace") as f:
                f.seek(dump_start)
                where = module_path_from_dump(f.read(), op)
        except OSError:
            where = None
    if log_path is not None:
        with open(str(log_path), "a") as f:
            f.write("{} exporter, opset {}: {}: {}\n".format(exporter, opset, type(exc).__name__, text))
    return ExportFailed(opset, exporter, exc, op, where, int(added.group(1)) if added else None)


_SCOPE_RE = re.compile(r"scope: (\S+)(?: # (\S+))?")


def module_path_from_dump(dump: str, op: str) -> "Optional[str]":
    """``m.encoder.block.0.attention (model.py:53)`` for the first node calling ``op`` in a TorchScript graph dump.

    Scopes read ``Root::/pkg.Type::name/pkg.Type::name.0/...``; a name either extends the
    previous one (``blocks`` -> ``blocks.0``) or is relative to it (``attn``).
    """
    for line in dump.splitlines():
        if "= {}(".format(op) not in line:
            continue
        m = _SCOPE_RE.search(line)
        if not m:
            return None
        path = ""
        for seg in m.group(1).split("/")[1:]:
            name = seg.rsplit("::", 1)[-1]
            if not name:
                continue
            path = name if (not path or name.startswith(path + ".")) else path + "." + name
        where = "m." + path if path else "the model's forward()"
        if m.group(2):
            src = m.group(2).rsplit(":", 1)[0]  # file:line:col -> file:line
            where += " ({})".format(Path(src.rsplit(":", 1)[0]).name + ":" + src.rsplit(":", 1)[-1])
        return where
    return None


def failure_line(failed: "ExportFailed", log_path: "Optional[Path]", forced: bool) -> str:
    """The one line a failed export prints: what failed, where, what to try, where the details are."""
    if forced and failed.op and failed.added_in:
        hint = "try --opset {} (TensorRT >= {}), or leave --opset out to let convert choose".format(
            failed.added_in, _min_trt(failed.added_in))
    elif forced:
        hint = "leave --opset out to let convert try opsets {}-{}".format(DEFAULT_OPSET, DYNAMO_OPSET)
    elif failed.op:
        hint = "no opset up to {} exports it: replace that op in the model or register a custom symbolic " \
               "(torch.onnx.register_custom_op_symbolic)".format(DYNAMO_OPSET)
    else:
        hint = "check that the model runs under torch.jit.trace and torch.export"
    tried = sorted(set(failed.tried))
    at = "opset {}".format(tried[0]) if len(tried) == 1 else "opsets {}-{}".format(tried[0], tried[-1])
    details = "; details: {}".format(log_path) if log_path is not None else ""
    return "ONNX export failed ({}): {}: {}{}".format(at, failed.what(), hint, details)


def _min_trt(opset: int) -> str:
    from ..bundle.opset import min_tensorrt_for_opset

    return min_tensorrt_for_opset(opset) or "10"


def _first_line(exc: "BaseException") -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


#: TracerWarnings that freeze the model's control flow to the example input: parity (on inputs
#: shaped like the spec's) may not see the other branch, so the user hears of these, in one whole
#: line.  The rest (a shape read as a Python int, a ``torch.tensor`` constant) are exact at the
#: exported shapes, which parity checks (batch 2 too with --dynamic-batch): debug log only, as are
#: warnings raised inside torch itself (its own shape asserts, e.g. in multi_head_attention_forward).
_FROZEN_BRANCH = "Converting a tensor to a Python boolean"


def _inside_torch(filename: str) -> bool:
    torch = sys.modules.get("torch")
    base = os.path.dirname(os.path.abspath(getattr(torch, "__file__", "") or "")) if torch is not None else ""
    return bool(base) and os.path.abspath(filename).startswith(base + os.sep)


def _tracer_notes(caught: Any, limit: int = 3) -> "List[str]":
    seen: "List[str]" = []
    for w in caught or []:
        if getattr(w.category, "__name__", "") != "TracerWarning":
            continue
        where = "{}:{}".format(Path(str(w.filename)).name, w.lineno)
        text = " ".join(str(w.message).split())
        if not text.startswith(_FROZEN_BRANCH) or _inside_torch(str(w.filename)):
            log.debug("tracing warning at %s (exact at the exported shapes, which parity checks): %s", where, text)
            continue
        line = ("tracing warning at {}: a tensor used as a Python boolean (if/while) keeps the branch the example "
                "input took; use torch.where if the branch depends on the input".format(where))
        if line not in seen:
            seen.append(line)
    extra = len(seen) - limit
    out = seen[:limit]
    if extra > 0:
        out.append("... and {} more tensor-as-boolean tracing warning(s)".format(extra))
    return out


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


def graph_io(values: Any, initializers: Any) -> "List[Dict[str, Any]]":
    """Name, shape (ints or dim names) and dtype of graph inputs/outputs, initializers skipped (the
    bundle's export code reads the same with the same function)."""
    from ..bundle.export.model_io import values_io

    return values_io(values, {i.name for i in initializers})


def onnx_io(path: Any) -> "Dict[str, List[Dict[str, Any]]]":
    onnx = require("onnx", "reading ONNX models")
    m = onnx.load(str(path), load_external_data=False)
    return {"inputs": graph_io(m.graph.input, m.graph.initializer), "outputs": graph_io(m.graph.output, ())}


def check_names(path: Any, input_name: str, output_names: "Optional[Sequence[str]]", shown: "Optional[Any]" = None) -> "List[str]":
    """For ONNX files given by the user: the spec's names must be the graph's names.

    Returns the graph's output names.  We do not rename silently: the spec is what the
    runtime binds by name.  ``shown``: the user's file, named in messages (``path`` may be a copy).
    """
    io = onnx_io(path)
    ins = [i["name"] for i in io["inputs"]]
    outs = [o["name"] for o in io["outputs"]]
    name = str(shown) if shown is not None else Path(path).name
    if len(ins) != 1:
        raise BadInput("{} has {} inputs ({}); jetson-deploy models take one image input".format(name, len(ins), ", ".join(ins)))
    if ins[0] != input_name:
        raise BadInput("{} names its input {!r} but the spec says input.name {!r}: set input.name: {} in the spec".format(name, ins[0], input_name, ins[0]))
    if output_names is not None and list(output_names) != outs:
        raise BadInput(
            "{} has outputs {} but the spec lists {}: set outputs: [{}] in the spec".format(name, outs, list(output_names), ", ".join(outs))
        )
    return outs
