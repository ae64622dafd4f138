"""Several sources batched into one engine (CPU, ONNX Runtime): per-source results, routing, ends."""
import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from support import optional_module

pytestmark = pytest.mark.needs("onnxruntime", "cv2")
cv2 = optional_module("cv2")

from support.runtime import COLORS, make_batch_bundle, make_bundle, write_sequence_video  # noqa: E402

from jetson_deploy.runtime.options import OutputOptions, RunOptions, SourceOptions  # noqa: E402
from jetson_deploy.errors import BadInput  # noqa: E402
from jetson_deploy.media.sources import Frame, Source  # noqa: E402
from jetson_deploy.runtime.session import run_pipeline  # noqa: E402

A = ["red", "green", "blue", "blue", "red", "green", "green", "blue", "red", "red", "green", "blue"]
B = ["blue", "blue", "red", "green", "red", "blue"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    write_sequence_video(d / "a.avi", A)
    write_sequence_video(d / "b.avi", B, w=40, h=30)  # another frame size: fine on the host path
    return d


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundles")
    return {"one": make_bundle(d / "one"), "dyn": make_batch_bundle(d / "dyn"), "two": make_batch_bundle(d / "two", 2)}


def _rows(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def _single(bundle, clip, out):
    run_pipeline(bundle, str(clip), str(out), options=RunOptions(backend="onnxruntime"), outputs=OutputOptions(metrics_interval=0))
    return _rows(out)


def test_two_file_sources_match_single_source_runs_frame_by_frame(clips, bundles, tmp_path):
    sa, sb, al = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "all.jsonl"
    s = run_pipeline(bundles["dyn"], [str(clips / "a.avi"), str(clips / "b.avi")], ["0=" + str(sa), "1=" + str(sb), str(al)], options=RunOptions(backend="onnxruntime"), outputs=OutputOptions(metrics_interval=0))
    ref_a = _single(bundles["one"], clips / "a.avi", tmp_path / "ra.jsonl")
    ref_b = _single(bundles["one"], clips / "b.avi", tmp_path / "rb.jsonl")
    got_a, got_b = _rows(sa), _rows(sb)
    assert [r["label"] for r in got_a] == [r["label"] for r in ref_a] == A
    assert [r["label"] for r in got_b] == [r["label"] for r in ref_b] == B
    assert [r["source"] for r in got_a] == list(range(len(A))) and {r["stream"] for r in got_a} == {0}
    assert {r["stream"] for r in got_b} == {1}
    for got, ref in ((got_a, ref_a), (got_b, ref_b)):
        assert [r["topk"][0][0] for r in got] == [r["topk"][0][0] for r in ref]
        assert np.allclose([r["score"] for r in got], [r["score"] for r in ref], atol=1e-4)
    everything = _rows(al)  # the unbound sink receives every source, each row says which
    assert sorted((r["stream"], r["index"]) for r in everything) == sorted(
        [(0, i) for i in range(len(A))] + [(1, i) for i in range(len(B))])
    # the short source ended alone; the other went on to its end
    assert s.frames == len(A) + len(B) and s.end_reason == "all sources ended"
    per = {d["index"]: d for d in s.sources}
    assert per[0]["frames"] == len(A) and per[1]["frames"] == len(B)
    assert "end of video" in per[0]["end_reason"] and "end of video" in per[1]["end_reason"]
    assert s.executor["batch"] == 2 and s.executor["dynamic_batch"] is True
    assert all(d["fps"] > 0 and d["dropped"] == 0 for d in s.sources)


def test_more_sources_than_a_fixed_batch_run_in_chunks(clips, bundles, tmp_path):
    """nvinfer's behaviour: 3 sources through a fixed batch 2 are 2 engine calls a round (the second
    padded), every source's results as it would have alone; before, this was refused."""
    sinks = ["{}={}".format(i, tmp_path / "{}.jsonl".format(i)) for i in range(3)]
    s = run_pipeline(bundles["two"], [str(clips / "a.avi")] * 3, sinks, options=RunOptions(backend="onnxruntime"),
                     outputs=OutputOptions(metrics_interval=0))
    assert s.batch == {"rows": 2, "dynamic": False, "chunks": 2}
    for i in range(3):
        assert [r["label"] for r in _rows(tmp_path / "{}.jsonl".format(i))] == A


def test_one_source_through_a_fixed_batch_is_padded_and_identical(clips, bundles, tmp_path):
    s = run_pipeline(bundles["two"], str(clips / "a.avi"), str(tmp_path / "p.jsonl"), options=RunOptions(backend="onnxruntime"), outputs=OutputOptions(metrics_interval=0))
    ref = _single(bundles["one"], clips / "a.avi", tmp_path / "r.jsonl")
    got = _rows(tmp_path / "p.jsonl")
    assert s.executor["batch"] == 2 and s.executor["dynamic_batch"] is False
    strip = lambda rows: [{k: v for k, v in r.items() if k != "latency_ms"} for r in rows]  # noqa: E731
    assert len(got) == len(A)
    assert [r["label"] for r in got] == A and "stream" not in got[0]
    assert np.allclose([r["score"] for r in got], [r["score"] for r in ref], atol=1e-5)
    assert [r["index"] for r in strip(got)] == [r["index"] for r in strip(ref)]


def test_two_sources_through_a_fixed_batch_of_two(clips, bundles, tmp_path):
    run_pipeline(bundles["two"], [str(clips / "a.avi"), str(clips / "b.avi")], ["0=" + str(tmp_path / "a.jsonl"), "1=" + str(tmp_path / "b.jsonl")], options=RunOptions(backend="onnxruntime"), outputs=OutputOptions(metrics_interval=0))
    assert [r["label"] for r in _rows(tmp_path / "a.jsonl")] == A
    assert [r["label"] for r in _rows(tmp_path / "b.jsonl")] == B


class GatedSource(Source):
    """A live source that delivers nothing until ``gate`` is set, then ``n`` red frames and ends."""

    scheme = "gated"
    live = True

    def __init__(self, gate, n=2):
        super().__init__("gated://", {"width": 32, "height": 24})
        self.gate = gate
        self.n = n
        self.sent = 0

    def open_impl(self):
        pass

    def read_impl(self, timeout):
        if not self.gate.wait(timeout or 0.1):
            return None  # stalled: nothing yet
        if self.sent >= self.n:
            self.end("gate drained")
            return None
        self.sent += 1
        return Frame(np.full((24, 32, 3), COLORS["red"], np.uint8))


def test_a_stalled_source_does_not_hold_the_other_back(clips, bundles):
    gate = threading.Event()
    seen = {0: 0, 1: 0}
    at_release = {}

    def on_result(frame, res):
        seen[frame.stream] += 1
        if frame.stream == 0 and seen[0] == len(A):  # every frame of source 0 is out: now open the gate
            at_release.update(seen)
            gate.set()

    s = run_pipeline(bundles["dyn"], [str(clips / "a.avi"), GatedSource(gate)], "null://", options=RunOptions(backend="onnxruntime"), inputs=SourceOptions(batch_timeout=0.02), outputs=OutputOptions(metrics_interval=0, on_result=on_result))
    assert at_release == {0: len(A), 1: 0}  # source 0 finished while source 1 had delivered nothing
    per = {d["index"]: d for d in s.sources}
    assert per[0]["frames"] == len(A) and per[1]["frames"] == 2 and per[1]["end_reason"] == "gate drained"


def test_a_stalled_source_ends_alone_after_the_stall_timeout(clips, bundles):
    s = run_pipeline(bundles["dyn"], [str(clips / "a.avi"), GatedSource(threading.Event())], "null://", options=RunOptions(backend="onnxruntime"), inputs=SourceOptions(batch_timeout=0.01, stall_timeout=0.3), outputs=OutputOptions(metrics_interval=0))
    per = {d["index"]: d for d in s.sources}
    assert per[0]["frames"] == len(A) and per[1]["frames"] == 0
    assert per[1]["end_reason"].startswith("source stalled") and s.end_reason == "all sources ended"


def test_stop_on_first_end(clips, bundles):
    s = run_pipeline(bundles["dyn"], ["synthetic://32x24?pool=2", str(clips / "b.avi")], "null://", options=RunOptions(backend="onnxruntime"), inputs=SourceOptions(stop_on_first_end=True), outputs=OutputOptions(metrics_interval=0))
    assert "source 1 ended" in s.end_reason and "--stop-on-first-end" in s.end_reason
    per = {d["index"]: d for d in s.sources}
    assert per[1]["frames"] == len(B) and per[0]["frames"] >= 1


def test_sink_bound_to_a_missing_source_is_refused(clips, bundles, tmp_path):
    with pytest.raises(BadInput, match="source 2 does not exist"):
        run_pipeline(bundles["dyn"], [str(clips / "a.avi"), str(clips / "b.avi")], "2=" + str(tmp_path / "x.jsonl"), options=RunOptions(backend="onnxruntime"))


def test_max_frames_counts_every_source(bundles):
    s = run_pipeline(bundles["dyn"], ["synthetic://32x24", "synthetic://32x24?seed=3"], "null://", options=RunOptions(backend="onnxruntime", max_frames=9), outputs=OutputOptions(metrics_interval=0))
    assert s.frames == 9 and s.end_reason == "max frames reached (9)"
    assert sum(d["frames"] for d in s.sources) == 9


def test_cli_run_several_sources_json(clips, bundles, tmp_path):
    from support import cli_runner

    from jetson_deploy.cli import cli

    res = cli_runner().invoke(cli, ["run", str(bundles["dyn"]), "--source", str(clips / "a.avi"), "--source",
                                     str(clips / "b.avi"), "--sink", "0=" + str(tmp_path / "a.jsonl"), "--sink",
                                     "1=" + str(tmp_path / "b.jsonl"), "--backend", "onnxruntime", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout.strip().splitlines()[-1])
    assert d["frames"] == len(A) + len(B) and [x["frames"] for x in d["sources"]] == [len(A), len(B)]
    assert [r["label"] for r in _rows(tmp_path / "b.jsonl")] == B


def test_bench_several_sources_reports_batched_and_single(bundles):
    from jetson_deploy.bench import run_bench

    r = run_bench(bundles["dyn"], iterations=20, warmup=2, source=["synthetic://64x48", "synthetic://64x48?seed=2"], options=RunOptions(backend="onnxruntime"))
    assert r["batch"] == 2 and r["pipeline_fps"] > 0 and r["model_fps"] > 0 and r["engine_fps"] > 0
    assert r["single_stream_fps"] > 0 and r["ratio_single"] == pytest.approx(r["pipeline_fps"] / r["single_stream_fps"], rel=1e-2)
    assert [x["frames"] for x in r["sources"]] == [20, 20]


@pytest.mark.parametrize("gpu_pre", ["kernel", "host"], ids=["kernel-per-row", "host-rows"])
def test_pycuda_path_batches_rows_at_their_offsets(clips, bundles, tmp_path, monkeypatch, gpu_pre):
    """The pycuda frame path (pycuda double, a device-pointer engine computing with ONNX Runtime at a
    fixed batch 2): per row, a kernel launch (or an H2D copy) at the row's offset; one event a batch."""
    from doubles import pycuda_double
    from support.runtime import PointerEngine
    from test_runtime_gpu_preprocess import install_compiler

    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.runtime.backends import create_engine
    from jetson_deploy.runtime.memory import make_context

    # PointerEngine and the stand-in kernel run on their stream's queue, after the copies
    # enqueued before them (as a GPU would)
    drv = pycuda_double.install(monkeypatch, integrated=False)
    launches = []
    install_compiler(monkeypatch, launches)
    write_sequence_video(tmp_path / "b64.avi", B)  # the GPU path batches frames of one size
    ctx = make_context(cuda=drv)
    try:
        eng = PointerEngine(create_engine(open_bundle(bundles["two"]), RunOptions(backend="onnxruntime")))
        s = run_pipeline(bundles["two"], [str(clips / "a.avi"), str(tmp_path / "b64.avi")], ["0=" + str(tmp_path / "a.jsonl"), "1=" + str(tmp_path / "b.jsonl")], engine=eng, options=RunOptions(memory="pycuda-pinned", depth=3, gpu_preprocess=gpu_pre))
    finally:
        ctx.pop()
    assert [r["label"] for r in _rows(tmp_path / "a.jsonl")] == A
    assert [r["label"] for r in _rows(tmp_path / "b.jsonl")] == B
    assert s.executor["batch"] == 2
    if gpu_pre == "kernel":
        assert s.executor["preprocess"] == "cuda-kernel (pycuda)" and len(launches) % 2 == 0 and launches


@pytest.mark.needs("torch")
def test_torch_cpu_engine_runs_a_dynamic_batch_program_at_batch_n(clips, tmp_path):
    """The torch backend builds a --dynamic-batch bundle's program at batch N (``create_engine(batch=N)``)."""
    b = make_batch_bundle(tmp_path / "dynpt2", pt2=True)
    write_sequence_video(tmp_path / "b64.avi", B)
    s = run_pipeline(b, [str(clips / "a.avi"), str(tmp_path / "b64.avi")], ["0=" + str(tmp_path / "a.jsonl"), "1=" + str(tmp_path / "b.jsonl")], options=RunOptions(backend="torch", device="cpu"))
    assert s.backend == "torch" and s.executor["batch"] == 2
    assert [r["label"] for r in _rows(tmp_path / "a.jsonl")] == A
    assert [r["label"] for r in _rows(tmp_path / "b.jsonl")] == B
