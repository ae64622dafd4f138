"""The capture thread: a source on its own thread, into a bounded queue (live sources drop oldest)."""
import logging
import threading
import time
from collections import deque
from typing import Callable, Deque, Optional

from .sources import Frame, Source

log = logging.getLogger(__name__)


def _thread_cpu() -> float:
    """CPU time of the calling thread (``time.thread_time`` is 3.7+; this works on 3.6 too)."""
    try:
        return time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID)
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return 0.0


def _release(frame: "Frame") -> None:
    """Give back a frame that will never be processed: its pooled buffer and what ``prepare``
    attached (a preprocessed input from the executor's pool), so dropped frames leak nothing."""
    data = frame.data
    if data is not None and hasattr(data, "release"):
        frame.data = None
        data.release()
    frame.release()


class CaptureThread:
    """Runs ``source.capture()`` on its own thread into a bounded queue.

    * ``drop=True`` (live sources): when the queue is full the oldest frame is dropped (its
      buffer released) and counted in ``dropped``; the consumer always gets the freshest frames.
    * ``drop=False`` (files): the thread waits for room; nothing is lost.
    * ``prepare(frame)`` runs on this thread after capture (e.g. host preprocessing for CPU
      backends, so it overlaps inference).
    * :meth:`get` never blocks longer than its timeout; ``finished`` is True once the source
      ended (end of stream, unplugged camera, failure) and the queue is empty; ``end_reason``
      and ``error`` say why.
    * ``ready`` (an Event, shared by several capture threads): set when a frame is queued or the
      source ends, so one consumer can wait on many sources without polling each.
    """

    def __init__(self, source: "Source", maxsize: int = 4, drop: "Optional[bool]" = None,
                 prepare: "Optional[Callable[[Frame], None]]" = None, max_frames: "Optional[int]" = None,
                 poll: float = 0.25, ready: "Optional[threading.Event]" = None, name: str = "capture") -> None:
        self.source = source
        self.ready = ready
        self.maxsize = max(1, int(maxsize))
        self.drop = source.live if drop is None else bool(drop)
        self.prepare = prepare
        self.max_frames = max_frames
        self.poll = poll
        self.dropped = 0
        self.captured = 0
        self.error: "Optional[BaseException]" = None
        self.end_reason = ""
        self.last_frame_time = time.monotonic()
        #: CPU seconds this thread spent (capture, and ``prepare`` where there is one): the board's
        #: ARM cores are its scarcest resource, so benchmarks report it per frame
        self.cpu_seconds = 0.0
        self._q: "Deque[Frame]" = deque()
        self._cond = threading.Condition()
        # who sleeps on the condition: each side wakes the other only then
        self._producer_waiting = False
        self._consumer_waiting = False
        self._low_water = self.maxsize // 2
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "CaptureThread":
        self._thread.start()
        return self

    def _run(self) -> None:
        src = self.source
        t0 = _thread_cpu()
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and self.captured >= self.max_frames:
                    self.end_reason = "max frames reached ({})".format(self.max_frames)
                    break
                frame = src.capture(timeout=self.poll)
                if frame is None:
                    if not src.is_streaming:
                        self.end_reason = src.end_reason or "end of stream"
                        break
                    continue
                if self.prepare is not None:
                    self.prepare(frame)
                self.captured += 1
                self._put(frame)
        except BaseException as exc:  # reported to the consumer, never swallowed
            self.error = exc
            self.end_reason = "source failed: {}".format(exc)
        finally:
            self.cpu_seconds = _thread_cpu() - t0
            with self._cond:
                self._done = True
                self._cond.notify_all()
            if self.ready is not None:
                self.ready.set()

    def _put(self, frame: "Frame") -> None:
        """Queue a frame.  A full queue (files) is waited on until it is half empty, so the two
        threads hand over the interpreter once per few frames, not once per frame."""
        with self._cond:
            if len(self._q) >= self.maxsize:
                if self.drop:
                    old = self._q.popleft()
                    _release(old)
                    self.dropped += 1
                else:
                    self._producer_waiting = True
                    try:
                        while len(self._q) > self._low_water:
                            if self._stop.is_set():
                                frame.release()
                                return
                            self._cond.wait(self.poll)
                    finally:
                        self._producer_waiting = False
            self._q.append(frame)
            self.last_frame_time = time.monotonic()
            if self._consumer_waiting:
                self._cond.notify_all()
        if self.ready is not None:
            self.ready.set()

    def get(self, timeout: "Optional[float]" = None) -> "Optional[Frame]":
        """The oldest queued frame, or None after ``timeout`` seconds or when finished."""
        with self._cond:
            if not self._q:
                if not self._wait_for_frame(timeout):
                    return None
            f = self._q.popleft()
            if self._producer_waiting and len(self._q) <= self._low_water:
                self._cond.notify_all()
            return f

    def _wait_for_frame(self, timeout: "Optional[float]") -> bool:
        """(Holding the lock, queue empty) wait until a frame is queued: False on timeout or end."""
        end = None if timeout is None else time.monotonic() + timeout
        self._consumer_waiting = True
        try:
            while not self._q:
                if self._done:
                    return False
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(self.poll if left is None else min(left, self.poll))
        finally:
            self._consumer_waiting = False
        return True

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._done and not self._q

    def stop(self, join_timeout: float = 2.0) -> None:
        """Stop capturing, release queued frames, close the source (never blocks for long)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(join_timeout)
        with self._cond:
            while self._q:
                _release(self._q.popleft())
        if not self._thread.is_alive():
            self.source.close()
        else:  # stuck inside a driver read; it is a daemon thread and dies with the process
            log.warning("capture thread still blocked in %s after stop; leaving it", self.source.uri)
