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


class Run:
    """``jetson-deploy run`` in a subprocess; stops it with Ctrl-C (SIGINT) and checks the exit."""

    def __init__(self, bundle, source, sink, frames=100000, extra=()):
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen([sys.executable, "-m", "jetson_deploy.cli", "run", str(bundle), "--source", source,
                                   "--sink", sink, "--max-frames", str(frames), "--interval", "0"] + list(extra),
                                  stdout=subprocess.DEVNULL, stderr=self.err, env=env)

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

    def stop(self, timeout=15.0):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)
            raise AssertionError("run did not stop within {} s of Ctrl-C:\n{}".format(timeout, self.stderr()))
        return rc


def get_json(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read().decode())
