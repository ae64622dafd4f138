"""The network sinks' hand-over: the latest-wins store serves the stream waiting longest, and the RTSP
feeder drops (never pushes) a frame while the encoder says it is full."""
import time

import numpy as np
import pytest

from jetson_deploy.errors import BadInput
from jetson_deploy.media.live import LatestSlot
from jetson_deploy.runtime.postprocess import Result


def test_latest_slot_serves_the_stream_waiting_longest_first():
    """A fast stream re-putting its frame must not jump ahead of a slower one (it would starve it)."""
    slot = LatestSlot()
    slot.put("a", key=0)
    slot.put("b", key=1)
    slot.put("a2", key=0)  # stream 0 again before anything was taken: "a" is dropped, 0 goes to the back
    assert slot.dropped == 1
    assert [slot.take(0.01), slot.take(0.01), slot.take(0.01)] == ["b", "a2", None]


def test_latest_slot_streams_take_turns():
    slot = LatestSlot()
    slot.put("a0", key=0)
    slot.put("b0", key=1)
    assert slot.take(0.01) == "a0"
    slot.put("a1", key=0)  # stream 0 was just served: it queues behind stream 1
    assert [slot.take(0.01), slot.take(0.01)] == ["b0", "a1"] and slot.dropped == 0


class _OneItem:
    """Stands in for the feeder's slot for exactly one step: hands out one item, then stops the sink."""

    def __init__(self, item, stop):
        self.item, self.stop = item, stop

    def take(self, timeout=0.5):
        item, self.item = self.item, None
        if item is None:
            self.stop.set()
        return item


def _rtsp_feed_step(full):
    """One real feeder step into a real appsrc (appsrc ! appsink): (pushed, dropped, buffers seen)."""
    from jetson_deploy.media.rtsp_sink import RTSPSink, _Stream, load_gst

    try:
        Gst = load_gst()[0]
    except BadInput as exc:
        pytest.skip("GStreamer RTSP server unavailable: " + str(exc).split(" (", 1)[0])
    w, h = 32, 24
    pipe = Gst.parse_launch("appsrc name=src is-live=true format=time caps=video/x-raw,format=BGR,width={},height={},"
                            "framerate=30/1 ! appsink name=sink sync=false".format(w, h))
    pipe.set_state(Gst.State.PLAYING)
    try:
        sink = RTSPSink("rtsp://127.0.0.1:1/x")
        sink._gst = load_gst()
        st = _Stream("/x")
        st.size, st.t0, st.appsrc, st.full = (w, h), time.monotonic(), pipe.get_by_name("src"), full
        r = Result("classify")
        r.index, r.label, r.score = 0, "red", 0.9
        st.slot = _OneItem((np.zeros((h, w, 3), np.uint8), r, 30.0), sink._stop)
        sink._feed(st)  # returns once the one item was handled
        got = 0
        while pipe.get_by_name("sink").emit("try-pull-sample", Gst.SECOND if not full and got == 0 else 0) is not None:
            got += 1
        return st.pushed, st.dropped, got
    finally:
        pipe.set_state(Gst.State.NULL)


@pytest.mark.needs("gi", "cv2")
def test_rtsp_feeder_drops_a_frame_while_the_encoder_is_full():
    assert _rtsp_feed_step(full=True) == (0, 1, 0)  # counted as dropped, nothing pushed
    assert _rtsp_feed_step(full=False) == (1, 0, 1)  # the same step with room pushes exactly one buffer
