"""The torch path compiled like an engine: ``torch.compile`` (inductor) built once per GPU, cached.

TensorRT's model is build once per device, cache, load fast; this module gives the torch path the
same shape.  The bundle's program is compiled with inductor (``fullgraph``), with a dynamic batch
axis when the bundle has one, and inductor's portable cache artifacts
(``torch.compiler.save_cache_artifacts``) go into the engine cache (:mod:`..bundle.engine_cache`:
the same checksums, LRU and size bound as TensorRT plans), keyed by bundle sha256, GPU name and SM,
torch and Triton versions, precision and batch/profile.  A later load hands them back to inductor
(``load_cache_artifacts``) before compiling, which then hits its caches.

Measured on an H100 with torch 2.11 (``scripts/bench_torch_compile.py``, ResNet-18 fp16 batch 1):
eager 2,865 FPS, compiled 5,616 FPS; first call 9.6 s cold, 2.4 s with the artifacts loaded in a fresh
process.  Two choices follow from measurements there: no inductor ``freezing`` (with it the FX graph
cache is bypassed and a warm first call took 5.9 s, for 3% more speed), and no AOTInductor package
(``aoti_load_package`` segfaulted in both processes, cold and warm, on torch 2.11 / CUDA 13).

Compiles happen at load, never in the frame loop: the module is called once at every shape the run
will use before the executor captures its CUDA graphs; ``recompiles()`` counts graphs compiled after
that (0 in a steady run; ``run --json`` reports it).
"""
import logging
import os
import time
from typing import Any, Dict, Optional

from ..vocab import DYNAMIC_BATCH_MAX

log = logging.getLogger(__name__)

#: typical first-load compile time of a ResNet-18 on a desktop GPU (said before the first compile)
TYPICAL_COMPILE_S = 10


def gpu_identity(torch: Any, device: Any) -> "Dict[str, Any]":
    """What a compiled artifact is only valid for: the GPU, its SM, torch and Triton versions."""
    name, sm = "cpu", None
    if getattr(device, "type", str(device)) == "cuda":
        idx = device.index if getattr(device, "index", None) is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(idx)
        major, minor = torch.cuda.get_device_capability(idx)
        sm = major * 10 + minor
    try:
        import triton  # noqa: F401  (inductor's GPU code generator; its version changes the kernels)

        triton_version = getattr(triton, "__version__", "?")
    except ImportError:
        triton_version = None
    return {"gpu": name, "sm": sm, "torch": torch.__version__, "triton": triton_version}


def artifact_fields(bundle_sha256: str, identity: "Dict[str, Any]", precision: str, batch: int,
                    dynamic: bool) -> "Dict[str, Any]":
    """The cache key's fields: a dynamic program is keyed by its profile (1..max), a fixed one by its batch."""
    fields = dict(identity, kind="torch-inductor", bundle=bundle_sha256, precision=precision)
    fields["batch"] = "1..{}".format(max(DYNAMIC_BATCH_MAX, batch)) if dynamic else int(batch)
    return fields


def unique_graphs(torch: Any) -> int:
    """Graphs dynamo has compiled in this process (a recompile adds one)."""
    stats = torch._dynamo.utils.counters.get("stats", {})
    return int(stats.get("unique_graphs", 0))


class CompiledModule:
    """A module compiled by inductor at load (cache artifacts loaded first when present).

    ``how`` is ``compiled`` (built and stored), ``cache-hit`` (artifacts from the engine cache) or
    ``eager`` (compiling failed: ``note`` says why, the module runs as it is); ``load_s`` the time to
    the first compiled call; ``recompiles()`` graphs compiled since the load.
    """

    def __init__(self, torch: Any, module: Any, example: Any, fields: "Dict[str, Any]", cache: Any,
                 dynamic: bool, backend: str = "inductor") -> None:
        self.torch, self.module, self.fields, self.cache, self.dynamic = torch, module, fields, cache, dynamic
        self.backend = backend
        self.fn: Any = module
        self.how, self.note, self.load_s, self.key = "eager", "", 0.0, ""
        self._graphs_at_load = 0
        self._build(example)

    def __call__(self, x: Any) -> Any:
        return self.fn(x)

    def _build(self, example: Any) -> None:
        from ..bundle.engine_cache import artifact_key

        torch = self.torch
        self.key = artifact_key(self.fields)
        t0 = time.perf_counter()
        with self.cache.lock(self.key):
            hit = self._load_artifacts()
            if not hit:
                log.info("compiling for %s (first load, about %d s; cached for the next)", self.fields["gpu"],
                         TYPICAL_COMPILE_S)
            try:
                fn = torch.compile(self.module, fullgraph=True, dynamic=True if self.dynamic else None,
                                   backend=self.backend)
                self._warm(fn, example)
            except Exception as exc:  # a model inductor cannot compile: eager, said in one line
                self.note = "torch.compile failed ({}); running eager".format(_one_line(exc))
                log.warning("torch backend: %s", self.note)
                torch._dynamo.reset()
                return
            self.fn, self.how = fn, "cache-hit" if hit else "compiled"
            if not hit:
                self._store()
        self.load_s = time.perf_counter() - t0
        self._graphs_at_load = unique_graphs(torch)

    def _warm(self, fn: Any, example: Any) -> None:
        """Compile now, at every shape the run will call (never inside the frame loop)."""
        torch = self.torch
        with torch.inference_mode():
            # an inference tensor, as every caller's input is (the executors make their model inputs in
            # inference mode, and TorchEngine.infer does): dynamo guards on the difference, and compiling
            # both kinds doubled the first load (26.8 s against 13.3 s on an H100)
            x = example.clone()
            if self.dynamic:
                torch._dynamo.mark_dynamic(x, 0, min=1, max=max(DYNAMIC_BATCH_MAX, int(example.shape[0])))
            fn(x)
        if example.is_cuda:
            torch.cuda.synchronize(example.device)

    def _load_artifacts(self) -> bool:
        """Hand inductor the cached artifacts (True), or False: none, or unusable (removed, rebuilt)."""
        path = self.cache.get(self.key)  # checksummed: a corrupt entry is removed there, with one line
        if path is None:
            return False
        why = ""
        try:
            # None when torch cannot read them (it logs its own warning and returns, it does not raise)
            if self.torch.compiler.load_cache_artifacts(path.read_bytes()) is None:
                why = "torch cannot read them"
        except Exception as exc:  # another torch's format, a truncated blob that passed no check
            why = _one_line(exc)
        if why:
            log.warning("cached compiled model %s does not load (%s): removed, compiling again", path, why)
            self.cache.remove(self.key)
            return False
        return True

    def _store(self) -> None:
        saved = self.torch.compiler.save_cache_artifacts()
        if not saved or not saved[0]:
            log.info("torch.compile left no cache artifacts to store; the next load compiles again")
            return
        try:
            self.cache.put(self.key, saved[0], dict(self.fields))
        except Exception as exc:  # a read-only or full cache: this run is fine, the next compiles again
            log.warning("could not store the compiled model in %s (%s)", self.cache.root, _one_line(exc))

    def recompiles(self) -> int:
        return max(unique_graphs(self.torch) - self._graphs_at_load, 0) if self.how != "eager" else 0

    def describe(self) -> "Dict[str, Any]":
        d: "Dict[str, Any]" = {"compile": self.how, "compile_load_s": round(self.load_s, 3),
                               "recompiles": self.recompiles()}
        if self.note:
            d["compile_note"] = self.note
        return d


def compile_module(torch: Any, module: Any, example: Any, bundle_sha256: str, precision: str, dynamic: bool,
                   cache_dir: "Optional[str]" = None) -> "CompiledModule":
    """Compile ``module`` for ``example``'s shape (and the batch range when ``dynamic``), through the cache."""
    from ..bundle.engine_cache import EngineCache

    fields = artifact_fields(bundle_sha256, gpu_identity(torch, example.device), precision, int(example.shape[0]),
                             dynamic)
    return CompiledModule(torch, module, example, fields, EngineCache(cache_dir), dynamic)


def keep_inductor_cache(cache: Any) -> "Optional[str]":
    """Point inductor's own caches (``TORCHINDUCTOR_CACHE_DIR``; Triton's cubins live under it) at
    ``inductor/`` in the engine cache unless the user chose a place: inductor's default is under
    /tmp, which a reboot empties, and the portable artifacts alone leave the kernels to be built
    again (measured on the CPU: a warm first call of 12.1 s from the artifacts alone, 2.6 s with
    this directory kept, 15.0 s cold).  Call it before torch loads the program: ``torch.export.load``
    already settles inductor's default.  Returns the directory set, or None (left as it was)."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return None
    from ..bundle.engine_cache import INDUCTOR_DIR
    from ..errors import BadInput

    try:
        d = str(cache.tool_dir(INDUCTOR_DIR))
    except (BadInput, OSError) as exc:  # a read-only cache: inductor keeps its default, this run is fine
        log.info("inductor's cache stays in its default place (%s)", exc)
        return None
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = d  # how inductor is told (it reads the variable at each use)
    return d


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return "{}: {}".format(type(exc).__name__, text.splitlines()[0][:240]) if text else type(exc).__name__


def compile_wanted(option: "Optional[bool]", is_gpu: bool) -> bool:
    """``--compile`` default: on for CUDA devices, off on the CPU (ONNX Runtime is the CPU engine)."""
    return bool(is_gpu) if option is None else bool(option)


__all__ = ["CompiledModule", "compile_module", "compile_wanted", "artifact_fields", "gpu_identity", "keep_inductor_cache",
           "unique_graphs"]


def measure_loads(bundle_path: str, options: Any, sources: int = 1) -> "Dict[str, Any]":
    """First load of a compiled torch engine, each in a fresh process: cold (an empty engine cache),
    warm (the engine cache the cold load filled, inductor's directory in it included: what a
    rebooted board sees) and from the portable artifacts alone (a fresh inductor directory: an
    engine cache copied from another board of the same kind).  ``{"cold_s", "warm_s",
    "artifacts_s", "<step>_how", "ratio"}``, ``ratio`` = warm / cold."""
    import json
    import subprocess
    import sys
    import tempfile

    out: "Dict[str, Any]" = {}
    with tempfile.TemporaryDirectory(prefix="jd-load-") as tmp:
        for step in ("cold", "warm", "artifacts"):
            env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
            env["JETSON_DEPLOY_CACHE"] = os.path.join(tmp, "engines")
            if step == "artifacts":
                env["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(tmp, "inductor-fresh")
            cmd = [sys.executable, "-m", "jetson_deploy.runtime.torch_compile", bundle_path, "--sources", str(sources)]
            if options.device:
                cmd += ["--device", options.device]
            r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
            lines = r.stdout.strip().splitlines()
            if r.returncode != 0 or not lines:
                out[step + "_error"] = (r.stderr.strip().splitlines() or ["exit {}".format(r.returncode)])[-1][:300]
                continue
            rec = json.loads(lines[-1])
            out[step + "_s"], out[step + "_how"] = rec["first_load_s"], rec["compile"]
    if out.get("cold_s") and out.get("warm_s"):
        out["ratio"] = round(out["warm_s"] / out["cold_s"], 3)
    return out


def _main(argv: "Optional[Any]" = None) -> int:
    """``python -m jetson_deploy.runtime.torch_compile BUNDLE``: one compiled load, timed (for
    :func:`measure_loads`); prints ``{"first_load_s", "compile", ...}``."""
    import argparse
    import json

    from ..bundle import open_bundle
    from .backends import create_engine
    from .options import RunOptions

    ap = argparse.ArgumentParser(prog="python -m jetson_deploy.runtime.torch_compile")
    ap.add_argument("bundle")
    ap.add_argument("--device", default=None)
    ap.add_argument("--sources", type=int, default=1)
    a = ap.parse_args(argv)
    with open_bundle(a.bundle) as b:
        eng = create_engine(b, RunOptions(backend="torch", device=a.device, compile=True), batch=a.sources)
        t0 = time.perf_counter()
        eng.activate()
        first = time.perf_counter() - t0
        rec = dict(eng.describe(), first_load_s=round(first, 3))
        eng.deactivate()
    print(json.dumps({k: rec.get(k) for k in ("first_load_s", "compile", "compile_load_s", "device", "precision")}))
    return 0


if __name__ == "__main__":
    import sys as _sys

    _sys.exit(_main())
