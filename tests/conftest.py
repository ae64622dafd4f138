"""Suite-wide pytest set-up: import paths, the one skip mechanism, deterministic RNG.

Skips: ``@pytest.mark.needs("torch", "cv2", ...)`` names what a test needs: importable modules,
``cuda`` (a CUDA GPU through torch), ``sshd`` (OpenSSH server on this machine) or ``bin:NAME`` (an
executable; the reason carries its install hint from ``support.TOOLS``). A test that starts sshd is
``slow`` automatically, so ``-m "not slow"`` is a quick loop.

Fixtures shared by the test modules live here: ``sshd``, ``sshd_pair``, ``sshd_systemd`` (real
OpenSSH servers on 127.0.0.1; helpers for them in ``support.deploy`` and ``support.sshd_server``),
``demo_bundle`` (the docs' ``shapes-1.0.0``, converted once per session by the CLI).

No silent skips: with ``JD_STRICT_SKIPS=1`` (CI sets it) the run fails when a test was skipped for
a reason that tests/skip_allowlist.txt does not list, and the skip summary is printed.
"""
import importlib.util
import os
import random
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
for p in (str(ROOT), str(TESTS)):
    if p not in sys.path:
        sys.path.insert(0, p)

# Keep engine caches and similar per-user state out of the real home directory.
os.environ.setdefault("JETSON_DEPLOY_CACHE", str(Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / "jd-test-engine-cache-{}".format(os.getpid())))

ALLOWLIST = TESTS / "skip_allowlist.txt"
SSHD_FIXTURES = {"sshd", "sshd_pair", "sshd_systemd"}  # tests using one are slow


def _has(mod: str) -> bool:
    if mod in sys.modules:
        return sys.modules[mod] is not None
    try:
        spec = importlib.util.find_spec(mod)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin not in (None, "namespace")


def _cuda() -> "bool":
    if not _has("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def _sshd() -> "Optional[str]":
    from support.sshd_server import sshd_skip_reason

    return sshd_skip_reason()


def _missing(need: str, cache: "Dict[str, Optional[str]]") -> "Optional[str]":
    """The skip reason for one need, or None when it is met."""
    if need not in cache:
        if need == "cuda":
            cache[need] = None if _cuda() else "needs a CUDA GPU"
        elif need == "sshd":
            cache[need] = _sshd()
        elif need.startswith("bin:"):
            from support import tool_skip_reason

            cache[need] = tool_skip_reason(need[len("bin:"):])
        else:
            cache[need] = None if _has(need) else "needs {} (not installed)".format(need)
    return cache[need]


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(*what): skipped, with the reason, when a module/cuda/sshd/bin:EXECUTABLE is missing")
    config.addinivalue_line("markers", "slow: takes more than a few seconds (sshd, ansible, end-to-end)")
    if not config.pluginmanager.hasplugin("timeout"):
        raise pytest.UsageError("pytest-timeout is required (pip install pytest-timeout): a hung test must not hang CI")


def pytest_collection_modifyitems(config, items):
    cache: "Dict[str, Optional[str]]" = {}
    for item in items:
        if SSHD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        for mark in item.iter_markers("needs"):
            for need in mark.args:
                why = _missing(need, cache)
                if why:
                    item.add_marker(pytest.mark.skip(reason=why))
                    break


def _allowed() -> "List[re.Pattern]":
    pats = []
    for line in ALLOWLIST.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pats.append(re.compile(line))
    return pats


def _skip_reason(rep) -> str:
    lr = rep.longrepr
    return str(lr[2] if isinstance(lr, tuple) else lr).replace("Skipped: ", "", 1)


def _skip_counts(stats: "Dict[str, Any]") -> "Tuple[Dict[str, int], List[str]]":
    """(reason -> count, reasons not in the allow-list) of this run's skips."""
    allowed = _allowed()
    counts: "Dict[str, int]" = {}
    for rep in stats.get("skipped", []):
        counts[_skip_reason(rep)] = counts.get(_skip_reason(rep), 0) + 1
    return counts, sorted(r for r in counts if not any(p.search(r) for p in allowed))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts, unlisted = _skip_counts(terminalreporter.stats)
    if not counts:
        return
    terminalreporter.write_sep("-", "skip summary ({} skipped)".format(sum(counts.values())))
    for reason, n in sorted(counts.items()):
        terminalreporter.write_line("{:4d}  {}{}".format(n, reason, "   <-- NOT in tests/skip_allowlist.txt" if reason in unlisted else ""))
    if unlisted and os.environ.get("JD_STRICT_SKIPS") == "1":
        terminalreporter.write_line("skips not in tests/skip_allowlist.txt: {} (JD_STRICT_SKIPS=1 fails the run)".format(len(unlisted)))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    """The exit status is settled here, before the terminal summary is written."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or os.environ.get("JD_STRICT_SKIPS") != "1" or exitstatus != 0:
        return
    if _skip_counts(reporter.stats)[1]:
        session.exitstatus = 1


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """Tests may seed freely; the next test starts from the state it had."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory):
    """The demo bundle the docs use, ``shapes-1.0.0`` (fp32), made once per session with the docs'
    own command line through the CLI; tests copy it before changing it."""
    import subprocess

    out = tmp_path_factory.mktemp("demo-bundle") / "shapes-1.0.0"
    cmd = [str(Path(sys.executable).parent / "jetson-deploy"), "convert", "jetson_deploy.demo:load_model",
           "--spec", str(ROOT / "jetson_deploy" / "demo" / "spec.json"), "-o", str(out), "--name", "shapes",
           "--version", "1.0.0"]
    if not Path(cmd[0]).exists():
        cmd[:1] = [sys.executable, "-m", "jetson_deploy"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, cwd=str(ROOT),
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 0, p.stdout
    return out


# ----------------------------------------------------------------------------- real sshd on loopback

def _need_sshd() -> None:
    """Skip, with the reason, where OpenSSH's server is missing (the fixtures below start one)."""
    why = _sshd()
    if why:
        pytest.skip(why)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """One real sshd on 127.0.0.1 for a test module; each test uses its own --root."""
    from support.sshd_server import SshServer

    _need_sshd()
    srv = SshServer.start(tmp_path_factory.mktemp("sshd"), alias="jd-a")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def sshd_pair(tmp_path_factory):
    """Two sshd on two ports sharing one user key, plus one client config naming both."""
    from support.sshd_server import SshServer, combined_ssh_config

    _need_sshd()
    base = tmp_path_factory.mktemp("sshd2")
    a = SshServer.start(base / "a", alias="jd-a")
    try:
        b = SshServer.start(base / "b", alias="jd-b", user_key=a.user_key)
    except BaseException:
        a.stop()
        raise
    try:
        cfg = combined_ssh_config([a, b], base / "ssh_config")
        yield a, b, cfg
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def sshd_systemd(tmp_path_factory):
    """An sshd whose sessions find a :class:`support.deploy.FakeSystemd` first on PATH: ``(srv, fake)``."""
    from support.deploy import FakeSystemd
    from support.sshd_server import SshServer

    _need_sshd()
    base = tmp_path_factory.mktemp("sshd-systemd")
    fake = FakeSystemd(base / "systemd")
    srv = SshServer.start(base / "sshd", alias="jd-a", env={"PATH": fake.bin.as_posix() + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
    try:
        yield srv, fake
    finally:
        srv.stop()


# ----------------------------------------------------------------------------- a real OCI registry on loopback

@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """One docker-registry (TLS with a test CA, htpasswd auth) for the whole session; each test uses its own repository."""
    from support.registry import RegistryServer, registry_skip_reason

    why = registry_skip_reason()
    if why:
        pytest.skip(why)
    srv = RegistryServer.start(tmp_path_factory.mktemp("registry"))
    try:
        yield srv
    finally:
        srv.close()
