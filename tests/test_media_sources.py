"""Sources: URI parsing, capture thread semantics (drop oldest / never drop), stalls, reconnects."""
import threading
import time

import numpy as np
import pytest

from jetson_deploy.runtime.options import RunOptions, SourceOptions  # noqa: E402
from jetson_deploy.errors import BadInput
from jetson_deploy.media.capture import CaptureThread
from jetson_deploy.media.local_sources import SyntheticSource
from jetson_deploy.media.opencv_sources import CSISource, GstSource, RTSPSource, V4L2Source, csi_pipeline, rtsp_pipeline
from jetson_deploy.media.registry import open_source, parse_source_uri
from jetson_deploy.media.sources import Frame, Source
from jetson_deploy.runtime.memory import NumpyAllocator


def test_parse_uris(tmp_path):
    assert parse_source_uri("csi://1?width=1920&height=1080&fps=60") == (
        "csi", {"width": "1920", "height": "1080", "fps": "60", "sensor": 1})
    assert parse_source_uri("v4l2:///dev/video2")[1]["device"] == "/dev/video2"
    assert parse_source_uri("/dev/video1") == ("v4l2", {"device": "/dev/video1"})
    assert parse_source_uri("rtsp://cam.local:554/live?x=1") == ("rtsp", {})
    assert parse_source_uri("gst://videotestsrc ! appsink")[1]["pipeline"] == "videotestsrc ! appsink"
    kind, o = parse_source_uri("synthetic://1280x720@30?seed=4&frames=9")
    assert kind == "synthetic" and (o["width"], o["height"], o["fps"], o["seed"], o["frames"]) == (1280, 720, 30.0, "4", "9")
    (tmp_path / "imgs").mkdir()
    assert parse_source_uri(str(tmp_path / "imgs"))[0] == "images"
    assert parse_source_uri("file://" + str(tmp_path / "a.mp4"))[0] == "file"
    assert parse_source_uri("x.jpg")[0] == "images"
    with pytest.raises(BadInput, match="scheme"):
        parse_source_uri("http://example.com/x")
    with pytest.raises(BadInput, match="1280x720"):
        parse_source_uri("synthetic://1280by720")


def test_open_source_classes():
    assert isinstance(open_source("csi://0"), CSISource)
    assert isinstance(open_source("v4l2:///dev/video0"), V4L2Source)
    assert isinstance(open_source("rtsp://h/s", gstreamer=False), RTSPSource)
    assert isinstance(open_source("synthetic://8x8"), SyntheticSource)
    assert open_source("csi://0").live and open_source("synthetic://8x8@5").live and not open_source("synthetic://8x8").live
    with pytest.raises(BadInput, match="appsink"):
        GstSource("gst://videotestsrc", {}, pipeline="videotestsrc ! fakesink")


def test_csi_and_rtsp_pipeline_strings():
    p = csi_pipeline(1, 1920, 1080, 30, flip=2)
    assert p.startswith("nvarguscamerasrc sensor-id=1 ") and "width=(int)1920" in p and "framerate=(fraction)30/1" in p
    assert "flip-method=2" in p and p.rstrip().endswith("sync=false") and "appsink" in p
    assert CSISource("csi://0", {"width": "640", "height": "480", "fps": "15"}).pipeline() == csi_pipeline(0, 640, 480, 15)
    hw = rtsp_pipeline("rtsp://h/s", 100, hw=True, timeout_s=2)
    assert "nvv4l2decoder" in hw and "latency=100" in hw and "appsink" in hw and "tcp-timeout=2000000" in hw
    sw = rtsp_pipeline("rtsp://h/s", codec="h265", hw=False)
    assert "avdec_h265" in sw and "rtph265depay" in sw and "nvv4l2decoder" not in sw


def test_csi_without_gstreamer_is_a_clear_error(monkeypatch):
    import jetson_deploy.media.opencv_sources as S

    monkeypatch.setattr(S, "has_gstreamer", lambda: False)
    with pytest.raises(BadInput, match="GStreamer"):
        open_source("csi://0").open()


@pytest.mark.needs("cv2")
def test_v4l2_missing_camera_message():
    import cv2  # noqa: F401
    with pytest.raises(BadInput, match="not found|plugged"):
        open_source("v4l2:///dev/video_does_not_exist").open()


@pytest.mark.needs("cv2")
def test_synthetic_frames_truth_and_limit():
    import cv2  # noqa: F401
    src = open_source("synthetic://48x32?frames=5&seed=2&pool=3").open()
    frames = list(src)
    assert [f.index for f in frames] == list(range(5)) and [f.source for f in frames] == list(range(5))
    assert all(f.image.shape == (32, 48, 3) and f.image.dtype == np.uint8 for f in frames)
    assert not src.is_streaming and "5 frames" in src.end_reason
    if src.generator_name == "shapes":
        assert all(f.truth in (0, 1, 2, 3) for f in frames)
    # the pool cycles: frame 3 is frame 0's pixels
    assert np.array_equal(frames[3].image, frames[0].image) and not np.array_equal(frames[1].image, frames[0].image)


@pytest.mark.needs("cv2")
def test_synthetic_pool_lives_in_allocator_buffers():
    import cv2  # noqa: F401

    class Tracking(NumpyAllocator):
        kind = "tracking"

        def __init__(self):
            self.made = []

        def empty(self, shape, dtype=np.uint8):
            b = super().empty(shape, dtype)
            self.made.append(b)
            return b

    alloc = Tracking()
    src = SyntheticSource("synthetic://16x8", {"width": 16, "height": 8, "pool": 2})
    src.use_allocator(alloc, pool_size=4)
    src.open()
    f = src.capture()
    assert any(np.shares_memory(f.image, b.array) for b in alloc.made)
    assert f.buffer in alloc.made


def test_paced_synthetic_is_paced():
    src = open_source("synthetic://8x8@50?frames=6&pool=1").open()
    t0 = time.perf_counter()
    assert len(list(src)) == 6
    assert time.perf_counter() - t0 >= 5 / 50.0 * 0.9


class _ListSource(Source):
    """A test source: yields N frames, optionally slowly, optionally 'live'."""

    scheme = "list"

    def __init__(self, n, live=False, delay=0.0, stall_after=None):
        super().__init__("list://", {})
        self.live = live
        self.n = n
        self.delay = delay
        self.stall_after = stall_after
        self.i = 0
        self.released = 0
        self.ended = threading.Event()  # set once every frame has been handed to the capture thread

    def read_impl(self, timeout):
        if self.stall_after is not None and self.i >= self.stall_after:
            time.sleep(timeout or 0.05)
            return None  # a stalled stream: still "streaming", nothing arrives
        if self.i >= self.n:
            self.end("done")
            self.ended.set()
            return None
        time.sleep(self.delay)
        self.i += 1
        owner = self

        class _Pool:
            def put(self, buf):
                owner.released += 1

        return Frame(np.zeros((2, 2, 3), np.uint8), buffer=object(), pool=_Pool())


def _wait(cond, timeout=10.0):
    """Wait for a condition (not a fixed sleep): fails the test if it never holds."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in {} s".format(timeout)
        time.sleep(0.005)


def test_capture_thread_live_drops_oldest_and_counts():
    src = _ListSource(50, live=True)
    cap = CaptureThread(src, maxsize=3).start()
    assert src.ended.wait(10.0)  # consumer is "slow": it reads nothing while all 50 frames arrive
    got = []
    while True:
        f = cap.get(timeout=1.0)
        if f is None:
            break
        got.append(f.index)
        f.release()
    assert cap.finished and cap.end_reason == "done"
    assert cap.dropped == 47 and got == [47, 48, 49]  # the freshest three survive
    assert src.released == 50  # every dropped frame gave its buffer back


def test_capture_thread_file_never_drops():
    src = _ListSource(30, live=False)
    cap = CaptureThread(src, maxsize=2).start()
    _wait(lambda: src.i >= 3)  # the queue is full and the producer waits for the consumer
    got = []
    while True:
        f = cap.get(timeout=1.0)
        if f is None:
            break
        got.append(f.index)
    assert cap.dropped == 0 and got == list(range(30))


def test_get_never_blocks_past_timeout_on_a_stall():
    src = _ListSource(100, live=True, stall_after=2)
    cap = CaptureThread(src, maxsize=4).start()
    assert cap.get(timeout=1.0) is not None and cap.get(timeout=1.0) is not None
    t0 = time.perf_counter()
    assert cap.get(timeout=0.2) is None
    assert time.perf_counter() - t0 < 1.0 and not cap.finished
    cap.stop(join_timeout=1.0)


def test_source_error_reaches_consumer():
    class Broken(_ListSource):
        def read_impl(self, timeout):
            raise OSError("device unplugged")

    cap = CaptureThread(Broken(3), maxsize=2).start()
    assert cap.get(timeout=1.0) is None and cap.finished
    assert isinstance(cap.error, OSError) and "unplugged" in cap.end_reason


@pytest.mark.needs("onnxruntime", "cv2")
def test_pipeline_ends_on_stall_with_message(tmp_path):
    import onnxruntime  # noqa: F401
    import cv2  # noqa: F401
    from support.runtime import make_bundle

    from jetson_deploy.runtime.session import run_pipeline

    b = make_bundle(tmp_path / "b")
    t0 = time.perf_counter()
    s = run_pipeline(b, _ListSource(100, live=True, stall_after=3), "null://", options=RunOptions(backend="onnxruntime"), inputs=SourceOptions(stall_timeout=0.3))
    assert s.frames == 3 and "stalled" in s.end_reason
    assert time.perf_counter() - t0 < 5


class _FakeCap:
    """cv2.VideoCapture stand-in: delivers ``n`` frames then fails (a dropped stream)."""

    def __init__(self, n, opened=True):
        self.n = n
        self.opened = opened
        self.released = False

    def isOpened(self):
        return self.opened

    def read(self, image=None):
        if self.n <= 0:
            return False, None
        self.n -= 1
        img = np.full((4, 6, 3), 7, np.uint8)
        if image is not None:
            image[...] = img
            return True, image
        return True, img

    def get(self, prop):
        return 0

    def set(self, prop, v):
        return True

    def release(self):
        self.released = True


@pytest.mark.needs("cv2")
def test_rtsp_reconnects_with_backoff_then_gives_up():
    import cv2  # noqa: F401
    src = RTSPSource("rtsp://cam/stream", {"backoff": "0.1", "backoff_max": "0.3", "reconnects": "4", "gstreamer": False})
    caps = [_FakeCap(3), _FakeCap(2), _FakeCap(0, opened=False), _FakeCap(1)]
    opened = []

    def fake_open():
        c = caps.pop(0) if caps else _FakeCap(0, opened=False)
        opened.append(c)
        return c

    sleeps = []
    src._open_capture = fake_open
    src._sleep = sleeps.append
    src.open()
    frames = list(src)
    assert len(frames) == 3 + 2 + 1
    assert src.reconnects == 2 and not src.is_streaming
    assert "gave up after 4" in src.end_reason
    # backoff doubles after consecutive failures and is capped; a good frame resets it
    assert sleeps == [0.1, 0.1, 0.2, 0.1, 0.2, 0.3, 0.3]
    assert all(c.released for c in opened[:-1])


@pytest.mark.needs("cv2")
def test_rtsp_open_failure_message():
    import cv2  # noqa: F401
    src = RTSPSource("rtsp://nowhere/x", {"gstreamer": False})
    src._open_capture = lambda: _FakeCap(0, opened=False)
    with pytest.raises(BadInput, match="cannot connect"):
        src.open()


@pytest.mark.needs("cv2")
def test_opencv_source_reads_into_pooled_buffers():
    import cv2  # noqa: F401
    from jetson_deploy.media.opencv_sources import OpenCVSource

    alloc_bufs = []

    class A(NumpyAllocator):
        def empty(self, shape, dtype=np.uint8):
            b = super().empty(shape, dtype)
            alloc_bufs.append(b)
            return b

    src = OpenCVSource("fake://", {})
    src._open_capture = lambda: _FakeCap(5)
    src.use_allocator(A(), pool_size=2)
    src.width, src.height = 6, 4
    src.open()
    src.width, src.height = 6, 4
    f1 = src.capture()
    f2 = src.capture()
    assert f1.buffer is not None and any(np.shares_memory(f1.image, b.array) for b in alloc_bufs)
    f1.release()
    f3 = src.capture()
    assert f3.buffer is f1.buffer  # recycled
    assert f2.image.mean() == 7


def test_stop_is_prompt_even_when_blocked():
    release = threading.Event()

    class Blocking(_ListSource):
        def read_impl(self, timeout):
            release.wait(5)
            return None

    cap = CaptureThread(Blocking(1, live=True), maxsize=1).start()
    t0 = time.perf_counter()
    cap.stop(join_timeout=0.2)
    assert time.perf_counter() - t0 < 1.0
    release.set()


@pytest.mark.needs("onnxruntime", "cv2")
def test_pipeline_waits_for_a_reconnecting_rtsp_source(tmp_path):
    """A stream that drops and needs longer than stall_timeout to come back is not ended as stalled."""
    import onnxruntime  # noqa: F401
    import cv2  # noqa: F401
    from support.runtime import make_bundle

    from jetson_deploy.runtime.session import run_pipeline

    src = RTSPSource("rtsp://cam/s", {"backoff": "0.4", "reconnects": "3", "gstreamer": False})
    caps = [_FakeCap(2), _FakeCap(3)]
    src._open_capture = lambda: caps.pop(0) if caps else _FakeCap(0, opened=False)
    s = run_pipeline(make_bundle(tmp_path / "b"), src, "null://", options=RunOptions(backend="onnxruntime"), inputs=SourceOptions(stall_timeout=0.2))
    assert s.frames == 5 and src.reconnects == 1  # recovered after a 0.4 s backoff > 0.2 s stall timeout
    assert "gave up" in s.end_reason


@pytest.mark.needs("cv2")
def test_capture_thread_reports_its_cpu_time():
    """Benchmarks report the capture thread's CPU per frame: it is measured on that thread."""
    from jetson_deploy.media import open_source
    from jetson_deploy.media.capture import CaptureThread

    busy = []

    def prepare(frame):  # spends 10 ms of this thread's CPU: it must show in the capture thread's figure
        cpu = lambda: time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID)  # noqa: E731
        t = cpu()
        while cpu() - t < 0.01:
            busy.append(1)

    cap = CaptureThread(open_source("synthetic://64x48?frames=5&pool=2"), maxsize=8, prepare=prepare).start()
    while not cap.finished:
        cap.get(timeout=0.5)
    cap.stop()
    assert cap.captured == 5 and cap.cpu_seconds >= 0.04
