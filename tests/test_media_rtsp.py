"""``rtsp://`` sink: URI grammar, the install hint, then ``jetson-deploy run`` read by real RTSP clients
(OpenCV's FFmpeg backend, two at once; an ``ffmpeg`` client frozen with SIGSTOP)."""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from jetson_deploy.errors import BadInput
from jetson_deploy.media.registry import open_sink
from jetson_deploy.media.rtsp_sink import RTSPSink, encoder_chain, load_gst
from support.live_run import Run, free_port, get_json

FFMPEG = shutil.which("ffmpeg")


def _rtsp_missing():
    """Why GStreamer's RTSP server cannot run here (None when it can)."""
    try:
        Gst = load_gst()[0]
    except BadInput as exc:
        return "GStreamer RTSP server unavailable: " + str(exc).split(" (", 1)[0]
    if not (Gst.ElementFactory.find("x264enc") or Gst.ElementFactory.find("openh264enc")):
        return "no GStreamer H.264 encoder (gstreamer1.0-plugins-ugly)"
    return None


def test_uri_grammar():
    s = open_sink("rtsp://@:8554/cam")
    assert isinstance(s, RTSPSink) and (s.host, s.port, s.path) == ("0.0.0.0", 8554, "/cam")
    s = RTSPSink("rtsp://127.0.0.1:9000/a/b?bitrate=800&encoder=openh264enc")
    assert (s.host, s.port, s.path, s.kbps, s.encoder) == ("127.0.0.1", 9000, "/a/b", 800, "openh264enc")
    assert RTSPSink("rtsp://@").path == "/stream"
    with pytest.raises(BadInput, match="rtsp://@:8554/NAME"):
        RTSPSink("rtsp://@:x/a")
    assert "nvv4l2h264enc" in encoder_chain(None, "nvv4l2h264enc", 30, 4000)
    assert "tune=zerolatency" in encoder_chain(None, "x264enc", 30, 4000)


def test_missing_bindings_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gi", None)  # import gi -> ImportError
    with pytest.raises(BadInput) as e:
        load_gst()
    msg = str(e.value)
    assert "\n" not in msg and "gir1.2-gst-rtsp-server-1.0" in msg and "python3-gi" in msg and "PyGObject" in msg


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from support.runtime import make_bundle

    return make_bundle(tmp_path_factory.mktemp("rtspb"))


def _read(url, n, out):
    import cv2

    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    end = time.time() + 20
    try:
        while len(out) < n and time.time() < end:
            ok, f = cap.read()
            if ok:
                out.append(f)
    finally:
        cap.release()


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.needs("gi", "cv2", "onnx", "onnxruntime")
def test_rtsp_clients_get_annotated_frames_and_a_frozen_one_costs_nothing(bundle):
    why = _rtsp_missing()
    if why:
        pytest.skip(why)
    rport, hport = free_port(), free_port()
    url = "rtsp://127.0.0.1:{}/live".format(rport)
    base = "http://127.0.0.1:{}/".format(hport)  # the live view's /stats measures the frame loop
    run = Run(bundle, "synthetic://320x240@30", url, extra=["--sink", base])
    frozen = None
    try:
        run.wait_url(base)
        got = [[], []]  # two clients at once on the one shared media
        ts = [threading.Thread(target=_read, args=(url, 15, g)) for g in got]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert [len(g) for g in got] == [15, 15], run.stderr()
        assert all(f.shape == (240, 320, 3) for g in got for f in g)
        corner = got[0][-1][4:50, 4:90].astype(int)  # the overlay's black label box, white text
        assert (corner.max(axis=2) < 24).mean() > 0.2 and (corner.min(axis=2) > 190).mean() > 0.02
        if FFMPEG is None:
            return
        _frames_advance(base, 30)
        frozen = subprocess.Popen([FFMPEG, "-v", "quiet", "-rtsp_transport", "tcp", "-i", url, "-f", "null", "-"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_tcp_client(frozen.pid, rport)
        _wait_streamed(rport, 50000)  # mid-stream: it has taken in 50 kB of video
        os.kill(frozen.pid, signal.SIGSTOP)  # a client that stops reading mid-stream
        # counted in frames, not timed: ~300 frames fill its socket, and the frame loop goes on after
        _frames_advance(base, 300)
        _frames_advance(base, 60)
    finally:
        if frozen is not None:
            frozen.kill()
            os.kill(frozen.pid, signal.SIGCONT) if frozen.poll() is None else None
            frozen.wait(10)
        rc = run.stop()
    assert rc == 0, run.stderr()
    assert "rtsp stream: rtsp://127.0.0.1:{}/live (".format(rport) in run.stderr()


def _frames_advance(base, n, guard=90.0):
    """Wait until the frame loop has rendered ``n`` more frames (the live view's /stats count: a
    loaded machine is slower, never wrong).  ``guard`` only turns a stalled loop into a failure."""
    start = get_json(base + "stats")["frames"]
    end = time.monotonic() + guard
    got = start
    while time.monotonic() < end:
        got = get_json(base + "stats")["frames"]
        if got >= start + n:
            return
        time.sleep(0.05)
    raise AssertionError("the frame loop stalled: {} of {} frames rendered".format(got - start, n))


def _wait_for_tcp_client(pid, port, guard=60.0):
    """Until process ``pid`` holds an established TCP connection to ``port`` (from /proc, no clock)."""
    end = time.monotonic() + guard
    want = ":{:04X}".format(port)
    while time.monotonic() < end:
        try:
            inodes = {os.readlink("/proc/{}/fd/{}".format(pid, fd)) for fd in os.listdir("/proc/{}/fd".format(pid))}
        except OSError:
            inodes = set()
        with open("/proc/net/tcp") as f:
            for line in f.read().splitlines()[1:]:
                parts = line.split()
                if parts[2].endswith(want) and parts[3] == "01" and "socket:[{}]".format(parts[9]) in inodes:
                    return
        time.sleep(0.05)
    raise AssertionError("ffmpeg never connected to the RTSP server")


def _acked(port):
    """Bytes the server side of established TCP connections on ``port`` has had acknowledged
    (``ss``, the kernel's tcp_info): what the clients have received."""
    out = subprocess.run(["ss", "-tniH", "state", "established", "( sport = :{} )".format(port)],
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    return sum(int(n) for n in re.findall(r"bytes_acked:(\d+)", out))


def _wait_streamed(port, nbytes, guard=60.0):
    """Until the RTSP server has delivered ``nbytes`` more over TCP (a count, no clock); without
    ``ss`` only the connection itself was waited for."""
    if shutil.which("ss") is None:
        return
    start, end = _acked(port), time.monotonic() + guard
    while _acked(port) < start + nbytes:
        assert time.monotonic() < end, "ffmpeg took in no video"
        time.sleep(0.05)
