"""Sinks and overlays: URI dispatch, atomic publication, display errors, overlays per task."""
import json

import numpy as np
import pytest

from jetson_deploy.errors import BadInput
from jetson_deploy.media.registry import open_sink
from jetson_deploy.media.sinks import DisplaySink, JsonlSink, NullSink, VideoSink
from jetson_deploy.media.sources import Frame
from jetson_deploy.runtime.postprocess import Detection, Result


def _res(label="red", score=0.9, index=0):
    r = Result("classify")
    r.index, r.source, r.label, r.score, r.class_id, r.latency_ms = index, index, label, score, 2, 1.5
    r.topk = [(label, score)]
    return r


def test_open_sink_dispatch(tmp_path):
    assert isinstance(open_sink("null://"), NullSink)
    assert isinstance(open_sink(None), NullSink)
    assert isinstance(open_sink("display://0"), DisplaySink)
    assert isinstance(open_sink(str(tmp_path / "a.jsonl")), JsonlSink)
    assert isinstance(open_sink(str(tmp_path / "a.mp4")), VideoSink)
    assert isinstance(open_sink("file://" + str(tmp_path / "a.avi")), VideoSink)
    with pytest.raises(BadInput, match="unknown file type"):
        open_sink(str(tmp_path / "a.txt"))
    with pytest.raises(BadInput, match="display://0"):
        open_sink("udp://host:5000")


def test_jsonl_is_a_log_readable_while_the_run_goes_on(tmp_path):
    """#29.16: lines reach the final file as they are made (tail -f), no NAME.partial."""
    p = tmp_path / "out.jsonl"
    p.write_text("an earlier run's results\n")
    s = open_sink(str(p))
    img = np.zeros((4, 4, 3), np.uint8)
    for i in range(3):
        s.render(Frame(img, index=i, source=i), _res(index=i))
        assert len(p.read_text().splitlines()) == i + 1
    s.close()
    rows = [json.loads(x) for x in p.read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert all({"index", "source", "label", "score", "latency_ms"} <= set(r) for r in rows)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.jsonl"]


def test_jsonl_never_writes_through_a_symlink(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me\n")
    (tmp_path / "out.jsonl").symlink_to(target)
    s = open_sink(str(tmp_path / "out.jsonl"))
    s.render(Frame(np.zeros((4, 4, 3), np.uint8), index=0, source=0), _res())
    s.close()
    assert target.read_text() == "keep me\n" and not (tmp_path / "out.jsonl").is_symlink()


@pytest.mark.needs("cv2")
def test_video_sink_abort_leaves_nothing(tmp_path):
    import cv2  # noqa: F401
    p = tmp_path / "v.avi"
    s = open_sink(str(p))
    s.render(Frame(np.zeros((32, 48, 3), np.uint8)), _res())
    s.abort()
    assert not p.exists() and not list(tmp_path.iterdir())


@pytest.mark.needs("cv2")
def test_video_sink_does_not_modify_the_frame(tmp_path):
    import cv2  # noqa: F401
    img = np.full((48, 64, 3), 200, np.uint8)
    before = img.copy()
    s = open_sink(str(tmp_path / "v.avi"), fps=12)
    s.render(Frame(img), _res(), fps=33.3)
    s.close()
    assert np.array_equal(img, before) and (tmp_path / "v.avi").stat().st_size > 0


@pytest.mark.needs("cv2")
def test_display_without_screen_is_a_clear_error(monkeypatch):
    import cv2  # noqa: F401
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    s = open_sink("display://0")
    with pytest.raises(BadInput, match="display://"):
        s.render(Frame(np.zeros((8, 8, 3), np.uint8)), _res())


@pytest.mark.needs("cv2")
def test_overlays_draw_each_task():
    import cv2  # noqa: F401
    from jetson_deploy.media.overlay import draw

    base = np.full((120, 160, 3), 90, np.uint8)
    cls = draw(base.copy(), _res(), fps=10.0)
    assert not np.array_equal(cls, base)
    d = Result("detect")
    d.detections = [Detection([20, 30, 80, 90], 0.8, 1, "square")]
    det = draw(base.copy(), d)
    assert not np.array_equal(det[30, 20:80], base[30, 20:80])  # box edge drawn
    assert np.array_equal(det[60, 50], base[60, 50])  # inside untouched
    s = Result("segment")
    s.mask = np.zeros((10, 10), np.int32)
    s.mask[5:, 5:] = 2
    s.label, s.score, s.num_classes = "x", 0.25, 3
    seg = draw(base.copy(), s, fps=None)
    assert np.array_equal(seg[60, 20], base[60, 20]) and not np.array_equal(seg[110, 150], base[110, 150])  # background (clear of the label box) untouched
