"""Executors, one module per memory kind, and :func:`make_executor`, which picks one.

* :mod:`.host` -- CPU backends (ONNX Runtime, torch CPU): host preprocessing, synchronous inference.
* :mod:`.torch_cuda` -- torch on CUDA: GPU preprocessing + model + reduction in CUDA graphs.
* :mod:`.pycuda` -- TensorRT-style device-pointer engines in pycuda pinned or mapped memory.
* :mod:`.pycuda_kernel` -- the same with the fused preprocessing kernel (the capture thread only captures).
"""
import logging
from typing import Any, Optional

from ...errors import BadInput
from ..options import RunOptions
from .base import Executor, Prepared, release_frame
from .host import HostExecutor

__all__ = ["Executor", "HostExecutor", "Prepared", "make_executor", "release_frame"]

log = logging.getLogger(__name__)


def _memory_for(engine: Any, memory: str) -> str:
    """``auto``: torch CUDA engines -> torch pinned + GPU preprocessing; TensorRT -> pycuda; CPU -> numpy."""
    if memory != "auto":
        return memory
    if engine.backend == "torch" and engine.is_gpu:
        return "torch"
    return "pycuda" if engine.backend == "tensorrt" else "numpy"


def make_executor(engine: Any, spec: Any, options: "Optional[RunOptions]" = None, batch: int = 1,
                  dynamic_batch: bool = False, cuda: Any = None, counter: Any = None) -> "Executor":
    """The executor for an activated engine, from the run's memory kind and preprocessing choice.

    ``batch``: rows per engine call (several sources); ``dynamic_batch``: the engine takes fewer
    (ONNX Runtime runs the actual count).  ``cuda`` / ``counter``: the pycuda driver module and the
    sync counter to use (the self-test's own context; tests' doubles).
    """
    opts = options or RunOptions()
    memory = _memory_for(engine, opts.memory)
    if memory == "numpy":
        return HostExecutor(engine, spec, batch=batch, dynamic_batch=dynamic_batch)
    if memory == "torch":
        if not (engine.backend == "torch" and engine.is_gpu):
            raise BadInput("--memory torch needs the torch backend on a CUDA GPU")
        if opts.gpu_preprocess == "host":
            raise BadInput("gpu_preprocess 'host' is for the pycuda path; the torch CUDA path preprocesses on the GPU "
                           "(auto, kernel or torch-ops)")
        from .torch_cuda import TorchCudaExecutor

        return TorchCudaExecutor(engine, spec, depth=opts.depth, graph=opts.cuda_graph, topk=opts.topk,
                                 mapped_out=opts.mapped_out is not False, mapped_in=opts.mapped_in,
                                 preprocess_impl=opts.gpu_preprocess, batch=batch)
    mapped = None if memory == "pycuda" else memory == "pycuda-mapped"
    return _pycuda_executor(engine, spec, opts, mapped=mapped, batch=batch, cuda=cuda, counter=counter)


def _pycuda_executor(engine: Any, spec: Any, opts: "RunOptions", mapped: "Optional[bool]", batch: int,
                     cuda: Any, counter: Any) -> "Executor":
    """The pycuda executor: GPU preprocessing (the fused kernel) unless it cannot compile here
    (``auto``: then host preprocessing, said once) or is switched off (``host``)."""
    from ..._lazy import require
    from ...trt.cuda import ensure_pycuda_context
    from .pycuda import PycudaExecutor
    from .pycuda_kernel import PycudaGpuExecutor, gpu_preprocess_unavailable

    if opts.gpu_preprocess == "torch-ops":
        raise BadInput("gpu_preprocess 'torch-ops' is for the torch CUDA path; the pycuda path takes auto, kernel or host")
    # `run`/`bench --memory pycuda-*` from the CLI: nobody has made a context current yet
    ensure_pycuda_context(cuda or require("pycuda.driver", "the pycuda runtime path"))
    kw = dict(depth=opts.depth, mapped=mapped, graph=opts.cuda_graph, mapped_out=opts.mapped_out, batch=batch,
              cuda=cuda, counter=counter, topk=opts.topk)
    if opts.gpu_preprocess == "host":
        return PycudaExecutor(engine, spec, **kw)
    why = gpu_preprocess_unavailable(spec, engine, cuda=cuda)
    if not why:
        return PycudaGpuExecutor(engine, spec, **kw)
    if opts.gpu_preprocess == "kernel":
        raise BadInput("GPU preprocessing on the pycuda path needs pycuda's SourceModule and nvcc: {}".format(why))
    ex = PycudaExecutor(engine, spec, **kw)
    ex.preprocess_note = "GPU preprocessing kernel unavailable ({}); host preprocessing on the capture thread".format(why)
    log.warning("%s", ex.preprocess_note)
    return ex
