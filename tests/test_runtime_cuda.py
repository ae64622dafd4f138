"""The GPU paths on a real CUDA device (skipped without one): torch CUDA executor (graphs, streams,
sync-free loop) and the pycuda memory path with real pycuda."""
import json

import numpy as np
import pytest

from support import optional_module

pytestmark = pytest.mark.needs("torch", "cv2", "cuda")
torch = optional_module("torch")

from support.runtime import make_batch_bundle, make_bundle, write_color_video, write_sequence_video  # noqa: E402

from jetson_deploy.runtime.options import RunOptions  # noqa: E402
from jetson_deploy.runtime.session import run_pipeline  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("cuda") / "b", pt2=True)


def _rows(p):
    return [json.loads(x) for x in p.read_text().splitlines()]


@pytest.mark.parametrize("graph,mapped_out", [(True, False), (True, True), (False, False)])
def test_torch_cuda_video_labels_under_sync_debug_error(bundle, tmp_path, graph, mapped_out):
    seq = write_color_video(tmp_path / "c.avi", n=24, w=320, h=240)
    s = run_pipeline(bundle, str(tmp_path / "c.avi"), str(tmp_path / "p.jsonl"), options=RunOptions(backend="torch", device="cuda", cuda_graph=graph, sync_debug="error", mapped_out=mapped_out))
    assert s.executor["mapped_out"] is mapped_out
    assert s.frames == 24 and s.executor["executor"] == "torch-cuda" and s.executor["cuda_graph"] is graph
    assert s.executor["memory"] == "torch-pinned"
    assert [r["label"] for r in _rows(tmp_path / "p.jsonl")] == seq


def test_torch_cuda_synthetic_every_sink(bundle, tmp_path):
    s = run_pipeline(bundle, "synthetic://1280x720", [str(tmp_path / "a.avi"), str(tmp_path / "a.jsonl"), "null://"], options=RunOptions(backend="torch", device="cuda", max_frames=20, sync_debug="error"))
    assert s.frames == 20 and len(_rows(tmp_path / "a.jsonl")) == 20


@pytest.mark.needs("pycuda.driver")
def test_pycuda_path_on_real_pycuda(bundle, tmp_path):
    import pycuda.driver  # noqa: F401
    from jetson_deploy.runtime.memory import make_context

    seq = write_color_video(tmp_path / "c.avi", n=15, w=64, h=48)
    ctx = make_context()
    try:
        for mem in ("pycuda-pinned", "pycuda-mapped"):
            s = run_pipeline(bundle, str(tmp_path / "c.avi"), str(tmp_path / "p.jsonl"), options=RunOptions(backend="torch", device="cuda", memory=mem))
            assert s.executor["memory"] == mem and s.frames == 15
            assert s.executor["mapped_out"] is True  # 16-byte logits: the engine writes into mapped host memory
            # per-slot graphs on both: with GPU preprocessing the engine reads a fixed device input
            # (the kernel reads the mapped frame); host preprocessing graphs only the pinned path
            assert s.executor["cuda_graph"] is (mem == "pycuda-pinned" or s.executor.get("gpu_preprocess") is True)
            assert [r["label"] for r in _rows(tmp_path / "p.jsonl")] == seq
            assert set(s.syncs["in_loop"]) <= {"event.synchronize"}
            assert s.syncs["in_loop"].get("event.synchronize", 0) <= 15 - 3 + 1
    finally:
        ctx.pop()


@pytest.mark.needs("pycuda.driver")
def test_graph_launcher_relaunches_the_captured_work_on_real_cuda():
    """CudaGraph.launcher(): the driver's cuGraphLaunch on torch's instantiated graph (where torch
    exposes it) runs the captured work on the graph's stream, as replay() does."""
    import pycuda.driver as cuda

    from jetson_deploy.runtime.cuda_graph import CudaGraph
    from jetson_deploy.runtime.memory import make_context

    torch.zeros(1, device="cuda")
    ctx = make_context()
    try:
        ps = cuda.Stream()
        s = torch.cuda.ExternalStream(ps.handle)
        x = torch.zeros(8, device="cuda")
        with torch.cuda.stream(s):
            x.add_(1)
        s.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=s, capture_error_mode="thread_local"):
            x.add_(2)
        cg = CudaGraph(g, s)
        launch = cg.launcher()
        assert (launch != cg.replay) is hasattr(g, "raw_cuda_graph_exec")
        for _ in range(5):
            launch()
        cg.replay()
        ps.synchronize()
        assert x.cpu().tolist() == [13.0] * 8  # the warm-up's 1, then 6 launches of +2 (capture runs nothing)
    finally:
        ctx.pop()


@pytest.mark.needs("pycuda.driver")
def test_pycuda_kernel_in_slot_graphs_follows_a_size_change_on_real_cuda(bundle, tmp_path):
    """Discrete GPU, pinned frames: kernel + engine + copy-out in one graph per slot; frames of a new
    size mid-stream re-capture them (labels stay right)."""
    import cv2

    from jetson_deploy.runtime.memory import make_context

    folder = tmp_path / "imgs"
    folder.mkdir()
    colours = {"blue": (255, 0, 0), "green": (0, 255, 0), "red": (0, 0, 255)}
    want = []
    for i, (name, (w, h)) in enumerate([("red", (64, 48)), ("green", (64, 48)), ("blue", (640, 360)),
                                        ("red", (640, 360)), ("green", (33, 90)), ("blue", (64, 48))] * 2):
        cv2.imwrite(str(folder / "{:02d}.png".format(i)), np.full((h, w, 3), colours[name], np.uint8))
        want.append(name)
    ctx = make_context()
    try:
        s = run_pipeline(bundle, str(folder), str(tmp_path / "p.jsonl"), options=RunOptions(backend="torch", device="cuda", memory="pycuda-pinned", gpu_preprocess="kernel"))
    finally:
        ctx.pop()
    assert s.executor["kernel_in_graph"] is True and s.executor["cuda_graph"] is True
    assert [r["label"] for r in _rows(tmp_path / "p.jsonl")] == want


@pytest.mark.parametrize("mapped_in", [False, True])
def test_torch_cuda_four_sources_batched_match_single_runs(tmp_path, mapped_in):
    """4 sources at batch 4 through the torch CUDA executor (graphs, sync_debug error): per-source
    labels identical to each source alone; 3 sources into batch 4 pad with a real row."""
    b = make_batch_bundle(tmp_path / "dyn", pt2=True)
    seqs = [["red", "green", "blue"] * 3, ["blue"] * 4 + ["green"] * 5, ["green", "red"] * 4, ["red"] * 7]
    clips = []
    for k, q in enumerate(seqs):
        write_sequence_video(tmp_path / "c{}.avi".format(k), q, w=320, h=240)
        clips.append(str(tmp_path / "c{}.avi".format(k)))
    for n in (4, 3):
        sinks = ["{}={}".format(k, tmp_path / "o{}-{}.jsonl".format(n, k)) for k in range(n)]
        s = run_pipeline(b, clips[:n], sinks, options=RunOptions(backend="torch", device="cuda", sync_debug="error", mapped_in=mapped_in))
        assert s.executor["executor"] == "torch-cuda" and s.executor["batch"] == n and s.executor["cuda_graph"]
        for k in range(n):
            assert [r["label"] for r in _rows(tmp_path / "o{}-{}.jsonl".format(n, k))] == seqs[k]
