"""One private temporary directory per CLI run, removed at exit; a killed run's is removed by the next.

Every ``tempfile`` call of the run (ours and the libraries') lands in
``$TMPDIR/jd-run-PID-XXXX``.  A run killed with SIGKILL or a power cut cannot clean
up after itself, so each run first removes the ``jd-run-*`` directories of this user
whose process is gone.
"""
import atexit
import contextlib
import os
import shutil
import tempfile
from typing import Optional

from ._files import pid_alive

PREFIX = "jd-run-"
_mine: "Optional[str]" = None
_base: "Optional[str]" = None


def lasting_tempdir() -> str:
    """Where a file the user is pointed to (a failed export's log) stays after this run ends:
    the temporary directory the run started with, not the private one removed at exit."""
    return _base or tempfile.gettempdir()


def clean_stale(base: str) -> int:
    """Remove ``base/jd-run-PID-*`` directories of this user whose PID is not running."""
    n = 0
    try:
        entries = list(os.scandir(base))
    except OSError:
        return 0
    for e in entries:
        if not e.name.startswith(PREFIX):
            continue
        pid = e.name[len(PREFIX):].split("-", 1)[0]
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        if not pid.isdigit() or int(pid) == os.getpid() or st.st_uid != os.getuid() or not e.is_dir(follow_symlinks=False):
            continue
        if pid_alive(int(pid)):
            continue
        shutil.rmtree(e.path, ignore_errors=True)
        n += 1
    return n


def use_private_tempdir() -> "Optional[str]":
    """Point ``tempfile`` (and child processes, via TMPDIR) at a fresh private directory."""
    global _mine, _base
    if _mine is not None:
        return _mine
    base = _base = tempfile.gettempdir()
    clean_stale(base)
    try:
        _mine = tempfile.mkdtemp(prefix="{}{}-".format(PREFIX, os.getpid()), dir=base)
    except OSError:
        return None  # an unwritable /tmp: leave tempfile as it was, the error shows where it is used
    tempfile.tempdir = _mine
    os.environ["TMPDIR"] = _mine
    atexit.register(_remove, _mine, base)
    return _mine


def _remove(path: str, base: str) -> None:
    global _mine
    with contextlib.suppress(OSError):
        shutil.rmtree(path, ignore_errors=True)
    if tempfile.tempdir == path:
        tempfile.tempdir = None
    if os.environ.get("TMPDIR") == path:
        os.environ["TMPDIR"] = base
    _mine = None
