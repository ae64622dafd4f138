"""These tests kill mutmut survivors in ``jetson_deploy/media/``.

Each test names, in its docstring or a comment, the mutant(s) it kills (mutmut 3 names, e.g.
``media.live.x_split_host_port__mutmut_24``).  All are fast and CPU only: network sinks listen on
127.0.0.1 port 0, GStreamer is replaced by small fakes, and waits are on events or counts.
"""
import http.client
import json
import logging
import math
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from jetson_deploy.errors import BadInput
from jetson_deploy.media import opencv_sources, rtsp_sink, shapes
from jetson_deploy.media.live import LiveFigures, split_host_port
from jetson_deploy.media.registry import open_sink, open_source
from jetson_deploy.media.sources import BufferPool, Frame, Source
from jetson_deploy.runtime.memory import NumpyAllocator
from jetson_deploy.runtime.postprocess import Detection, Result


def _res(index=0, label="red", score=0.9, lat=2.0):
    r = Result("classify")
    r.index, r.label, r.score, r.latency_ms = index, label, score, lat
    return r


# ---------------------------------------------------------------------------------------------
# live.py
# ---------------------------------------------------------------------------------------------
def test_empty_host_means_the_default_host():
    """Kills media.live.x_split_host_port__mutmut_24 (empty host no longer the default)."""
    assert split_host_port(":8080", "127.0.0.1", 80) == ("127.0.0.1", 8080)
    assert split_host_port("", "0.0.0.0", 8554) == ("0.0.0.0", 8554)
    assert split_host_port("@:9", "0.0.0.0", 8554) == ("0.0.0.0", 9)


def test_live_figures_first_frame_is_no_drop_and_p95_keeps_three_decimals():
    """Kills media.live.xǁLiveFiguresǁ__init____mutmut_13 (_last_index +1: a phantom drop after
    frame 0) and xǁLiveFiguresǁsnapshot__mutmut_47 (p95 rounded to an integer)."""
    f = LiveFigures()
    f.add(_res(0, lat=1.23456), 10.0)
    s = f.snapshot()
    assert s["dropped_source"] == 0
    assert s["latency_ms_p95"] == pytest.approx(1.235)
    assert s["latency_ms_p50"] == pytest.approx(1.235)
    f.add(_res(2, lat=3.0), 10.0)  # frame 1 never came
    assert f.snapshot()["dropped_source"] == 1


# ---------------------------------------------------------------------------------------------
# sources.py
# ---------------------------------------------------------------------------------------------
def test_buffer_pool_counts_every_fallback():
    """Kills media.sources.xǁBufferPoolǁget__mutmut_9 (fallbacks = 1 instead of += 1)."""
    pool = BufferPool(NumpyAllocator(), (2, 2, 3), 1)
    assert pool.get(timeout=0) is not None
    assert pool.get(timeout=0) is None
    assert pool.get(timeout=0) is None
    assert pool.fallbacks == 2


def test_zero_width_gets_no_pooled_buffer():
    """Kills media.sources.xǁSourceǁ_buffer_for__mutmut_7 (w < 0: a 0-wide pool made)."""
    src = Source("x://")
    src.use_allocator(NumpyAllocator(), pool_size=2)
    assert src._buffer_for(4, 0) == (None, None, None)
    assert src._pool is None
    arr, buf, pool = src._buffer_for(4, 2)
    assert arr.shape == (4, 2, 3) and pool is src._pool


# ---------------------------------------------------------------------------------------------
# local_sources.py
# ---------------------------------------------------------------------------------------------
@pytest.mark.needs("cv2")
def test_synthetic_seed_option_picks_the_frames():
    """Kills media.local_sources.xǁSyntheticSourceǁ__init____mutmut_26 (?seed= ignored)."""
    src = open_source("synthetic://32x24?seed=7&pool=0&frames=2")
    src.open()
    try:
        got = src.capture()
    finally:
        src.close()
    img, label = shapes.ShapeGenerator(7).frame(32, 24)
    assert np.array_equal(got.image, img) and got.truth == label
    assert not np.array_equal(img, shapes.ShapeGenerator(0).frame(32, 24)[0])


@pytest.mark.needs("cv2")
def test_image_folder_size_is_the_first_image(tmp_path):
    """Kills media.local_sources.xǁImageSourceǁopen_impl__mutmut_24 (size read from files[1])."""
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((10, 20, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((30, 40, 3), np.uint8))
    src = open_source(str(tmp_path))
    src.open()
    assert (src.width, src.height) == (20, 10)
    src.close()
    one = open_source(str(tmp_path / "b.png"))
    one.open()  # a single file: there is no files[1]
    assert (one.width, one.height) == (40, 30)
    one.close()


# ---------------------------------------------------------------------------------------------
# opencv_sources.py
# ---------------------------------------------------------------------------------------------
class _FakeCV2:
    """The few cv2 names the OpenCV sources use, recording VideoCapture calls."""

    CAP_ANY, CAP_FFMPEG, CAP_GSTREAMER, CAP_V4L2 = 0, 1900, 1800, 200
    CAP_PROP_FRAME_WIDTH, CAP_PROP_FRAME_HEIGHT, CAP_PROP_FPS, CAP_PROP_BUFFERSIZE = 3, 4, 5, 38
    CAP_PROP_OPEN_TIMEOUT_MSEC, CAP_PROP_READ_TIMEOUT_MSEC = 53, 54

    def __init__(self, build="  GStreamer:                   YES (1.20.3)\n"):
        self.build = build
        self.opened = []

    def getBuildInformation(self):
        return "Video I/O:\n" + self.build

    def VideoCapture(self, *args):
        self.opened.append(args)
        return SimpleNamespace(isOpened=lambda: True)


def test_has_gstreamer_reads_the_build_information(monkeypatch):
    """Kills media.opencv_sources.x_has_gstreamer__mutmut_10 ("XXYESXX": never found)."""
    monkeypatch.setattr(opencv_sources, "_cv2", lambda: _FakeCV2())
    assert opencv_sources.has_gstreamer() is True
    monkeypatch.setattr(opencv_sources, "_cv2", lambda: _FakeCV2("  GStreamer:   NO\n"))
    assert opencv_sources.has_gstreamer() is False


def test_csi_flip_option_reaches_the_pipeline():
    """Kills media.opencv_sources.xǁCSISourceǁ__init____mutmut_34 (?flip= ignored)."""
    src = open_source("csi://0?flip=2")
    assert src.flip == 2 and "flip-method=2" in src.pipeline()


def test_live_capture_gets_open_and_read_timeouts(monkeypatch):
    """Kills media.opencv_sources.xǁOpenCVSourceǁ_open_capture__mutmut_11 (read timeout lost)."""
    cv2 = _FakeCV2()
    monkeypatch.setattr(opencv_sources, "_cv2", lambda: cv2)
    src = opencv_sources.V4L2Source("v4l2:///dev/video9", {"device": "/dev/video9", "timeout": 2.5})
    src._open_capture()
    (target, api, params), = cv2.opened
    assert (target, api) == ("/dev/video9", cv2.CAP_V4L2)
    assert dict(zip(params[::2], params[1::2])) == {cv2.CAP_PROP_OPEN_TIMEOUT_MSEC: 2500, cv2.CAP_PROP_READ_TIMEOUT_MSEC: 2500}


class _SetCap:
    def __init__(self):
        self.props = {}
        self.released = 0

    def isOpened(self):
        return True

    def set(self, prop, value):
        self.props[prop] = value

    def get(self, prop):
        return self.props.get(prop, 0)

    def release(self):
        self.released += 1


@pytest.mark.needs("cv2")
def test_v4l2_size_options_are_asked_of_the_camera():
    """Kills media.opencv_sources.xǁV4L2Sourceǁ_configure__mutmut_7 (height set to None) and
    xǁOpenCVSourceǁclose_impl__mutmut_2 (cap "" instead of None after close)."""
    import cv2

    cap = _SetCap()
    src = open_source("v4l2:///dev/video9?width=640&height=480&fps=15")
    src._open_capture = lambda: cap
    src.open()
    assert cap.props[cv2.CAP_PROP_FRAME_WIDTH] == 640
    assert cap.props[cv2.CAP_PROP_FRAME_HEIGHT] == 480
    assert cap.props[cv2.CAP_PROP_FPS] == 15
    assert (src.width, src.height) == (640, 480)
    src.close()
    assert cap.released == 1 and src.cap is None


class _ReallocCap:
    """read(image=arr) hands back a new, larger array: OpenCV reallocated (size changed)."""

    def isOpened(self):
        return True

    def get(self, prop):
        return 0

    def read(self, image=None):
        if image is not None and image.shape == (6, 8, 3):
            image[...] = 5
            return True, image
        return True, np.full((6, 8, 3), 5, np.uint8)

    def release(self):
        pass


@pytest.mark.needs("cv2")
def test_reallocated_frame_leaves_the_pool():
    """Kills media.opencv_sources.xǁOpenCVSourceǁ_grab__mutmut_21 (`img is arr`: the new array
    was returned as if it lived in the pooled buffer)."""
    src = opencv_sources.OpenCVSource("fake://", {"width": 4, "height": 2})
    src._open_capture = lambda: _ReallocCap()
    src.use_allocator(NumpyAllocator(), pool_size=2)
    src.open()
    f = src.capture()
    assert f.image.shape == (6, 8, 3) and f.buffer is None
    assert (src.width, src.height) == (8, 6)
    assert src._pool is None  # the 4x2 pool is dropped; the next read makes an 8x6 one
    f2 = src.capture()
    assert f2.buffer is not None and np.shares_memory(f2.image, f2.buffer.array)


def test_rtsp_reconnect_failure_is_logged_with_its_cause(caplog):
    """Kills media.opencv_sources.xǁRTSPSourceǁ_reconnect_loop__mutmut_33 (the warning lost its
    format string: the record cannot be formatted)."""
    src = opencv_sources.RTSPSource("rtsp://cam/x", {"gstreamer": False, "reconnects": 1})
    src._sleep = lambda s: None

    def boom():
        raise OSError("boom-cause")

    src._open_capture = boom
    with caplog.at_level(logging.WARNING, logger=opencv_sources.log.name):
        assert src._reconnect() is False
    msgs = [r.getMessage() for r in caplog.records]
    assert any("reconnect failed" in m and "boom-cause" in m for m in msgs), msgs


def test_rtsp_ffmpeg_gets_a_read_timeout_in_microseconds(monkeypatch):
    """Kills media.opencv_sources.xǁRTSPSourceǁtarget__mutmut_21 (int(None))."""
    cv2 = _FakeCV2()
    monkeypatch.setattr(opencv_sources, "_cv2", lambda: cv2)
    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)
    src = opencv_sources.RTSPSource("rtsp://cam/x", {"gstreamer": False, "timeout": 1.5})
    assert src.target() == ("rtsp://cam/x", cv2.CAP_FFMPEG)
    import os

    assert os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] == "rtsp_transport;tcp|stimeout;1500000"


def test_video_file_takes_its_path_and_options(tmp_path):
    """Kills media.opencv_sources.xǁVideoFileSourceǁ__init____mutmut_4 (options dropped) and
    __mutmut_6 (the ``path`` option ignored)."""
    real = tmp_path / "clip.mp4"
    src = opencv_sources.VideoFileSource("named-elsewhere", {"path": real, "timeout": 2.0, "width": 320})
    assert src.path == real
    assert src.read_timeout == 2.0 and src.width == 320
    assert "path" not in src.options


# ---------------------------------------------------------------------------------------------
# overlay.py
# ---------------------------------------------------------------------------------------------
@pytest.mark.needs("cv2")
def test_label_text_is_drawn_inside_its_box():
    """Kills media.overlay.x__text__mutmut_49 (box drawn, text None: nothing written)."""
    from jetson_deploy.media.overlay import draw

    img = draw(np.full((100, 200, 3), 90, np.uint8), _res(label="square", score=0.5))
    box = img[:40, :120]
    assert (box == 0).any()  # the black box
    assert (box.min(axis=2) > 200).sum() > 20  # white text strokes on it


@pytest.mark.needs("cv2")
def test_text_block_top_and_detection_label_position():
    """Kills media.overlay.x_draw__mutmut_207 (first line at 9*scale, not 8*scale) and
    x_draw__mutmut_152 (detection label 1 px further right)."""
    from jetson_deploy.media.overlay import draw

    base = np.full((720, 720, 3), 90, np.uint8)  # scale 1.0
    img = draw(base.copy(), _res(label="a"))
    x = 8 + 2  # inside the box (its left edge is x - 3)
    assert (img[8, x] == 0).all() and (img[7, x] == 90).all()

    d = Result("detect")
    d.detections = [Detection([100, 300, 200, 400], 0.8, 1, "sq")]
    img = draw(base.copy(), d)
    # the label box starts at x1 + 2 - 3 = 99, one column left of the detection box (x1 = 100)
    top = 300 - 22 + 5
    assert (img[top, 99] == 0).all() and (img[top, 98] == 90).all()


# ---------------------------------------------------------------------------------------------
# registry.py / sinks.py
# ---------------------------------------------------------------------------------------------
def test_unknown_sink_suffix_is_named():
    """Kills media.registry.x_open_sink__mutmut_55 (the suffix shown as None)."""
    with pytest.raises(BadInput, match=r"unknown file type '\.xyz'"):
        open_sink("out.xyz")


@pytest.mark.needs("cv2")
def test_display_q_key_closes_the_view(monkeypatch):
    """Kills media.sinks.xǁDisplaySinkǁrender_impl__mutmut_21 (ord(None))."""
    import cv2

    keys = [ord("x"), ord("q")]
    shown = []
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(cv2, "namedWindow", lambda *a: None, raising=False)
    monkeypatch.setattr(cv2, "destroyWindow", lambda *a: None, raising=False)
    monkeypatch.setattr(cv2, "imshow", lambda title, img: shown.append(img.shape), raising=False)
    monkeypatch.setattr(cv2, "waitKey", lambda ms: keys.pop(0), raising=False)
    s = open_sink("display://0")
    frame = Frame(np.zeros((16, 16, 3), np.uint8))
    s.render(frame, _res())
    assert shown == [(16, 16, 3)] and s.closed_by_user is False
    s.render(frame, _res())
    assert s.closed_by_user is True
    s.close()


# ---------------------------------------------------------------------------------------------
# http_sink.py
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def http_view():
    pytest.importorskip("cv2")
    sink = open_sink("http://127.0.0.1:0/")
    sink.render(Frame(np.zeros((24, 32, 3), np.uint8)), _res())  # opens the server, makes stream 0
    yield sink
    sink.close()


def _get(sink, path):
    c = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    return c, r


def test_http_routes_without_source_and_trailing_junk(http_view):
    """Kills media.http_sink.xǁ_Handlerǁdo_GET__mutmut_42 (no ?source= crashed the handler) and
    do_GET__mutmut_35 (rstrip("XX/XX") made /statsX the stats route)."""
    c, r = _get(http_view, "/stats")
    assert r.status == 200 and json.loads(r.read())["frames"] == 1
    c.close()
    c, r = _get(http_view, "/stats/")
    assert r.status == 200
    r.read()
    c.close()
    for junk in ("/statsX", "/X"):
        c, r = _get(http_view, junk)
        assert r.status == 404, junk
        r.read()
        c.close()


def test_http_frame_is_served_as_jpeg(http_view):
    """Kills media.http_sink.xǁ_Handlerǁ_frame__mutmut_47 (Content-Type "XXimage/jpegXX")."""
    import cv2

    jpeg = cv2.imencode(".jpg", np.zeros((24, 32, 3), np.uint8))[1].tobytes()
    http_view.streams[0].publish(jpeg)
    c, r = _get(http_view, "/frame.jpg")
    assert r.status == 200 and r.getheader("Content-Type") == "image/jpeg"
    assert r.read() == jpeg
    c.close()


def test_http_mjpeg_stream_answers_200_multipart(http_view):
    """Kills media.http_sink.xǁ_Handlerǁ_mjpeg__mutmut_15 (status 201) and _mjpeg__mutmut_2
    (_enter(None): the handler died before answering)."""
    import cv2

    jpeg = cv2.imencode(".jpg", np.zeros((24, 32, 3), np.uint8))[1].tobytes()
    http_view.streams[0].publish(jpeg)
    c, r = _get(http_view, "/stream.mjpg")
    assert r.status == 200
    assert r.getheader("Content-Type").startswith("multipart/x-mixed-replace")
    head = r.fp.readline()
    assert head.strip() == b"--jdframe"
    c.close()


def test_http_viewer_limit_is_inclusive(http_view):
    """Kills media.http_sink.xǁ_Handlerǁ_enter__mutmut_1 (> MAX_CLIENTS let one more in)."""
    from jetson_deploy.media.http_sink import MAX_CLIENTS

    with http_view._lock:
        http_view.clients = MAX_CLIENTS
    c, r = _get(http_view, "/frame.jpg")
    body = r.read()
    c.close()
    with http_view._lock:
        http_view.clients = 0
    assert r.status == 503 and b"too many viewers" in body


# ---------------------------------------------------------------------------------------------
# rtsp_sink.py (GStreamer replaced by fakes: what the sink asks of it)
# ---------------------------------------------------------------------------------------------
class _FakeAppsrc:
    def __init__(self):
        self.props, self.handlers, self.pushed = {}, {}, []
        self.got = threading.Event()

    def set_property(self, k, v):
        self.props[k] = v

    def connect(self, sig, cb):
        self.handlers[sig] = cb

    def emit(self, sig, *args):
        if sig == "push-buffer":
            self.pushed.append(args[0])
            self.got.set()


class _FakeMedia:
    def __init__(self, src):
        self.src = src

    def get_element(self):
        return SimpleNamespace(get_child_by_name=lambda name: self.src if name == "src" else None)

    def connect(self, sig, cb):
        pass


def _fake_gst(available):
    factories = []

    class Factory:
        def __init__(self):
            self.launch, self.callbacks = None, []
            factories.append(self)

        def set_launch(self, text):
            self.launch = text

        def set_shared(self, v):
            pass

        def connect(self, sig, cb, *data):
            self.callbacks.append((sig, cb, data))

    class Server:
        def set_address(self, a):
            pass

        def set_service(self, s):
            pass

        def attach(self, ctx):
            return 1

        def get_mount_points(self):
            return SimpleNamespace(add_factory=lambda path, f: None)

    class Loop:
        def __init__(self):
            self.done = threading.Event()

        def run(self):
            self.done.wait(10)

        def quit(self):
            self.done.set()

    Gst = SimpleNamespace(SECOND=10 ** 9,
                          ElementFactory=SimpleNamespace(find=lambda name: name in available),
                          Buffer=SimpleNamespace(new_wrapped=lambda data: SimpleNamespace(data=data)))
    return (Gst, SimpleNamespace(RTSPServer=Server, RTSPMediaFactory=Factory), SimpleNamespace(MainLoop=Loop)), factories


def test_nvv4l2_bitrate_is_in_bits_per_second():
    """Kills media.rtsp_sink.x_encoder_chain__mutmut_4 (bitrate=None)."""
    text = rtsp_sink.encoder_chain(None, "nvv4l2h264enc", 25, 4000)
    assert "bitrate=4000000 " in text and "idrinterval=25 " in text


@pytest.mark.needs("cv2")
def test_rtsp_sink_picks_an_encoder_mounts_and_feeds_a_client(monkeypatch):
    """Kills media.rtsp_sink.xǁRTSPSinkǁopen_impl__mutmut_2 (no encoder picked),
    _mount__mutmut_46 (encoder_chain without fps), _mount__mutmut_69 (feeder thread without a
    target: nothing pushed) and _configure__mutmut_3 (appsrc looked up as "XXsrcXX")."""
    gst, factories = _fake_gst({"x264enc", "openh264enc"})
    monkeypatch.setattr(rtsp_sink, "load_gst", lambda: gst)
    sink = open_sink("rtsp://127.0.0.1:8554/cam?bitrate=2000")
    try:
        frame = Frame(np.zeros((24, 32, 3), np.uint8))
        sink.render(frame, _res())
        assert sink.encoder == "x264enc"
        (fac,) = factories
        assert "width=32,height=24,framerate=30/1" in fac.launch
        assert "x264enc tune=zerolatency speed-preset=ultrafast bitrate=2000 key-int-max=30" in fac.launch
        # a client connects: the shared media is configured with the factory's callback
        (sig, cb, data), = fac.callbacks
        assert sig == "media-configure"
        src = _FakeAppsrc()
        cb(fac, _FakeMedia(src), *data)
        assert src.props["max-bytes"] == 32 * 24 * 3 * 2
        sink.render(frame, _res(1))
        assert src.got.wait(5), "the feeder pushed nothing"
        assert len(src.pushed[0].data) == 32 * 24 * 3
    finally:
        sink.close()


# ---------------------------------------------------------------------------------------------
# shapes.py
# ---------------------------------------------------------------------------------------------
def _plain_scene(label, filled, vertices=None):
    return shapes.Scene(label=label, c0=(0.0, 0.0, 0.0), c1=(0.0, 0.0, 0.0), angle=0.0,
                        blobs=np.zeros((2, 2, 3), np.float32), noise=0, lines=[], cx=0.5, cy=0.5,
                        size=0.5, filled=filled, thickness=0.05, color=(255, 255, 255), vertices=vertices)


@pytest.mark.needs("cv2")
def test_render_filled_and_outlined_shapes_where_the_scene_puts_them():
    """Kills media.shapes.x_render__mutmut_75 (filled drawn as an outline), __mutmut_92 (circle
    drawn on None), __mutmut_94 (radius None) and __mutmut_117 (polygon x divided by 16)."""
    rng = np.random.RandomState(0)
    w, h = 80, 60  # min 60: size 0.5 -> radius 15 px around (40, 30)
    disc = shapes.render(_plain_scene(shapes.CIRCLE, True), w, h, rng)
    assert (disc[30, 40] == 255).all() and (disc[30, 40 + 12] == 255).all() and (disc[30, 40 + 20] == 0).all()
    ring = shapes.render(_plain_scene(shapes.CIRCLE, False), w, h, rng)
    assert (ring[30, 40] == 0).all() and (ring[30, 40 + 15] > 128).all()
    square = [(1.15 * math.cos(a), 1.15 * math.sin(a)) for a in (math.pi / 4 + k * math.pi / 2 for k in range(4))]
    sq = shapes.render(_plain_scene(shapes.SQUARE, True, square), w, h, rng)
    # half side 15 * 1.15 / sqrt(2) ~ 12 px: filled around the centre, background beyond
    assert (sq[30, 40] == 255).all() and (sq[30, 30] == 255).all() and (sq[30, 50] == 255).all()
    assert (sq[30, 25] == 0).all() and (sq[30, 55] == 0).all() and (sq[30, 5] == 0).all()


def test_contrasting_color_is_the_first_far_enough_draw():
    """Kills media.shapes.x__contrasting_color__mutmut_20 (green channel replaced by red)."""
    local = np.array([10.0, 200.0, 60.0])
    for seed in range(5):
        want = None
        ref = np.random.RandomState(seed)
        for _ in range(64):
            c = ref.randint(0, 256, size=3).astype(np.float64)
            if np.linalg.norm(c - local) >= shapes.MIN_CONTRAST:
                want = tuple(int(v) for v in c)
                break
        got = shapes._contrasting_color(np.random.RandomState(seed), local)
        assert got == want
        assert np.linalg.norm(np.array(got) - local) >= shapes.MIN_CONTRAST


def test_triangle_vertices_are_jittered_within_bounds():
    """Kills media.shapes.x__polygon__mutmut_49 (angle jitter uniform(0.17, 1) not +-0.17) and
    __mutmut_64 (x = r / cos(a))."""
    for seed in range(60):
        pts = shapes._polygon(np.random.RandomState(seed), shapes.TRIANGLE)
        assert len(pts) == 3
        for x, y in pts:
            assert 1.2 * 0.88 - 1e-9 <= math.hypot(x, y) <= 1.2 * 1.08 + 1e-9
        ang = [math.atan2(y, x) for x, y in pts]
        for a, b in zip(ang, ang[1:]):
            step = (b - a) % (2 * math.pi)
            assert abs(step - 2 * math.pi / 3) <= 0.34 + 1e-9, (seed, step)


@pytest.mark.needs("cv2")
def test_clip_frames_hold_scenes_and_keep_shapes_inside(monkeypatch):
    """Kills media.shapes.xǁShapeGeneratorǁclip_frames__mutmut_17 (sample_scene without height),
    __mutmut_108 (render with width None) and __mutmut_92 (drift not clipped at the far edge)."""
    frames = list(shapes.ShapeGenerator(3).clip_frames(7, 40, 30, hold=3))
    assert len(frames) == 7 and all(f.shape == (30, 40, 3) for f, _ in frames)
    labels = [lab for _, lab in frames]
    assert labels[0] == labels[1] == labels[2] and labels[3] == labels[4] == labels[5]

    seen = []

    def spy(scene, width, height, rng, dx=0.0, dy=0.0):
        seen.append((scene, width, height, dx, dy))
        return np.zeros((height, width, 3), np.uint8)

    monkeypatch.setattr(shapes, "render", spy)
    list(shapes.ShapeGenerator(5).clip_frames(400, 64, 48, hold=200))  # long holds drift to the edges
    for scene, width, height, dx, dy in seen:
        assert (width, height) == (64, 48)
        ex, ey = shapes._extent_wh(scene.extent(), width, height)
        assert min(ex, 0.5) - 1e-9 <= scene.cx + dx <= max(1 - ex, 0.5) + 1e-9
        assert min(ey, 0.5) - 1e-9 <= scene.cy + dy <= max(1 - ey, 0.5) + 1e-9
