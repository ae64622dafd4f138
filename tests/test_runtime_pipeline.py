"""The frame loop end to end on the CPU (ONNX Runtime): every source kind that runs here, every sink."""
import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from support import optional_module

pytestmark = pytest.mark.needs("onnxruntime", "cv2")
cv2 = optional_module("cv2")

from support.runtime import LABELS, SlowEngine, make_bundle, write_color_images, write_color_video  # noqa: E402

from jetson_deploy.runtime.options import OutputOptions, RunOptions, SourceOptions  # noqa: E402
from jetson_deploy.errors import BadInput, CheckFailed  # noqa: E402
from jetson_deploy.runtime.session import run_pipeline  # noqa: E402
from jetson_deploy.media.sources import Frame, Source  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("rt") / "colors-1.0.0")


@pytest.fixture
def metric_lines():
    """The metrics log lines of a run (a handler on the logger itself: the CLI stops propagation)."""
    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logger = logging.getLogger("jetson_deploy.runtime.metrics")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def _rows(path: Path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_video_file_to_every_sink(bundle, tmp_path):
    seq = write_color_video(tmp_path / "clip.avi", n=18)
    out_v, out_j = tmp_path / "annotated.avi", tmp_path / "pred.jsonl"
    s = run_pipeline(bundle, str(tmp_path / "clip.avi"), [str(out_v), str(out_j), "null://"], options=RunOptions(backend="onnxruntime"))
    assert s.frames == 18 and s.dropped == 0 and s.backend == "onnxruntime"
    rows = _rows(out_j)
    assert [r["index"] for r in rows] == list(range(18))
    assert [r["source"] for r in rows] == list(range(18))  # frame number for video files
    assert [r["label"] for r in rows] == seq  # real classification of the decoded frames
    assert all(0.5 < r["score"] <= 1.0 and r["latency_ms"] > 0 for r in rows)
    assert _count_frames(out_v) == 18
    assert not list(tmp_path.glob("*.partial*"))
    assert s.latency_ms["p50"] <= s.latency_ms["p95"] <= s.latency_ms["p99"]


def test_annotated_video_has_overlay(bundle, tmp_path):
    write_color_video(tmp_path / "clip.avi", n=3)
    run_pipeline(bundle, str(tmp_path / "clip.avi"), str(tmp_path / "out.avi"), options=RunOptions(backend="onnxruntime"))
    cap = cv2.VideoCapture(str(tmp_path / "out.avi"))
    ok, img = cap.read()
    assert ok
    # the source frame is solid blue; the label box is black with white text
    corner = img[0:30, 0:60].reshape(-1, 3)
    assert (corner.max(axis=1) < 40).any() and (corner.min(axis=1) > 200).any()


def test_image_folder_source_names(bundle, tmp_path):
    seq = write_color_images(tmp_path / "imgs", n=6)
    s = run_pipeline(bundle, str(tmp_path / "imgs"), str(tmp_path / "p.jsonl"), options=RunOptions(backend="onnxruntime"))
    rows = _rows(tmp_path / "p.jsonl")
    assert s.frames == 6
    assert [r["source"] for r in rows] == ["img_{:03d}.png".format(i) for i in range(6)]
    assert [r["label"] for r in rows] == seq


@pytest.mark.parametrize("sink", ["null://", "out.jsonl", "out.avi", "out.mp4"])
def test_synthetic_source_each_sink(bundle, tmp_path, sink):
    target = sink if sink == "null://" else str(tmp_path / sink)
    s = run_pipeline(bundle, "synthetic://80x60?seed=3", target, options=RunOptions(backend="onnxruntime", max_frames=12))
    assert s.frames == 12 and s.end_reason.startswith("max frames")
    if sink.endswith(".jsonl"):
        rows = _rows(target)
        assert len(rows) == 12 and all(r["label"] in LABELS for r in rows)
    elif sink != "null://":
        assert _count_frames(Path(target)) == 12


def test_max_frames_and_keep_results(bundle, tmp_path):
    seq = write_color_video(tmp_path / "clip.avi", n=18)
    s = run_pipeline(bundle, str(tmp_path / "clip.avi"), "null://", options=RunOptions(backend="onnxruntime", max_frames=5), outputs=OutputOptions(keep_results=True))
    assert s.frames == 5 and [r["label"] for r in s.results] == seq[:5]


class _LockstepCamera(Source):
    """A live camera whose frames come when the engine says so: ``release(n)`` lets it deliver n more.

    ``idle`` is True while the capture thread waits for the next frame, i.e. after it queued every
    frame released so far: the engine below waits on that (a condition, never a clock).
    """

    scheme = "lockstep"
    live = True

    def __init__(self):
        super().__init__("lockstep://", {"width": 32, "height": 24})
        self.cond = threading.Condition()
        self.permits = 1  # frame 0
        self.delivered = 0
        self.idle = False

    def open_impl(self):
        pass

    def release(self, n):
        with self.cond:
            self.permits += n
            self.cond.notify_all()

    def wait_idle(self, delivered, guard=120.0):
        with self.cond:  # the guard only turns a hang into a failure; the verdict never depends on it
            assert self.cond.wait_for(lambda: self.idle and self.delivered >= delivered, guard), "capture thread stuck"

    def read_impl(self, timeout):
        with self.cond:
            self.idle = True
            self.cond.notify_all()
            if not self.cond.wait_for(lambda: self.permits > 0, timeout or 0.1):
                return None
            self.idle = False
            self.permits -= 1
            self.delivered += 1
        return Frame(np.full((24, 32, 3), (0, 0, 255), np.uint8))


class _LockstepEngine(SlowEngine):
    """Each inference lets the camera deliver ``burst`` frames and waits until they are all queued: a
    camera faster than the engine, by count.  Records how many frames existed when each inference began."""

    def __init__(self, inner, camera, burst):
        super().__init__(inner, 0.0)
        self.camera, self.burst, self.delivered_at_start = camera, burst, []

    def infer(self, feeds):
        self.delivered_at_start.append(self.camera.delivered)
        self.camera.release(self.burst)
        self.camera.wait_idle(self.delivered_at_start[-1] + self.burst)
        return super().infer(feeds)


def test_slow_engine_on_live_source_drops_oldest(bundle):
    """A live source faster than the engine: frames are dropped and counted, and the engine always gets
    one of the newest (bounds from the run's own figures: queue size, pipeline depth, frames delivered)."""
    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.runtime.backends import create_engine

    queue = 2
    cam = _LockstepCamera()
    slow = _LockstepEngine(create_engine(open_bundle(bundle), RunOptions(backend="onnxruntime")), cam, burst=4 * (queue + 2))
    s = run_pipeline(bundle, cam, "null://", engine=slow, options=RunOptions(max_frames=15),
                     inputs=SourceOptions(queue_size=queue), outputs=OutputOptions(keep_results=True))
    assert s.frames == 15 and s.dropped > 0
    idx = [r["index"] for r in s.results]
    assert idx == sorted(idx) and len(idx) == len(slow.delivered_at_start) == 15
    # when an inference began, at most the queue and the frames in flight were newer than its frame
    # (keeping the oldest instead would leave a burst's worth of newer frames behind it)
    newer = [have - 1 - i for i, have in zip(idx, slow.delivered_at_start)]
    assert max(newer) <= queue + s.executor["depth"], list(zip(idx, slow.delivered_at_start))
    assert all(b - a > 1 for a, b in zip(idx[1:], idx[2:]))  # dropping all along, not only at the start
    assert s.captured >= s.frames + s.dropped


def test_periodic_metrics_show_live_drops(bundle, metric_lines):
    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.runtime.backends import create_engine

    slow = SlowEngine(create_engine(open_bundle(bundle), RunOptions(backend="onnxruntime")), delay=0.02)
    s = run_pipeline(bundle, "synthetic://32x24@300", "null://", engine=slow, options=RunOptions(max_frames=12), inputs=SourceOptions(queue_size=1), outputs=OutputOptions(metrics_interval=0.05))
    lines = metric_lines
    assert s.dropped > 0 and lines
    assert int(lines[-1].rsplit("dropped", 1)[1]) > 0  # the running count, not only the final summary


def test_slow_engine_on_file_never_drops(bundle, tmp_path):
    from jetson_deploy.bundle import open_bundle
    from jetson_deploy.runtime.backends import create_engine

    seq = write_color_video(tmp_path / "clip.avi", n=12)
    slow = SlowEngine(create_engine(open_bundle(bundle), RunOptions(backend="onnxruntime")), delay=0.01)
    s = run_pipeline(bundle, str(tmp_path / "clip.avi"), "null://", engine=slow, inputs=SourceOptions(queue_size=1), outputs=OutputOptions(keep_results=True))
    assert s.dropped == 0 and s.frames == 12 and [r["label"] for r in s.results] == seq


def test_tampered_bundle_is_refused_before_loading(bundle, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(str(bundle), str(bad))
    data = bytearray((bad / "model.onnx").read_bytes())
    data[-3] ^= 0x01
    (bad / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(CheckFailed, match="model.onnx"):
        run_pipeline(bad, "synthetic://32x24", "null://", options=RunOptions(backend="onnxruntime", max_frames=1))


def test_bad_source_and_sink(bundle, tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        run_pipeline(bundle, str(tmp_path / "missing.mp4"), "null://", options=RunOptions(backend="onnxruntime"))
    with pytest.raises(BadInput, match="sink"):
        run_pipeline(bundle, "synthetic://32x24", str(tmp_path / "x.txt"), options=RunOptions(backend="onnxruntime"))
    with pytest.raises(BadInput, match="size"):
        run_pipeline(bundle, "synthetic://big", "null://", options=RunOptions(backend="onnxruntime"))


def test_failed_run_publishes_no_output(bundle, tmp_path):
    """A sink that raises mid-run: the video is not published half-written; the .jsonl (a log) holds the
    whole lines written before the failure."""
    from jetson_deploy.media.sinks import Sink

    class Boom(Sink):
        def render_impl(self, frame, result, fps):
            if self.frames == 3:
                raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        run_pipeline(bundle, "synthetic://32x24", [str(tmp_path / "p.jsonl"), str(tmp_path / "v.avi"), Boom("boom://")], options=RunOptions(backend="onnxruntime", max_frames=10))
    assert not (tmp_path / "v.avi").exists() and not list(tmp_path.glob("*.partial*"))
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(len(rows))) and len(rows) <= 4  # Boom fails on the 4th frame


def test_metrics_lines_logged(bundle, metric_lines):
    s = run_pipeline(bundle, "synthetic://32x24@400", "null://", options=RunOptions(backend="onnxruntime", max_frames=40), outputs=OutputOptions(metrics_interval=0.02))
    lines = metric_lines
    assert s.frames == 40
    assert lines and all("FPS" in ln and "dropped" in ln and "p95" in ln for ln in lines)


@pytest.mark.needs("torch")
def test_torch_cpu_backend_matches_onnxruntime(tmp_path):
    import torch  # noqa: F401
    b = make_bundle(tmp_path / "b", pt2=True)
    seq = write_color_video(tmp_path / "clip.avi", n=9)
    s = run_pipeline(b, str(tmp_path / "clip.avi"), str(tmp_path / "t.jsonl"), options=RunOptions(backend="torch", device="cpu"))
    assert s.backend == "torch" and s.frames == 9
    assert [r["label"] for r in _rows(tmp_path / "t.jsonl")] == seq
    s2 = run_pipeline(b, str(tmp_path / "clip.avi"), str(tmp_path / "o.jsonl"), options=RunOptions(backend="onnxruntime"))
    a = [r["score"] for r in _rows(tmp_path / "t.jsonl")]
    o = [r["score"] for r in _rows(tmp_path / "o.jsonl")]
    assert s2.frames == 9 and np.allclose(a, o, atol=1e-4)


def test_segment_task_end_to_end(tmp_path):
    from support.runtime import make_segment_bundle

    b = make_segment_bundle(tmp_path / "seg")
    seq = write_color_video(tmp_path / "clip.avi", n=9)
    s = run_pipeline(b, str(tmp_path / "clip.avi"), [str(tmp_path / "seg.avi"), str(tmp_path / "seg.jsonl")], options=RunOptions(backend="onnxruntime"))
    rows = _rows(tmp_path / "seg.jsonl")
    assert s.frames == 9 and [r["label"] for r in rows] == seq
    assert all(r["task"] == "segment" and list(r["classes"].values()) == [1.0] for r in rows)
    cap = cv2.VideoCapture(str(tmp_path / "seg.avi"))
    ok, first = cap.read()
    assert ok and _count_frames(tmp_path / "seg.avi") == 9


def test_detect_task_end_to_end(tmp_path):
    from support.runtime import make_detect_bundle

    b = make_detect_bundle(tmp_path / "det")
    write_color_video(tmp_path / "clip.avi", n=4, w=64, h=48)
    s = run_pipeline(b, str(tmp_path / "clip.avi"), [str(tmp_path / "det.avi"), str(tmp_path / "det.jsonl")], options=RunOptions(backend="onnxruntime"))
    rows = _rows(tmp_path / "det.jsonl")
    assert s.frames == 4 and all(r["task"] == "detect" for r in rows)
    dets = rows[0]["detections"]
    # NMS kept one of the two overlapping class-2 boxes; boxes mapped from 16x16 to 64x48 pixels
    assert [(d["label"], d["score"]) for d in dets] == [("red", 0.9), ("blue", 0.6)]
    assert dets[0]["box"] == [16.0, 12.0, 48.0, 36.0] and dets[1]["box"] == [8.0, 6.0, 24.0, 18.0]
    assert rows[0]["label"] == "red"
    cap = cv2.VideoCapture(str(tmp_path / "det.avi"))
    ok, img = cap.read()
    assert ok and _count_frames(tmp_path / "det.avi") == 4
