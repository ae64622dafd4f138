"""``jetson-deploy run`` as a real subprocess, for tests that read its network sinks as clients do."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _ctrl_c_default():
    """In the child: SIGINT back to its default.  A shell without job control starts background
    commands (``cmd &``, as .ci/run starts its legs) with SIGINT ignored, and Python then installs
    no KeyboardInterrupt handler: the run would never see the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run:
    """``jetson-deploy run`` in a subprocess; stops it with Ctrl-C (SIGINT) and checks the exit."""

    def __init__(self, bundle, source, sink, frames=100000, extra=()):
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen([sys.executable, "-m", "jetson_deploy.cli", "run", str(bundle), "--source", source,
                                   "--sink", sink, "--max-frames", str(frames), "--interval", "0"] + list(extra),
                                  stdout=subprocess.DEVNULL, stderr=self.err, env=env, preexec_fn=_ctrl_c_default)

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def wait_url(self, base, timeout=30.0, **kw):
        end = time.time() + timeout
        while time.time() < end:
            if self.p.poll() is not None:
                raise AssertionError("run exited early:\n" + self.stderr())
            try:
                return get_json(base + "stats", **kw)
            except (OSError, ValueError):
                time.sleep(0.2)
        raise AssertionError("no live view after {} s:\n{}".format(timeout, self.stderr()))

    def stop(self, cpu_budget=15.0, guard=110.0):
        """Ctrl-C, then wait for the exit; the exit code.

        Fails when the run spends more than ``cpu_budget`` CPU seconds of its own after Ctrl-C
        without exiting (a shutdown that spins), however loaded the machine is: a starved run
        uses little CPU per wall second, so a wall-clock limit would fail it for the load, not
        for its code.  ``guard`` (wall seconds) only ends a run stuck without using CPU (a
        deadlock) before the test's own timeout leaves it behind.
        """
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        cpu0, end = _cpu_seconds(self.p.pid), time.monotonic() + guard
        while True:
            try:
                return self.p.wait(0.5)
            except subprocess.TimeoutExpired:
                pass
            used = _cpu_seconds(self.p.pid) - cpu0
            if used > cpu_budget or time.monotonic() > end:
                self.p.kill()
                self.p.wait(30)
                raise AssertionError("run did not stop after Ctrl-C ({:.1f} CPU s used since; {}):\n{}".format(
                    used, "spinning" if used > cpu_budget else "stuck without using CPU", self.stderr()))


def _cpu_seconds(pid):
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc; 0 once it is gone."""
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))


def get_json(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read().decode())
