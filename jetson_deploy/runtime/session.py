"""A run's one owner, as Polygraphy's runners are: ``activate()`` builds, ``deactivate()`` undoes.

::

    from jetson_deploy.runtime.session import open_session
    with open_session(bundle, RunOptions(backend="auto"), sources=4) as s:
        summary = s.run(["csi://0", "csi://1", "rtsp://cam/2", "clip.mp4"], ["out.jsonl"])

:meth:`Session.activate` takes a bundle that is already opened and verified (``open_trusted``
returns it after the signature check; it is never opened or hashed again) or opens one, checks
it against this machine once (inside the backend that needs it: TensorRT's opset table), chooses
the backend once and keeps the reason, builds or loads the engine, resolves the batch for the
number of sources, and builds the executor for the memory kind.  :meth:`Session.deactivate`
closes all of it in reverse order, also after an error.  ``run``, ``bench``, ``selftest``'s frame
path and the demo are short callers of this module; nothing else assembles a run.

Batching follows DeepStream's nvinfer: N sources through an engine of batch B run
``ceil(N / B)`` engine calls a round (the last padded on fixed-batch engines); a dynamic-batch
engine runs N at once up to its profile's maximum.
"""
import logging
import math
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import BadInput, JetsonDeployError, RunFailed
from .batching import resolve_batch
from .options import OutputOptions, RunOptions, SourceOptions
from .summary import RunSummary

__all__ = ["Session", "bind_sinks", "open_io", "open_session", "opened_bundle", "run_pipeline"]

log = logging.getLogger(__name__)


class Session:
    """One run's bundle, backend, engine, batch and executor.  Use :func:`open_session`.

    Valid while active: ``bundle``, ``spec``, ``labels``, ``backend`` and ``why`` (the reason it
    was chosen), ``engine``, ``batch`` (rows per engine call), ``dynamic``, ``chunks`` (engine calls
    a round for ``sources``), ``executor``.  ``engine``: a caller-made engine to use instead of the
    bundle's (tests, benchmarks, the self-test); ``cuda``: the pycuda driver module whose context
    is current (the self-test's).
    """

    def __init__(self, bundle: Any, options: "Optional[RunOptions]" = None, sources: int = 1, engine: Any = None,
                 cuda: Any = None) -> None:
        self.options = options or RunOptions()
        self.sources = max(1, int(sources))
        self._bundle_in = bundle
        self._engine_in = engine
        self._cuda = cuda
        self.bundle: Any = None
        self.engine: Any = None
        self.executor: Any = None
        self.backend = ""
        self.why = ""
        self.batch = 1
        self.dynamic = False
        self.active = False
        self._owns_bundle = False

    # ---- lifetime ------------------------------------------------------------------------
    def activate(self) -> "Session":
        """Bundle -> backend -> engine -> batch -> executor; on any error, undo what was built."""
        if self.active:
            return self
        try:
            self._activate_impl()
        except BaseException:
            self.deactivate()
            raise
        self.active = True
        return self

    def _activate_impl(self) -> None:
        from .backends import create_engine, describe_choice, explain_backend
        from .executors import make_executor

        opts = self.options
        self.bundle = self._open_bundle()
        if self._engine_in is not None:
            self.backend, self.why = self._engine_in.backend, "engine given by the caller"
        else:
            self.backend, self.why = explain_backend(self.bundle, opts.backend, opts.device)
        engine = self._engine_in
        if engine is None:
            engine = create_engine(self.bundle, replace(opts, backend=self.backend), batch=self._engine_rows())
        self.engine = engine
        engine.activate()
        self.batch, self.dynamic = resolve_batch(engine, self.sources, str(self.bundle.source))
        self.executor = make_executor(engine, self.spec, opts, batch=self.batch if self.multi else 1,
                                      dynamic_batch=self.dynamic and self.multi, cuda=self._cuda)
        log.info("%s", describe_choice(engine, self.executor, self.why))
        if self.sources > 1 or self.batch > 1:
            log.info("%s", self.describe_batch())

    def _open_bundle(self) -> Any:
        from ..bundle import Bundle, open_bundle

        b = self._bundle_in
        if isinstance(b, Bundle):
            if self.options.verify and not b.verified:
                b.verify()
            return b
        self._owns_bundle = True
        return open_bundle(b, verify=self.options.verify)

    def _engine_rows(self) -> int:
        """The batch to build a fixed-shape engine at (the torch backend): the sources, up to the
        bundle's dynamic-batch maximum."""
        from .backends import bundle_max_batch

        top = bundle_max_batch(self.bundle)
        return min(self.sources, top) if top else self.sources

    def deactivate(self) -> None:
        """Executor, engine, then the bundle (if this session opened it); each step runs even when
        an earlier one raised, and the first error is the one that surfaces."""
        steps = [("executor", lambda: self.executor.close() if self.executor is not None else None),
                 ("engine", lambda: self.engine.deactivate() if self.engine is not None else None),
                 ("bundle", lambda: self.bundle.close() if self._owns_bundle and self.bundle is not None else None)]
        first: "Optional[BaseException]" = None
        for _, step in steps:
            try:
                step()
            except BaseException as exc:  # go on closing; keep the first error
                first = first or exc
        self.executor = self.engine = None
        if self._owns_bundle:
            self.bundle = None
        self.active = False
        if first is not None:
            raise first

    def __enter__(self) -> "Session":
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    # ---- what it holds ---------------------------------------------------------------------
    @property
    def spec(self) -> Any:
        return self.bundle.spec

    @property
    def labels(self) -> "List[str]":
        return self.bundle.labels

    @property
    def multi(self) -> bool:
        """Several sources, or one through a fixed batch > 1 (padded): the batched pipeline."""
        return self.sources > 1 or (self.batch > 1 and not self.dynamic)

    @property
    def chunks(self) -> int:
        """Engine calls a round for this session's sources (nvinfer runs a small batch in chunks)."""
        return int(math.ceil(self.sources / float(max(self.batch, 1))))

    def describe_batch(self) -> str:
        line = "{} source(s) through one engine at batch {}{}".format(
            self.sources, self.batch, " (dynamic)" if self.dynamic else "")
        if self.chunks > 1:
            line += ": {} engine calls a round".format(self.chunks)
        return line

    def describe(self) -> "Dict[str, Any]":
        return {"backend": self.backend, "why": self.why, "batch": self.batch, "dynamic_batch": self.dynamic,
                "chunks": self.chunks, "sources": self.sources,
                "executor": self.executor.describe() if self.executor is not None else {}}

    # ---- running -------------------------------------------------------------------------
    def pipeline(self, sources: "Sequence[Any]", sinks: "Sequence[Any]", bindings: "Optional[Sequence[Optional[int]]]" = None,
                 inputs: "Optional[SourceOptions]" = None, outputs: "Optional[OutputOptions]" = None) -> Any:
        """The frame loop over this session's engine and executor, for opened sources and sinks."""
        from .multi_pipeline import MultiPipeline
        from .pipeline import Pipeline

        if not self.active:
            raise RuntimeError("Session.pipeline() needs an active session (use open_session)")
        if len(sources) != self.sources:
            raise BadInput("this session was opened for {} source(s), not {}".format(self.sources, len(sources)))
        if self.multi:
            return MultiPipeline(self.engine, self.spec, sources, sinks, self.executor, options=self.options,
                                 inputs=inputs, outputs=outputs, labels=self.labels, bindings=bindings)
        return Pipeline(self.engine, self.spec, sources[0], sinks, self.executor, options=self.options, inputs=inputs,
                        outputs=outputs, labels=self.labels)

    def run(self, sources: "Sequence[Any]", sinks: "Sequence[Any]", bindings: "Optional[Sequence[Optional[int]]]" = None,
            inputs: "Optional[SourceOptions]" = None, outputs: "Optional[OutputOptions]" = None,
            max_frames: "Optional[int]" = None) -> "RunSummary":
        """Run the frame loop on made sources and sinks (:func:`open_io` owns them) until
        ``max_frames`` (default: the options'), the sources' end, a stall or Ctrl-C; the summary.
        An engine that fails mid-run is one line naming the bundle and the batch (RunFailed, exit 1)."""
        pipe = self.pipeline(sources, sinks, bindings, inputs=inputs, outputs=outputs)
        try:
            summary = pipe.run(max_frames=self.options.max_frames if max_frames is None else max_frames)
        except JetsonDeployError:
            raise
        except Exception as exc:
            if getattr(exc, "from_source", False):  # a source, sink or postprocessing error: as it is
                raise
            raise RunFailed("{}: the {} engine failed at batch {} ({} source(s)): {}".format(
                self.bundle.source, self.backend, self.batch, self.sources, _one_line(exc))) from exc
        summary.bundle = str(self.bundle.source)
        summary.batch = {"rows": self.batch, "dynamic": self.dynamic, "chunks": self.chunks}
        summary.engine = self.engine.describe() if hasattr(self.engine, "describe") else None
        if summary.frames == 0 and summary.end_reason:
            log.warning("no frames processed: %s", summary.end_reason)
        return summary


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return "{}: {}".format(type(exc).__name__, text.splitlines()[0][:300]) if text else type(exc).__name__


@contextmanager
def open_session(bundle: Any, options: "Optional[RunOptions]" = None, sources: int = 1, engine: Any = None,
                 cuda: Any = None) -> "Iterator[Session]":
    """An active :class:`Session`, deactivated on exit (also on error)."""
    session = Session(bundle, options, sources=sources, engine=engine, cuda=cuda)
    with session:
        yield session


@contextmanager
def opened_bundle(bundle: Any, verify: bool = True) -> "Iterator[Any]":
    """A Bundle for several sessions in a row: a path is opened (and verified) once here and closed
    on exit; a Bundle passes through as it is (its owner closes it)."""
    from ..bundle import Bundle, open_bundle

    if isinstance(bundle, Bundle):
        yield open_bundle(bundle, verify=verify)
        return
    b = open_bundle(bundle, verify=verify)
    try:
        yield b
    finally:
        b.close()


@contextmanager
def open_io(sources: "Sequence[Any]", sinks: Any, jsonl: "Optional[str]" = None
            ) -> "Iterator[Tuple[List[Any], List[Any], List[Optional[int]]]]":
    """Sources (made, not yet opened: the pipeline opens them on its thread) and opened sinks with
    their source bindings; on exit sinks are closed (published) after a clean run and aborted after
    an error, then the sources are closed."""
    from ..media import open_sink, open_source

    uris = list(sources)
    if not uris:
        raise BadInput("no source given: pass at least one --source")
    srcs = [open_source(u) for u in uris]
    sink_objs: "List[Any]" = []
    ok = False
    try:
        sink_list, bindings = bind_sinks(sinks, len(srcs))
        if jsonl:
            sink_list.append(jsonl)
            bindings.append(None)
        fps_hint = srcs[0].fps or 30.0
        for s in sink_list:
            sink_objs.append(open_sink(s, fps=fps_hint))
        _check_outputs(uris, sink_list, sink_objs)
        for obj, k in zip(sink_objs, bindings):
            if hasattr(obj, "expect_streams"):  # a live view answers 404 for any other ?source=
                obj.expect_streams([k] if k is not None else range(len(srcs)))
        yield srcs, sink_objs, bindings
        ok = True
    finally:
        try:
            close_sinks(sink_objs, publish=ok)
        finally:
            for src in srcs:
                src.close()


def close_sinks(sinks: "Sequence[Any]", publish: bool) -> None:
    """Publish (close) each sink after a clean run, else abort it; a sink whose close fails or is
    interrupted (a second Ctrl-C or SIGTERM while publishing) is aborted, and so are the ones after
    it, so no temporary file is left; the first error surfaces."""
    first: "Optional[BaseException]" = None
    for s in sinks:
        try:
            if publish and first is None:
                s.close()
            else:
                s.abort()
        except BaseException as exc:
            first = first or exc
            try:
                s.abort()
            except BaseException:
                pass
    if first is not None:
        raise first


def _check_outputs(sources: "Sequence[Any]", names: "Sequence[Any]", sinks: "Sequence[Any]") -> None:
    """Two file sinks on one file (``a.jsonl`` and ``0=./a.jsonl``) would interleave and break it, and
    a sink on an input file would destroy it: compare the resolved paths before anything runs."""
    import os

    seen: "Dict[str, Any]" = {}
    for src in sources:
        if isinstance(src, str) and "://" not in src and os.path.isfile(src):
            seen[os.path.realpath(src)] = "--source " + src
    for name, obj in zip(names, sinks):
        path = getattr(obj, "path", None)
        if path is None or not isinstance(path, (str, os.PathLike)):
            continue
        real = os.path.realpath(str(path))
        if real in seen:
            raise BadInput("--sink {} and {} are the same file ({}): give each output its own file".format(name, seen[real], real))
        seen[real] = "--sink {}".format(name)


def bind_sinks(sink: Any, sources: int) -> "Tuple[List[Any], List[Optional[int]]]":
    """(sinks, source index each is bound to or None): ``"K=URI"`` binds URI to source K.

    A prefix before the first ``=`` with no ``/`` or ``:`` in it is always read as ``K=``: K must
    then be a source index (``-1=``, ``a=``, ``0.5=``, `` 0=`` are errors, never file names;
    a file whose name holds ``=`` is ``./a=b.jsonl``)."""
    import re

    items = [x for x in (list(sink) if isinstance(sink, (list, tuple)) else [sink]) if x is not None]
    out: "List[Any]" = []
    bound: "List[Optional[int]]" = []
    for item in items:
        m = re.match(r"^([^=/:]*)=(.*)\Z", item, re.S) if isinstance(item, str) else None
        if m is None:
            out.append(item)
            bound.append(None)
            continue
        if not re.match(r"^[0-9]+\Z", m.group(1)) or not m.group(2):
            raise BadInput("--sink {!r}: K=SINK needs a source index K (0 to {}) and a sink after '=' (a file whose "
                           "name holds '=' is ./NAME)".format(item, sources - 1))
        k = int(m.group(1))
        if k >= sources:
            raise BadInput("--sink {}: source {} does not exist ({} source(s), numbered from 0)".format(item, k, sources))
        out.append(m.group(2))
        bound.append(k)
    return out, bound


def run_pipeline(bundle: Any, source: Any, sink: Any = "null://", *, options: "Optional[RunOptions]" = None,
                 inputs: "Optional[SourceOptions]" = None, outputs: "Optional[OutputOptions]" = None,
                 engine: Any = None) -> "RunSummary":
    """Run a bundle on one or several sources into one or more sinks; return a :class:`RunSummary`.

    ``bundle``: an opened (verified) Bundle, or a bundle directory / packed file (opened and
    verified once).  ``source``: a URI or a :class:`~jetson_deploy.media.Source`, or a list of
    them (batched into one engine: :class:`Session`).  ``sink``: a URI, a Sink, or a list of them;
    ``"K=URI"`` binds a sink to source K.  ``engine`` overrides the bundle's engine (tests, benchmarks).
    """
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    outs = outputs or OutputOptions()
    with open_io(sources, sink, outs.jsonl) as (srcs, sinks, bindings), \
            open_session(bundle, options, sources=len(srcs), engine=engine) as session:
        return session.run(srcs, sinks, bindings, inputs=inputs, outputs=outs)
