"""What the agent remembers between polls and runs: ``ROOT/agent/state.json``, and its lock.

The state file is rewritten (temp file + rename) only when something changed, never on a quiet
poll, so a board polling every 30 s does not wear its SD card.  One agent per root at a time:
``ROOT/agent/lock`` is held with ``flock``, which the kernel releases when the process dies
however it dies (SIGKILL, power cut), so a killed agent never blocks the next one.
"""
import errno
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional

from .._files import atomic_write_json
from ..errors import BadInput

STATE_VERSION = 1
OK_RESULTS = ("deployed", "unchanged")
# a result that a retry of the same digest cannot change: tried once, then left until the tag moves
STICKY = ("refused", "rolled-back")


class Outcome(object):
    """The result of one poll: ``result`` (unchanged, deployed, rolled-back, refused, failed),
    a one-line ``message``, the ``digest`` the tag pointed at and that bundle's ``version``.
    ``sticky``: retrying the same digest gives the same answer (a signature, a TensorRT minimum)."""

    __slots__ = ("result", "message", "digest", "version", "sticky", "requests", "name")

    def __init__(self, result: str, message: str, digest: str = "", version: str = "", sticky: bool = False,
                 name: str = "") -> None:
        self.result, self.message, self.digest, self.version, self.name = result, message, digest, version, name
        self.sticky = sticky or result == "rolled-back"
        self.requests = 0  # registry requests this poll made

    @property
    def ok(self) -> bool:
        return self.result in OK_RESULTS

    def to_dict(self) -> "Dict[str, Any]":
        return {"result": self.result, "message": self.message, "digest": self.digest, "name": self.name,
                "version": self.version, "sticky": self.sticky, "requests": self.requests}

    def __repr__(self) -> str:
        return "Outcome({!r}, {!r})".format(self.result, self.message)


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class AgentState(object):
    """``state.json``: the active digest/name/version the agent put there, its last attempt, how many
    polls in a row failed (the back-off), whether the board's status still has to be reported."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: "Dict[str, Any]" = {"state_version": STATE_VERSION, "digest": "", "name": "", "version": "",
                                       "attempt": None, "failures": 0, "report_pending": True, "basic_auth": False}
        if path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                loaded = None  # a damaged state file: start over (the device layout itself is the truth)
            if isinstance(loaded, dict):
                self.data.update(loaded)
        self._saved = json.dumps(self.data, sort_keys=True)

    def __getitem__(self, key: str) -> Any:
        return self.data.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value

    @property
    def attempt(self) -> "Dict[str, Any]":
        return self.data.get("attempt") or {}

    def save(self) -> None:
        text = json.dumps(self.data, sort_keys=True)
        if text != self._saved:
            atomic_write_json(self.path, self.data)
            self._saved = text

    def record(self, outcome: "Outcome") -> None:
        """Note one update attempt (and what is active now when it succeeded)."""
        self.data["attempt"] = {"digest": outcome.digest, "version": outcome.version, "result": outcome.result,
                                "message": outcome.message, "time": utc_now(), "sticky": outcome.sticky}
        if outcome.ok:
            self.data["digest"] = outcome.digest
            self.data["version"] = outcome.version
        self.data["failures"] = 0 if (outcome.ok or outcome.sticky) else int(self.data.get("failures") or 0) + 1
        self.data["last_error"] = None if outcome.ok else outcome.message
        self.data["report_pending"] = True


class RootLock(object):
    """``flock`` on ``ROOT/agent/lock`` for the agent's lifetime; BadInput when another agent holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: "Optional[int]" = None

    def acquire(self) -> None:
        fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                holder = self.path.read_text().strip() if self.path.is_file() else "?"
                raise BadInput("another agent is running on {} (pid {}); one agent per root".format(self.path.parent.parent, holder or "?"))
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
