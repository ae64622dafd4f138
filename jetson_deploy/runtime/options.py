"""Option objects for a run: what the CLI, the benchmark and Python callers build instead of ~24 keywords.

Three groups, split by which end of the pipeline they describe, so that new inputs (several cameras
batched into one engine call) and new outputs (network sinks) add fields to their own group:

* :class:`RunOptions` -- the engine and the frame loop (backend, memory, ring depth, CUDA graphs, limits).
* :class:`SourceOptions` -- where frames come from and how long to wait for them.
* :class:`OutputOptions` -- what happens to results (extra sinks, metrics log lines, kept results).

``run_pipeline(bundle, source, sink, backend="onnxruntime", max_frames=10)`` still works: flat keywords
are the field names of these classes, sorted into them by :func:`split_options`.
"""
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Dict, Optional, Tuple


@dataclass
class RunOptions:
    """The engine and the frame loop."""

    backend: str = "auto"
    #: engine device, e.g. ``cuda:0`` or ``cpu`` (None: the backend's choice)
    device: "Optional[str]" = None
    #: ``auto``, ``numpy``, ``torch``, ``pycuda``, ``pycuda-pinned``, ``pycuda-mapped`` (see make_executor)
    memory: str = "auto"
    #: frames in flight (ring size)
    depth: int = 3
    cuda_graph: bool = True
    #: classes reported per frame (classify); also the size of the GPU top-k reduction
    topk: int = 5
    max_frames: "Optional[int]" = None
    #: ``warn`` / ``error``: run the loop under ``torch.cuda.set_sync_debug_mode`` (torch CUDA path)
    sync_debug: "Optional[str]" = None
    #: check the bundle's checksums before loading anything
    verify: bool = True
    #: postprocess + sinks on their own thread (None: when the engine blocks or a sink draws)
    output_thread: "Optional[bool]" = None
    #: extra keywords for ``create_engine`` (e.g. ``threads``, ``cache_dir``)
    engine_options: "Dict[str, Any]" = field(default_factory=dict)
    #: extra keywords for ``make_executor`` (e.g. ``mapped_out``, ``cuda``, ``counter``)
    executor_options: "Dict[str, Any]" = field(default_factory=dict)


@dataclass
class SourceOptions:
    """Frame input; with several sources these apply to each of them."""

    #: capture queue length; live sources drop the oldest frame when it is full
    queue_size: int = 4
    #: end the run (several sources: end that source alone) when it delivers nothing for this many seconds
    stall_timeout: float = 10.0
    #: several sources: the longest a batch waits for sources without a frame ready (None: one frame
    #: interval of the slowest live source, else 30 ms)
    batch_timeout: "Optional[float]" = None
    #: several sources: end the run when the first source ends (default: when all have)
    stop_on_first_end: bool = False
    #: keywords for ``open_source`` (overrides of URI query options)
    options: "Dict[str, Any]" = field(default_factory=dict)


@dataclass
class OutputOptions:
    """Results: extra sinks, periodic metrics, results kept in memory or handed to a callback."""

    #: a ``.jsonl`` path added to the sinks
    jsonl: "Optional[str]" = None
    #: seconds between metrics log records (``jetson_deploy.runtime.metrics``, INFO); 0: none
    metrics_interval: float = 5.0
    #: keep every result's JSON object in ``RunSummary.results``
    keep_results: bool = False
    #: called with (frame, Result) for each frame, after the sinks
    on_result: "Optional[Callable[[Any, Any], None]]" = None


#: flat keyword names from before the option objects, and the field they now set
_RENAMED = {"source_options": ("source", "options")}


def _names(cls: Any) -> "Tuple[str, ...]":
    return tuple(f.name for f in fields(cls))


def split_options(run: "Optional[RunOptions]" = None, source: "Optional[SourceOptions]" = None,
                  output: "Optional[OutputOptions]" = None,
                  **flat: Any) -> "Tuple[RunOptions, SourceOptions, OutputOptions]":
    """The three option objects, with flat keywords (field names) applied on top of copies.

    Unknown names raise TypeError, as a misspelt keyword argument would.
    """
    groups = {"run": (run or RunOptions(), {}), "source": (source or SourceOptions(), {}),
              "output": (output or OutputOptions(), {})}
    owners = {}
    for group, (obj, _) in groups.items():
        owners.update({name: (group, name) for name in _names(type(obj))})
    owners.update(_RENAMED)
    for key, value in flat.items():
        if key not in owners:
            hint = " (metrics lines are INFO records of the jetson_deploy.runtime.metrics logger)" if key == "printer" else ""
            raise TypeError("unexpected keyword argument {!r}{}".format(key, hint))
        group, name = owners[key]
        if name.endswith("options") and value is None:
            value = {}
        groups[group][1][name] = value
    out = tuple(replace(obj, **changes) if changes else obj for obj, changes in groups.values())
    return out[0], out[1], out[2]
