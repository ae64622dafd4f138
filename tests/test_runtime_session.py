"""The run session: every backend this machine can run x {1, 2, 4} sources x {fixed batch 1, fixed
batch 4, dynamic}, each source's results identical to that source run alone (issue #23).

Fixed batch B with N > B sources runs ceil(N/B) engine calls a round (DeepStream nvinfer's
behaviour), B > N pads; a dynamic-batch bundle runs N at once.  TensorRT runs through the doubles
(TensorRT 10.x tensor API, pycuda), with host preprocessing and with the fused kernel's stand-in.
"""
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.needs("onnx", "onnxruntime", "cv2")

from support.runtime import make_batch_bundle, make_bundle, write_sequence_video  # noqa: E402

from jetson_deploy.errors import RunFailed  # noqa: E402
from jetson_deploy.runtime.options import OutputOptions, RunOptions  # noqa: E402
from jetson_deploy.runtime.session import Session, open_session, run_pipeline  # noqa: E402

#: four clips of one size (the GPU paths batch frames of one size), each its own colour sequence
CLIPS = [["red", "green", "blue", "red", "blue"],
         ["blue", "blue", "red", "green", "green"],
         ["green", "red", "red", "blue", "green"],
         ["blue", "green", "red", "green", "red"]]
BATCHES = {"fixed1": 1, "fixed4": 4, "dynamic": "N"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return [str(write_sequence_video(d / "c{}.avi".format(i), names) and d / "c{}.avi".format(i))
            for i, names in enumerate(CLIPS)]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    from jetson_deploy._lazy import has_module

    d = tmp_path_factory.mktemp("bundles")
    pt2 = has_module("torch")
    return {k: (make_bundle(d / k, pt2=pt2) if v == 1 else make_batch_bundle(d / k, v, pt2=pt2))
            for k, v in BATCHES.items()}


def _rows(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def _backend(name, monkeypatch, tmp_path):
    """RunOptions for a backend, with its doubles installed; None where it cannot run here."""
    if name == "onnxruntime":
        return RunOptions(backend="onnxruntime")
    if name == "torch-cpu":
        pytest.importorskip("torch", reason="needs torch (not installed)")
        return RunOptions(backend="torch", device="cpu")
    if name == "torch-cuda":
        return RunOptions(backend="torch", device="cuda")
    from doubles import pycuda_double, tensorrt_double as trtd

    pycuda_double.install(monkeypatch, integrated=False)
    trtd.install(monkeypatch, "10.x")
    pre = "host"
    if name == "tensorrt-kernel":
        from test_runtime_gpu_preprocess import install_compiler

        install_compiler(monkeypatch, [])
        pre = "kernel"
    # no CUDA graphs: the doubles' stream handles are not real streams torch could capture on
    return RunOptions(backend="tensorrt", cache_dir=str(tmp_path / "engines"), gpu_preprocess=pre, cuda_graph=False)


def _run(bundle, sources, sinks, options):
    from jetson_deploy.runtime.memory import make_context

    ctx = None
    if options.backend == "tensorrt":
        import pycuda.driver as drv  # the double

        ctx = make_context(cuda=drv)
    try:
        return run_pipeline(bundle, sources, sinks, options=options, outputs=OutputOptions(metrics_interval=0))
    finally:
        if ctx is not None:
            ctx.pop()


BACKENDS = ["onnxruntime", "torch-cpu", "tensorrt-host", "tensorrt-kernel",
            pytest.param("torch-cuda", marks=pytest.mark.needs("cuda"))]


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_source_count_through_every_batch_matches_each_source_alone(backend, batch, n, clips, bundles,
                                                                          monkeypatch, tmp_path):
    options = _backend(backend, monkeypatch, tmp_path)
    sinks = ["{}={}".format(i, tmp_path / "s{}.jsonl".format(i)) for i in range(n)]
    s = _run(bundles[batch], clips[:n], sinks, options)
    for i in range(n):
        alone = tmp_path / "alone{}.jsonl".format(i)
        _run(bundles["fixed1"], [clips[i]], [str(alone)], options)
        got, ref = _rows(tmp_path / "s{}.jsonl".format(i)), _rows(alone)
        assert [r["label"] for r in got] == [r["label"] for r in ref] == CLIPS[i], (backend, batch, n, i)
        assert [r["index"] for r in got] == list(range(len(CLIPS[i])))
        assert np.allclose([r["topk"][0][1] for r in got], [r["topk"][0][1] for r in ref], atol=1e-4)
    assert s.frames == sum(len(c) for c in CLIPS[:n]) and s.backend == options.backend
    rows = {"fixed1": 1, "fixed4": 4, "dynamic": n}[batch]
    # the torch backend builds a dynamic-batch program at the run's batch: a fixed shape from then on
    dynamic = batch == "dynamic" and not backend.startswith("torch")
    assert s.batch == {"rows": rows, "dynamic": dynamic, "chunks": -(-n // rows)}


def test_chunks_a_round_follow_nvinfer(bundles):
    """ceil(N / B) engine calls a round; a dynamic batch runs N at once (up to its maximum)."""
    for batch, n, chunks in (("fixed1", 4, 4), ("fixed1", 1, 1), ("fixed4", 2, 1), ("dynamic", 4, 1)):
        with open_session(bundles[batch], RunOptions(backend="onnxruntime"), sources=n) as s:
            assert s.chunks == chunks and s.describe()["chunks"] == chunks
            assert ("engine calls a round" in s.describe_batch()) is (chunks > 1)


def test_batch_former_serves_every_source_before_any_twice():
    """A batch smaller than the sources takes the next ones each call (the chunks of a round)."""
    import threading

    from jetson_deploy.runtime.batching import BatchFormer, SourceState

    class Cap:
        finished = False

        def __init__(self):
            self.n = 0

        def get(self, timeout=0):
            self.n += 1
            return self.n

    states = [SourceState(i, object()) for i in range(5)]
    for st in states:
        st.cap = Cap()
    former = BatchFormer(states, threading.Event(), 0.0)
    served = [[st.index for st, _ in former.form(2, 0.0)] for _ in range(5)]
    assert served == [[0, 1], [2, 3], [4, 0], [1, 2], [3, 4]]


class FailingEngine:
    """An ONNX Runtime engine whose third call raises, as a real engine failing mid-run would."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def infer(self, feeds):
        self.calls += 1
        if self.calls == 3:
            raise AssertionError("Guard failed: x.size()[0] == 1")
        return self.inner.infer(feeds)


def test_an_engine_failing_mid_run_is_one_line_naming_the_bundle_and_batch(bundles, clips, tmp_path):
    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.runtime.backends import create_engine

    b = open_bundle(bundles["fixed4"])
    eng = FailingEngine(create_engine(b, RunOptions(backend="onnxruntime")))
    with pytest.raises(RunFailed) as e:
        run_pipeline(b, clips[:2], str(tmp_path / "out.jsonl"), engine=eng, options=RunOptions(backend="onnxruntime"))
    msg = str(e.value)
    assert "\n" not in msg and str(bundles["fixed4"]) in msg and "batch 4" in msg and "2 source(s)" in msg
    assert "AssertionError: Guard failed" in msg
    # the .jsonl is a log: what was written before the failure stays, whole lines only
    assert all(json.loads(x)["task"] for x in (tmp_path / "out.jsonl").read_text().splitlines())


def test_session_closes_in_reverse_order_also_after_an_error(bundles):
    order = []

    class Spy(Session):
        def _activate_impl(self):
            super()._activate_impl()
            for what, obj in (("executor", self.executor), ("engine", self.engine)):
                real = getattr(obj, "close" if what == "executor" else "deactivate")

                def wrapped(real=real, what=what):
                    order.append(what)
                    return real()
                setattr(obj, "close" if what == "executor" else "deactivate", wrapped)

    with pytest.raises(ZeroDivisionError):
        with Spy(bundles["fixed1"], RunOptions(backend="onnxruntime")) as s:
            assert s.active and s.executor is not None
            1 / 0
    assert order == ["executor", "engine"] and not s.active and s.engine is None


def test_a_verified_bundle_is_hashed_once_for_a_signed_run(bundles, tmp_path, monkeypatch):
    """``run --key``: the signature check opens and hashes the bundle; the run uses that object."""
    import subprocess
    import sys

    import shutil

    from jetson_deploy.bundle.sign import keygen, sign_bundle

    b = tmp_path / "signed"
    shutil.copytree(str(bundles["fixed1"]), str(b))
    keys = keygen(tmp_path / "k")
    sign_bundle(b, keys["private_key"])
    pub = keys["public_key"]
    code = ("import sys, runpy\n"
            "from jetson_deploy._files import DirHandle\n"
            "calls = []\n"
            "real = DirHandle.sha256\n"
            "DirHandle.sha256 = lambda self, rel: calls.append(rel) or real(self, rel)\n"
            "from jetson_deploy.cli import cli\n"
            "try:\n"
            "    cli.main(sys.argv[1:], standalone_mode=False)\n"
            "finally:\n"
            "    sys.stderr.write('HASHED %s\\n' % sorted(calls))\n")
    out = subprocess.run([sys.executable, "-c", code, "run", str(b), "--source", "synthetic://32x24?pool=2", "--backend",
                          "onnxruntime", "--max-frames", "3", "--key", str(pub)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    hashed = eval(out.stderr.split("HASHED ", 1)[1].strip())
    names = sorted(Path(p).name for p in hashed)
    artifacts = sorted(a["path"] for a in json.loads((b / "manifest.json").read_text())["artifacts"])
    assert names == artifacts and "model.onnx" in names, hashed  # each artifact hashed once
