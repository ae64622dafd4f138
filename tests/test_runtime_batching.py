"""The batch former on its own: at most one frame per source in a batch, whatever the queues hold.

Driven with stand-in capture queues (the former reads only ``get(timeout=0)`` and ``finished``)
so the test decides exactly what each source has queued; no timing decides the outcome.
"""
import threading
from collections import deque

from jetson_deploy.runtime.batching import BatchFormer, SourceState


class Queued:
    """A capture thread's consumer side with a fixed queue: ``get`` pops, never blocks."""

    def __init__(self, frames, finished=False):
        self.q = deque(frames)
        self._finished = finished

    def get(self, timeout=None):
        return self.q.popleft() if self.q else None

    @property
    def finished(self):
        return self._finished and not self.q


def _states(*caps):
    states = []
    for i, cap in enumerate(caps):
        st = SourceState(i, source=None)
        st.cap = cap
        states.append(st)
    return states


def test_a_batch_never_takes_two_frames_of_one_source():
    # A has three frames queued, B none yet (still running): form(2) waits for B within its
    # timeout, scans again, and must still return A's one row, never A's next frame as row 2
    a, b = Queued(["a0", "a1", "a2"]), Queued([])
    states = _states(a, b)
    former = BatchFormer(states, threading.Event(), timeout=0.05)
    rows = former.form(2, idle_wait=0.05)
    assert [(st.index, f) for st, f in rows] == [(0, "a0")]
    assert list(a.q) == ["a1", "a2"]
    # B's frame arrives: the next batch starts with B (round-robin after A) and takes one of each
    b.q.append("b0")
    rows = former.form(2, idle_wait=0.05)
    assert [(st.index, f) for st, f in rows] == [(1, "b0"), (0, "a1")]


def test_an_ended_source_is_skipped_and_a_finished_one_is_not_waited_for():
    a, b = Queued(["a0", "a1"]), Queued([], finished=True)
    states = _states(a, b)
    former = BatchFormer(states, threading.Event(), timeout=30.0)  # would wait 30 s for a live B
    rows = former.form(2, idle_wait=30.0)
    assert [(st.index, f) for st, f in rows] == [(0, "a0")]
    states[0].end("stopped")
    assert former.form(2, idle_wait=0.0) == []
