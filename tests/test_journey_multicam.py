"""Journey (issue #27): two cameras through one engine, each with its own log, watched in a browser.

``jetson-deploy run`` as a subprocess with two live sources of different sizes (``synthetic://``
paced like cameras), a jsonl per source, one for both, and the ``http://`` live view; a real
headless Chromium opens the page while the run goes on, the live view serves each source's own
frames, and Ctrl-C ends the run cleanly with every log whole.
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from support import tool
from support.live_run import free_port, get_json

ROOT = Path(__file__).resolve().parent.parent


def _wait_stats(base: str, p: "subprocess.Popen", err_path: Path, timeout: float = 60.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        assert p.poll() is None, "run exited early:\n" + err_path.read_text()
        try:
            stats = get_json(base + "stats")
            if stats.get("frames", 0) > 10 and len(stats.get("streams", [])) == 2:
                return stats
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError("no live view with both streams after {} s:\n{}".format(timeout, err_path.read_text()))


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.needs("cv2", "onnx", "onnxruntime", "bin:chromium")
def test_two_cameras_one_engine_watched_in_a_browser(demo_bundle, tmp_path):
    import cv2

    port = free_port()
    base = "http://127.0.0.1:{}/".format(port)
    err = tmp_path / "run.err"
    cmd = [sys.executable, "-m", "jetson_deploy", "run", str(demo_bundle),
           "--source", "synthetic://320x240@15?seed=1", "--source", "synthetic://160x120@15?seed=2",
           "--sink", "0=cam0.jsonl", "--sink", "1=cam1.jsonl", "--sink", "both.jsonl", "--sink", base,
           "--interval", "0", "--json"]
    with open(str(err), "w") as ef, open(str(tmp_path / "run.out"), "w") as of:
        p = subprocess.Popen(cmd, cwd=str(tmp_path), stdout=of, stderr=ef, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        stats = _wait_stats(base, p, err)
        assert stats["streams"] == [0, 1] and stats["fps"] and stats["labels"]
        for k, size in ((0, (240, 320)), (1, (120, 160))):  # each source's own frames, at its own size
            body = urllib.request.urlopen("{}frame.jpg?source={}".format(base, k), timeout=5).read()
            assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape[:2] == size
        shot = tmp_path / "page.png"
        subprocess.call([tool("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                         "--user-data-dir=" + str(tmp_path / "profile"), "--window-size=800,400", "--virtual-time-budget=4000",
                         "--screenshot=" + str(shot), base], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90)
        img = cv2.imread(str(shot))
        assert img is not None, "chromium wrote no screenshot"
        frame = img[16:16 + 240, 16:16 + 320].astype(int)  # the page lays source 0's stream out at (16, 16)
        assert (np.abs(frame - 17).max(axis=2) < 4).mean() < 0.2, "the stream is not on the page"
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        rc = p.wait(30)
    assert rc == 0, err.read_text()
    summary = json.loads((tmp_path / "run.out").read_text().strip().splitlines()[-1])
    assert summary["frames"] > 0 and [s["index"] for s in summary["sources"]] == [0, 1]
    rows = {k: [json.loads(ln) for ln in (tmp_path / "cam{}.jsonl".format(k)).read_text().splitlines()] for k in (0, 1)}
    both = [json.loads(ln) for ln in (tmp_path / "both.jsonl").read_text().splitlines()]
    for k in (0, 1):
        assert rows[k] and all(r["stream"] == k for r in rows[k]), k
        assert [r["index"] for r in rows[k]] == sorted(r["index"] for r in rows[k])  # frame numbers in order, per source
    assert len(both) == len(rows[0]) + len(rows[1]) == summary["frames"]
    assert "accuracy" in summary and summary["accuracy"] >= 0.9  # the synthetic sources draw the demo bundle's labels
