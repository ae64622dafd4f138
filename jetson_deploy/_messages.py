"""Collect ``logging`` records of some loggers while a call runs.

Results that report their notes (``ConvertResult.messages``, a calibration set's
``notes``, ``calibrate --json``'s ``notes``) read them from the one message
channel, ``logging``, instead of taking a callable.
"""
import contextlib
import logging
from typing import Iterator, List


class _Collector(logging.Handler):
    def __init__(self, into: "List[str]") -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: "logging.LogRecord") -> None:
        try:
            self.into.append(record.getMessage())
        except Exception:  # pragma: no cover - never let a note break a command
            self.handleError(record)


@contextlib.contextmanager
def collect_messages(*names: str, echo: bool = True) -> "Iterator[List[str]]":
    """Yield a list that receives the INFO+ messages of loggers ``names`` (and their children).

    INFO is enabled on them for the block even where nobody configured logging, so
    the list is complete; ``echo=False`` keeps the records from reaching the
    handlers above (the CLI's stderr lines) for the block.
    """
    into: "List[str]" = []
    handler = _Collector(into)
    saved = []
    for name in names:
        lg = logging.getLogger(name)
        saved.append((lg, lg.level, lg.propagate))
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
        if not echo:
            lg.propagate = False
        lg.addHandler(handler)
    try:
        yield into
    finally:
        for lg, level, propagate in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


@contextlib.contextmanager
def quieted(name: str, quiet: bool = True) -> "Iterator[None]":
    """For the block, logger ``name`` passes only WARNING and above when ``quiet`` (a command's
    ``--quiet``): progress lines and notes hide, warnings and errors still show."""
    lg = logging.getLogger(name)
    level = lg.level
    if quiet:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        lg.setLevel(level)
