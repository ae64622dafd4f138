"""Stopping a live run by a signal (issue #29 item 16): SIGTERM is what ``docker stop``, ``kill`` and
systemd send, and it must publish a live run's results as Ctrl-C does.  A ``.jsonl`` sink is a log
that ``tail -f`` follows while the run goes on.

Each test runs ``python -m jetson_deploy run`` as a subprocess on a paced synthetic camera (it runs
until stopped) and sends the signal to it.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.runtime import make_bundle

pytestmark = pytest.mark.needs("onnxruntime", "cv2")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("sig") / "colors-1.0.0")


def start(bundle, tmp, sinks, extra=()):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp))
    args = [sys.executable, "-m", "jetson_deploy", "run", str(bundle), "--source", "synthetic://64x48@30",
            "--backend", "onnxruntime", "--interval", "0"] + [a for s in sinks for a in ("--sink", str(s))] + list(extra)
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, universal_newlines=True)


def lines(path):
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_lines(p, path, n, timeout=60.0):
    """Wait until the live run's .jsonl has N whole lines (it is written while the run goes on)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert p.poll() is None, p.communicate()[1]
        got = lines(path)
        if len(got) >= n:
            return got
        time.sleep(0.05)
    raise AssertionError("no {} lines in {} within {} s".format(n, path, timeout))


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name or p.name.startswith(".jd-"))


def frame_count(video):
    import cv2

    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_publishes_a_live_runs_results(bundle, tmp_path, sig):
    out = tmp_path / "out"
    out.mkdir()
    jsonl, video = out / "pred.jsonl", out / "annotated.avi"
    p = start(bundle, tmp_path, [jsonl, video])
    seen = wait_lines(p, jsonl, 10)  # readable while the run goes on: tail -f works
    assert all(json.loads(x)["task"] == "classify" for x in seen)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, (p.returncode, err)
    assert "ended: interrupted" in err and "Traceback" not in err, err
    rows = [json.loads(x) for x in lines(jsonl)]
    idx = [r["index"] for r in rows]
    assert len(rows) >= len(seen) and idx == sorted(set(idx))
    assert frame_count(video) == len(rows)  # the video holds every frame the log does
    assert leftovers(out) == [] and list((tmp_path / "tmp").iterdir()) == [] if (tmp_path / "tmp").exists() else True


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("delay", [0.0, 0.02, 0.1, 0.3])
def test_a_second_signal_while_publishing_exits_with_its_code(bundle, tmp_path, sig, code, delay):
    """Stopped again while draining or publishing: 130/143 (never death by the signal, -2/-15), no
    temporary file left, and the log holds whole lines only."""
    out = tmp_path / "out"
    out.mkdir()
    jsonl = out / "pred.jsonl"
    p = start(bundle, tmp_path, [jsonl, out / "annotated.avi", "http://127.0.0.1:0/"])
    wait_lines(p, jsonl, 5)
    p.send_signal(sig)
    time.sleep(delay)
    if p.poll() is None:
        p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode in (0, code), (p.returncode, err)
    assert "Traceback" not in err, err
    assert leftovers(out) == [], leftovers(out)
    assert all(json.loads(x)["task"] == "classify" for x in lines(jsonl))
    if p.returncode == code:
        assert len([ln for ln in err.splitlines() if ln.startswith("Error:")]) == 1, err


def test_jsonl_rotates_by_size_and_keeps_every_line(tmp_path):
    """A long run's log is rotated (``pred.jsonl.1``, ...), never overwritten."""
    import numpy as np

    from jetson_deploy.media.sinks import JsonlSink
    from jetson_deploy.media.sources import Frame
    from jetson_deploy.runtime.postprocess import Result

    (tmp_path / "pred.jsonl.1").write_text("kept from an earlier run\n")
    s = JsonlSink(str(tmp_path / "pred.jsonl"), rotate_bytes=400)
    for i in range(20):
        r = Result("classify")
        r.index, r.source, r.label, r.score = i, i, "red", 0.5
        s.render(Frame(np.zeros((2, 2, 3), np.uint8), index=i), r)
        if i == 2:
            assert len(lines(tmp_path / "pred.jsonl")) == 3  # on disk as it runs
    s.close()
    assert (tmp_path / "pred.jsonl.1").read_text() == "kept from an earlier run\n"
    files = [tmp_path / "pred.jsonl.{}".format(n) for n in range(2, 2 + len(s.rotated))] + [tmp_path / "pred.jsonl"]
    assert s.rotated and all(os.path.getsize(str(f)) <= 400 for f in files)
    rows = [json.loads(x) for f in files for x in lines(f)]
    assert [r["index"] for r in rows] == list(range(20))


def test_a_sink_interrupted_while_publishing_is_aborted_and_so_are_the_rest():
    """close_sinks: the sink whose close is interrupted (a second signal) and every one after it are
    aborted (their temporaries removed), and the interruption surfaces (then exit 130/143)."""
    from jetson_deploy.runtime.session import close_sinks

    class S:
        def __init__(self, fail=False):
            self.fail, self.log = fail, []

        def close(self):
            self.log.append("close")
            if self.fail:
                raise KeyboardInterrupt()

        def abort(self):
            self.log.append("abort")

    a, b, c = S(), S(fail=True), S()
    with pytest.raises(KeyboardInterrupt):
        close_sinks([a, b, c], publish=True)
    assert (a.log, b.log, c.log) == (["close"], ["close", "abort"], ["abort"])
    d = S()
    close_sinks([d], publish=False)
    assert d.log == ["abort"]
