"""TensorRT logger that collects what TensorRT said, and ONNX parser error reporting.

TensorRT reports build failures by returning None after logging ERROR lines, so a
useful exception needs those lines: one process-wide ``ILogger`` (:func:`process_logger`)
forwards everything to Python logging and to the per-call :class:`Collector` objects
that :func:`make_logger` returns (``errors``, ``warnings``, ``summary()``).
"""
import logging
import threading
import weakref
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

_log = logging.getLogger("jetson_deploy.trt")


def process_logger(trt: Any) -> Any:
    """The one ``trt.ILogger`` this process hands TensorRT (created on first use, per tensorrt module).

    Before TensorRT 8.4.1 the library keeps a single logger pointer: while any builder, runtime
    or refitter is alive, one created with a *different* logger prints "The logger passed into
    createInferRuntime differs from one already provided ..." and keeps using the old one
    (NVIDIA/TensorRT#1475 on 8.0.1; fixed in 8.4.1 per the maintainer in #1539).  A fresh logger per
    call therefore heard nothing on 8.2 whenever another object was alive.  One process-wide
    logger is correct on every version, so it is used on all of them; per-call collection is
    done by :class:`Collector` objects it forwards to.
    """
    existing = getattr(trt, "_jetson_deploy_logger", None)
    if existing is not None:
        return existing
    severity = trt.ILogger.Severity if hasattr(trt.ILogger, "Severity") else trt.Logger.Severity

    class ProcessLogger(trt.ILogger):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # pybind11 trampolines must be initialised explicitly
            self.collectors: "weakref.WeakSet" = weakref.WeakSet()
            self._lock = threading.Lock()

        def log(self, sev: Any, msg: str) -> None:
            level = int(sev)
            with self._lock:
                collectors = list(self.collectors)
            verbose = any(c.verbose for c in collectors)
            if level <= int(severity.ERROR):
                _log.error("TensorRT: %s", msg)
            elif level == int(severity.WARNING):
                _log.warning("TensorRT: %s", msg)
            elif verbose or level == int(severity.INFO):
                _log.log(logging.INFO if level == int(severity.INFO) else logging.DEBUG, "TensorRT: %s", msg)
            for c in collectors:
                c.collect(level, getattr(sev, "name", str(sev)), msg, int(severity.ERROR), int(severity.WARNING))

    logger = ProcessLogger()
    try:
        trt._jetson_deploy_logger = logger  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover -- a module that refuses attributes: no sharing
        pass
    return logger


class Collector:
    """What TensorRT said while this collector was alive (``errors``, ``warnings``, ``summary()``).

    ``native`` is the process-wide ``trt.ILogger`` to hand to ``Builder``/``Runtime``/``OnnxParser``;
    ``log()`` lets our own code add lines (e.g. a slow-FP16 warning) as if TensorRT said them.
    """

    def __init__(self, native: Any, verbose: bool = False) -> None:
        self.native = native
        self.verbose = verbose
        self.messages: "List[Tuple[str, str]]" = []
        self.errors: "List[str]" = []
        self.warnings: "List[str]" = []
        native.collectors.add(self)

    def collect(self, level: int, name: str, msg: str, error: int, warning: int) -> None:
        self.messages.append((name, msg))
        if level <= error:
            self.errors.append(msg)
        elif level == warning:
            self.warnings.append(msg)

    def log(self, sev: Any, msg: str) -> None:
        self.native.log(sev, msg)

    def clear(self) -> None:
        self.messages, self.errors, self.warnings = [], [], []

    def summary(self, limit: int = 1) -> str:
        """The first ERROR lines as one line, '' when there were none."""
        if not self.errors:
            return ""
        text = "; ".join(e.strip().replace("\n", " ") for e in self.errors[:limit])
        if len(self.errors) > limit:
            text += " (+{} more TensorRT errors)".format(len(self.errors) - limit)
        return text


def make_logger(trt: Any, verbose: bool = False) -> "Collector":
    """A per-call :class:`Collector` on the process-wide logger (pass ``.native`` to TensorRT)."""
    return Collector(process_logger(trt), verbose)


@dataclass
class ParserIssue:
    """One ONNX parser error, with the node it happened at when TensorRT says."""

    code: str
    desc: str
    node_index: int
    node_name: "Optional[str]"
    node_op: "Optional[str]"


def _onnx_nodes(onnx_path: "Optional[str]") -> "List[Tuple[str, str]]":
    """(name, op) of each node, read with onnx when it is installed (TensorRT 8.x only gives an index)."""
    if not onnx_path:
        return []
    try:
        import onnx  # optional: on a device without onnx we report the node index

        model = onnx.load(str(onnx_path), load_external_data=False)
        return [(n.name, n.op_type) for n in model.graph.node]
    except Exception:  # noqa: BLE001
        return []


def parser_issues(parser: Any, onnx_path: "Optional[str]" = None) -> "List[ParserIssue]":
    """All errors of an ``OnnxParser``; node name/op from ``node_name()`` (10.x) or the ONNX file (8.x)."""
    issues: "List[ParserIssue]" = []
    nodes = None
    for i in range(int(getattr(parser, "num_errors", 0))):
        err = parser.get_error(i)
        if err is None:
            continue
        idx = int(err.node()) if hasattr(err, "node") else -1
        name = op = None
        if hasattr(err, "node_name"):
            name = err.node_name() or None
            op = err.node_operator() or None
        if (name is None or op is None) and idx >= 0:
            if nodes is None:
                nodes = _onnx_nodes(onnx_path)
            if idx < len(nodes):
                name = name or nodes[idx][0] or None
                op = op or nodes[idx][1]
        code = err.code()
        issues.append(ParserIssue(getattr(code, "name", str(code)), str(err.desc()), idx, name, op))
    return issues


def format_parser_failure(onnx_name: str, issues: "List[ParserIssue]", trt_version: str = "") -> str:
    """One line: "model.onnx: TensorRT's ONNX parser failed at node 'Foo_3' (op NonMaxSuppression): ..."."""
    if not issues:
        return "{}: TensorRT's ONNX parser rejected the model but reported no error (is it a valid ONNX file?)".format(onnx_name)
    first = issues[0]
    if first.node_index >= 0 or first.node_name:
        where = "node '{}'".format(first.node_name) if first.node_name else "node #{}".format(first.node_index)
        if first.node_op:
            where += " (op {})".format(first.node_op)
        text = "{}: TensorRT's ONNX parser failed at {}: {}".format(onnx_name, where, first.desc)
    else:
        text = "{}: TensorRT's ONNX parser failed: {}".format(onnx_name, first.desc)
    if first.code == "UNSUPPORTED_NODE":
        text += " -- TensorRT {}has no importer for this op: replace it at export, upgrade TensorRT, or register a plugin".format(
            trt_version + " " if trt_version else "")
    if len(issues) > 1:
        more = ["'{}'".format(i.node_name or "#{}".format(i.node_index)) for i in issues[1:4]]
        text += " (+{} more: {})".format(len(issues) - 1, ", ".join(more))
    return text
