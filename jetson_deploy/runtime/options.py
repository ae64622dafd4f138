"""Option objects of a run: what the CLI, the benchmark, the self-test and Python callers build.

Three groups, split by which end of the run they describe; each setting has one typed field with
one spelling, checked when the object is made (one line naming the value and the choices):

* :class:`RunOptions` -- the engine, its memory and the frame loop (backend, threads, ring depth,
  CUDA graphs, preprocessing, limits).
* :class:`SourceOptions` -- how long to wait for frames and how to batch several sources.
* :class:`OutputOptions` -- what happens to results (extra sinks, metrics log lines, kept results).
"""
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from ..errors import BadInput
from ..vocab import BACKENDS, GPU_PREPROCESS, MEMORY


def _one_of(value: Any, choices: "Sequence[Any]", what: str) -> None:
    if value not in choices:
        raise BadInput("{} {!r}: choose one of {}".format(what, value, ", ".join(str(c) for c in choices)))


@dataclass
class RunOptions:
    """The engine, its memory and the frame loop."""

    backend: str = "auto"
    #: engine device, e.g. ``cuda:0`` or ``cpu`` (None: the backend's choice)
    device: "Optional[str]" = None
    #: ONNX Runtime intra-op threads (None: all CPUs but two on machines with more than four; 0: ORT's own)
    threads: "Optional[int]" = None
    #: ONNX Runtime execution providers (None: CPU, or CUDA then CPU with ``device="cuda..."``)
    providers: "Optional[Sequence[str]]" = None
    #: engine cache directory: TensorRT plans and compiled torch models (None: $JETSON_DEPLOY_CACHE or
    #: ~/.cache/jetson-deploy)
    cache_dir: "Optional[str]" = None
    #: torch backend: torch.compile the program at load, cached per GPU (None: on CUDA, off on the CPU)
    compile: "Optional[bool]" = None
    #: ``auto``, ``numpy``, ``torch``, ``pycuda``, ``pycuda-pinned``, ``pycuda-mapped`` (see make_executor)
    memory: str = "auto"
    #: frames in flight (ring size)
    depth: int = 3
    cuda_graph: bool = True
    #: GPU paths: who preprocesses (``auto``, ``kernel``, ``torch-ops``, ``host``; see vocab.GPU_PREPROCESS)
    gpu_preprocess: str = "auto"
    #: integrated GPUs: preprocessing reads the captured frame in place (None: when the GPU is integrated)
    mapped_in: "Optional[bool]" = None
    #: results written straight into mapped host memory (None: torch on; pycuda for small outputs)
    mapped_out: "Optional[bool]" = None
    #: classes reported per frame (classify); also the size of the GPU top-k reduction
    topk: int = 5
    max_frames: "Optional[int]" = None
    #: ``warn`` / ``error``: run the loop under ``torch.cuda.set_sync_debug_mode`` (torch CUDA path)
    sync_debug: "Optional[str]" = None
    #: check the bundle's checksums before loading anything (a Bundle already verified is not re-hashed)
    verify: bool = True
    #: postprocess + sinks on their own thread (None: when the engine blocks or a sink draws)
    output_thread: "Optional[bool]" = None

    def __post_init__(self) -> None:
        _one_of(self.backend, BACKENDS, "backend")
        _one_of(self.memory, MEMORY, "memory")
        _one_of(self.gpu_preprocess, GPU_PREPROCESS, "gpu_preprocess")
        if self.sync_debug is not None:
            _one_of(self.sync_debug, ("warn", "error"), "sync_debug")
        if int(self.depth) < 1:
            raise BadInput("depth {}: give at least 1 frame in flight".format(self.depth))
        if self.threads is not None and int(self.threads) < 0:
            raise BadInput("threads {}: give 0 (ONNX Runtime's default) or more".format(self.threads))


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
