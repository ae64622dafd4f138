"""``http://`` live view: URI grammar and token rules, then ``jetson-deploy run`` read by real clients
(headless Chromium's screenshot, a raw MJPEG reader, a client that never reads)."""
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from jetson_deploy.errors import BadInput
from jetson_deploy.media.http_sink import HTTPSink
from jetson_deploy.media.live import LatestSlot, LiveFigures, split_host_port
from jetson_deploy.media.registry import open_sink
from jetson_deploy.runtime.postprocess import Result
from support import tool
from support.live_run import Run, free_port, get_json

CHROMIUM = tool("chromium")


def _res(index, label="red", lat=2.0):
    r = Result("classify")
    r.index, r.label, r.score, r.latency_ms = index, label, 0.9, lat
    return r


def test_uri_grammar_and_token_rules():
    s = open_sink("http://@:8090/")
    assert isinstance(s, HTTPSink) and (s.host, s.port, s.token) == ("127.0.0.1", 8090, None)
    assert (HTTPSink("http://127.0.0.1/").port, HTTPSink("http://localhost:81/").token) == (8080, None)
    wide = HTTPSink("http://0.0.0.0:8080/")
    assert wide.token and len(wide.token) >= 16 and "?token=" + wide.token in wide.url
    assert not wide.authorized({}, "") and not wide.authorized({"token": ["nope"]}, "")
    assert wide.authorized({"token": [wide.token]}, "") and wide.authorized({}, "a=b; jd_token=" + wide.token)
    assert HTTPSink("http://0.0.0.0:8080/?token=abcdefghijklmnop").token == "abcdefghijklmnop"
    assert HTTPSink("http://127.0.0.1:8080/?token=abcdefghijklmnop").token == "abcdefghijklmnop"  # asked for on loopback too
    assert split_host_port("[::1]:9", "x", 1) == ("::1", 9)
    with pytest.raises(BadInput, match="http://"):
        HTTPSink("http://@:port/")


def test_latest_slot_drops_and_figures():
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(0.01) == 4 and slot.dropped == 4 and slot.take(0.01) is None
    fig = LiveFigures()
    for i in [0, 1, 2, 5, 6]:  # 3 and 4 never reached the sinks: dropped at the source
        fig.add(_res(i, lat=float(i)), 30.0)
    s = fig.snapshot()
    assert s["frames"] == 5 and s["dropped_source"] == 2 and s["latency_ms_p50"] == 2.0
    assert s["labels"][0] == "red 0.90" and s["fps"] == 30.0


# -- live: jetson-deploy run as a subprocess ------------------------------------------------------

@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from support.runtime import make_bundle

    return make_bundle(tmp_path_factory.mktemp("httpb"))


def status(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            r.read(1)
            return r.status if hasattr(r, "status") else r.getcode()
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.needs("cv2", "onnx", "onnxruntime")
@pytest.mark.needs("bin:chromium")
def test_browser_shows_annotated_frame_and_figures(bundle, tmp_path):
    import cv2

    port = free_port()
    run = Run(bundle, "synthetic://320x240@15", "http://127.0.0.1:{}/".format(port))
    try:
        run.wait_url("http://127.0.0.1:{}/".format(port))
        shot = tmp_path / "page.png"
        prof = tmp_path / "profile"
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--user-data-dir=" + str(prof), "--window-size=800,400", "--virtual-time-budget=4000",
               "--screenshot=" + str(shot), "http://127.0.0.1:{}/".format(port)]
        subprocess.call(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        assert shot.exists(), "chromium wrote no screenshot"
        img = cv2.imread(str(shot))
        stats = get_json("http://127.0.0.1:{}/stats".format(port))
    finally:
        assert run.stop() == 0
    # the page lays the 320x240 stream out at (16, 16); the overlay's label box is black with
    # white text in the frame's top-left corner, drawn by the sink (the synthetic frames have neither)
    frame = img[16:16 + 240, 16:16 + 320].astype(int)
    corner = frame[4:60, 4:100]
    black = (corner.max(axis=2) < 16).mean()
    white = (corner.min(axis=2) > 200).mean()
    assert black > 0.2 and white > 0.02, "no overlay in the frame's corner (black {:.2f} white {:.2f})".format(black, white)
    page_bg = (np.abs(frame - 17).max(axis=2) < 4).mean()
    assert page_bg < 0.2, "the stream is not on the page"
    # the figures panel turns its border green (#00c853) once /stats answered and filled it in
    green = ((np.abs(img[:, 330:].astype(int) - (83, 200, 0)).max(axis=2)) < 30).sum()
    assert green > 500, "the figures panel never went live"
    assert stats["frames"] > 0 and stats["fps"] and stats["latency_ms_p50"] is not None and stats["labels"]


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.needs("cv2", "onnx", "onnxruntime")
def test_token_required_when_asked_for(bundle):
    port = free_port()
    base = "http://127.0.0.1:{}/".format(port)
    run = Run(bundle, "synthetic://160x120@15", base + "?token=s3cret-t0ken-long-enough")
    try:
        run.wait_url(base, headers={"Cookie": "jd_token=s3cret-t0ken-long-enough"})
        assert status(base) == 403 and status(base + "stats") == 403 and status(base + "stream.mjpg") == 403
        assert status(base + "?token=wrong") == 403 and status(base + "stats", {"Cookie": "jd_token=wrong"}) == 403
        with urllib.request.urlopen(base + "?token=s3cret-t0ken-long-enough", timeout=5) as r:
            assert r.getcode() == 200 and "jd_token=s3cret-t0ken-long-enough" in r.headers.get("Set-Cookie", "")
            assert b"stream.mjpg" in r.read()
        assert status(base + "frame.jpg?token=s3cret-t0ken-long-enough") == 200
    finally:
        assert run.stop() == 0
    assert "?token=<redacted>" in run.stderr() and "s3cret" not in run.stderr()  # a given token is never echoed


def _reader(url, stop, counter):
    """A well-behaved MJPEG client: reads and counts JPEG parts."""
    with urllib.request.urlopen(url, timeout=10) as r:
        buf = b""
        while not stop.is_set():
            chunk = r.read(16384)
            if not chunk:
                return
            buf = (buf + chunk)[-65536:]
            counter[0] += chunk.count(b"\xff\xd8\xff")


def _frames_advance(base, n, guard=90.0):
    """Wait until the frame loop has rendered ``n`` more frames (the run's own /stats count, not a
    rate: a loaded machine is slower, never wrong).  ``guard`` only turns a stalled loop into a failure."""
    start = get_json(base + "stats")["frames"]
    end = time.monotonic() + guard
    s = {"frames": start}
    while time.monotonic() < end:
        s = get_json(base + "stats")
        if s["frames"] >= start + n:
            return s
        time.sleep(0.05)
    raise AssertionError("the frame loop stalled: {} of {} frames rendered".format(s["frames"] - start, n))


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.needs("cv2", "onnx", "onnxruntime")
def test_stalled_client_leaves_the_frame_loop_running(bundle):
    """A client that connects and never reads blocks its own server thread once the socket buffers
    are full; the frame loop and the other clients go on.  Counted in frames, not timed: how fast
    the loop runs beside it is a benchmark's question, not a test's."""
    port = free_port()
    base = "http://127.0.0.1:{}/".format(port)
    run = Run(bundle, "synthetic://320x240@60", base)
    stop, got = threading.Event(), [0]
    stalled = None
    try:
        run.wait_url(base)
        t = threading.Thread(target=_reader, args=(base + "stream.mjpg", stop, got), daemon=True)
        t.start()
        _frames_advance(base, 30)
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall("GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n".format(port).encode())  # ... and never reads
        # ~300 JPEGs of 320x240 (several MB) fill any socket buffer: its server thread now blocks
        sent = _frames_advance(base, 300)
        seen = got[0]
        stats = _frames_advance(base, 60)  # ... and the loop goes on
        assert stats["clients"] >= 2 and sent["clients"] >= 2
        end = time.monotonic() + 90
        while got[0] <= seen and time.monotonic() < end:  # the reading client still gets new frames
            time.sleep(0.05)
        assert got[0] > seen, "the reading client stopped getting frames"
    finally:
        stop.set()
        rc = run.stop()
        if stalled is not None:
            stalled.close()
    assert rc == 0
    assert re.search(r"ended: interrupted|frames in", run.stderr())


def test_latest_slot_keeps_the_newest_frame_of_every_stream():
    """Several sources into one live view: each stream keeps its newest frame, none starves."""
    slot = LatestSlot()
    for i in range(4):
        slot.put(("a", i), key=0)
        slot.put(("b", i), key=1)
    assert slot.dropped == 6
    assert {slot.take(0.01), slot.take(0.01)} == {("a", 3), ("b", 3)} and slot.take(0.01) is None


@pytest.mark.needs("cv2")
def test_each_source_gets_its_own_stream(tmp_path):
    """`?source=K` serves source K's frames (frame.stream = K in multi-source runs)."""
    import cv2

    from jetson_deploy.media.sources import Frame

    sink = HTTPSink("http://127.0.0.1:{}/".format(free_port()))  # opens (listens) at its first frame
    try:
        sink.clients = 1  # frames are encoded only while someone watches
        colours = {0: (0, 0, 255), 1: (255, 0, 0)}  # BGR red for source 0, blue for source 1
        for i in range(6):
            for k, c in colours.items():
                f = Frame(np.full((120, 160, 3), c, np.uint8), index=i)
                f.stream = k
                sink.render(f, _res(i), 30.0)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(sink.streams[k].jpeg for k in colours):
            time.sleep(0.02)
        for k, c in colours.items():
            body = urllib.request.urlopen("{}frame.jpg?source={}".format(sink.url.split("?")[0], k), timeout=5).read()
            img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert img.shape == (120, 160, 3)
            np.testing.assert_allclose(img[100, 80].astype(int), c, atol=40)  # below the label box
    finally:
        sink.clients = 0
        sink.close()


# -- issue #29.5 / #29.6: slots that come back, and answering only to its own name -----------------
def _raw(port, path, host=None, read=True):
    """One raw request; HOST the Host header (default the bound address). The status code, or None
    when READ is False (the client hangs up at once)."""
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        c.sendall("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n".format(path, host or "127.0.0.1:{}".format(port)).encode())
        if not read:
            return None
        head = b""
        while b"\r\n" not in head:
            chunk = c.recv(64)
            if not chunk:
                break
            head += chunk
        return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else None
    finally:
        c.close()


@pytest.mark.timeout(120)
@pytest.mark.needs("cv2", "onnx", "onnxruntime")
def test_unknown_source_is_404_and_hung_up_viewers_free_their_slots(bundle):
    """#29.5: sixteen `stream.mjpg?source=7` that hung up kept all 16 slots for the rest of the run (503)."""
    port = free_port()
    base = "http://127.0.0.1:{}/".format(port)
    run = Run(bundle, "synthetic://96x64@15", base)
    try:
        run.wait_url(base)
        assert _raw(port, "/stream.mjpg?source=7") == 404 and _raw(port, "/frame.jpg?source=7") == 404
        assert _raw(port, "/stream.mjpg?source=x") == 404
        for path in ["/stream.mjpg?source=7"] * 16 + ["/stream.mjpg?source=0"] * 16:
            _raw(port, path, read=False)
        deadline = time.time() + 20
        while get_json(base + "stats")["clients"] and time.time() < deadline:
            time.sleep(0.2)
        assert get_json(base + "stats")["clients"] == 0  # every slot came back
        assert _raw(port, "/stream.mjpg?source=0") == 200 and status(base + "frame.jpg") == 200
    finally:
        assert run.stop() == 0


@pytest.mark.timeout(120)
@pytest.mark.needs("cv2", "onnx", "onnxruntime")
def test_dns_rebinding_gets_403_without_a_token(bundle):
    """#29.6: a page at attacker.example rebound to 127.0.0.1 sends `Host: attacker.example`."""
    port = free_port()
    base = "http://127.0.0.1:{}/".format(port)
    run = Run(bundle, "synthetic://96x64@15", base)
    try:
        run.wait_url(base)
        for host in ("attacker.example", "attacker.example:{}".format(port), "127.0.0.1.nip.io:{}".format(port),
                     "127.0.0.1:{}".format(port + 1), "localhost"):
            for path in ("/frame.jpg", "/stats", "/", "/stream.mjpg"):
                assert _raw(port, path, host=host) == 403, (host, path)
        for host in ("127.0.0.1:{}".format(port), "localhost:{}".format(port), "LOCALHOST:{}".format(port)):
            assert _raw(port, "/frame.jpg", host=host) == 200, host
    finally:
        assert run.stop() == 0


@pytest.mark.timeout(120)
@pytest.mark.needs("cv2", "onnx", "onnxruntime")
def test_ipv6_loopback_and_a_token_from_the_environment(bundle, tmp_path):
    """#29.7: http://[::1]:PORT/ failed although ::1 is loopback; a token from $JETSON_DEPLOY_HTTP_TOKEN
    (the service's root-only environment file) keeps it off the command line, and is never echoed."""
    s = socket.socket(socket.AF_INET6)
    try:
        s.bind(("::1", 0))
    except OSError:
        pytest.fail("this machine has no IPv6 loopback")
    port = s.getsockname()[1]
    s.close()
    token = "tok-" + "x" * 20
    os.environ["JETSON_DEPLOY_HTTP_TOKEN"] = token
    try:
        run = Run(bundle, "synthetic://96x64@15", "http://[::1]:{}/".format(port), extra=["--json"])
    finally:
        del os.environ["JETSON_DEPLOY_HTTP_TOKEN"]
    base = "http://[::1]:{}/".format(port)
    try:
        run.wait_url(base, headers={"Cookie": "jd_token=" + token})
        assert status(base + "frame.jpg") == 403 and status(base + "frame.jpg?token=" + token) == 200
        assert token not in " ".join(run.p.args) if hasattr(run.p, "args") else True
    finally:
        assert run.stop() == 0
    assert token not in run.stderr()
