"""Helpers for the deploy tests (real sshd on loopback; its fixtures are in tests/conftest.py):
bundles to deploy, assertions on the device layout, CLI arguments, a fake systemd."""
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

import pytest

from support.bundles import random_bundle, sha
from support.sshd_server import SshServer

if TYPE_CHECKING:  # pragma: no cover
    from jetson_deploy.deploy import DeployOptions

needs_sshd = pytest.mark.needs("sshd")  # skipped, with the reason, only where OpenSSH's server is missing


def make_bundle(dest: Path, name: str = "demo", version: str = "1.0.0", sizes: "Optional[Dict[str, int]]" = None) -> Path:
    return random_bundle(dest, name, version, sizes)


#: the board's interpreter in test images: the README's venv (``python3 -m venv ~/jd``)
BOARD_PY = "/home/nvidia/jd/bin/python"


def board_venv(fs: Path, installed: bool = True) -> str:
    """A venv at BOARD_PY inside the image FS (with jetson-deploy in it unless ``installed`` is False)."""
    venv = fs / BOARD_PY.lstrip("/").rsplit("/bin/", 1)[0]
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    py = venv / "bin" / "python"
    py.write_text("#!/bin/sh\n")
    py.chmod(0o755)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = true\nversion = 3.8.10\n")
    site = venv / "lib" / "python3.8" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    if installed:
        (site / "jetson_deploy").mkdir(exist_ok=True)
        (site / "jetson_deploy" / "__init__.py").write_text("")
    return BOARD_PY


def active_version(root: Path, name: str = "demo") -> "Optional[str]":
    link = Path(root) / "active" / name
    if not link.is_symlink():
        return None
    return os.readlink(str(link)).rstrip("/").split("/")[-1]


def assert_active_verified(root: Path, name: str, version: str, bundle: "Optional[Path]" = None) -> None:
    """active/NAME is a relative symlink to bundles/NAME/VERSION whose every artifact matches its
    manifest (and the local bundle), with nothing missing: a complete, verified bundle."""
    link = Path(root) / "active" / name
    assert link.is_symlink(), "active/{} is not a symlink".format(name)
    target = os.readlink(str(link))
    assert target == "../bundles/{}/{}".format(name, version), target
    d = link.resolve()
    assert d == (Path(root) / "bundles" / name / version).resolve()
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["name"] == name and manifest["version"] == version
    assert manifest["artifacts"], "manifest lists no artifacts"
    for art in manifest["artifacts"]:
        p = d / art["path"]
        assert p.is_file(), "artifact {} missing under active/{}".format(art["path"], name)
        assert p.stat().st_size == art["size"], art["path"]
        assert sha(p) == art["sha256"], "artifact {} fails sha256 under active/{}".format(art["path"], name)
        if bundle is not None:
            assert sha(Path(bundle) / art["path"]) == art["sha256"]
    if bundle is not None:
        assert sha(d / "manifest.json") == sha(Path(bundle) / "manifest.json")
    # installed bundles are read-only
    assert not os.stat(str(d / "manifest.json")).st_mode & 0o222


def installed(root: Path, name: str = "demo") -> "List[str]":
    d = Path(root) / "bundles" / name
    return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) if d.is_dir() else []


def staged_bytes(root: Path, name: str = "demo") -> int:
    total = 0
    for dirpath, _, files in os.walk(str(Path(root) / "staging" / name)):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


def runner():
    """A CliRunner whose ``stdout`` is stdout only (click < 8.2 mixes stderr in by default)."""
    from click.testing import CliRunner

    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2: always separate
        return CliRunner()


def out(res) -> str:
    """Everything a CLI run printed, stdout and stderr (for error-message assertions)."""
    try:
        err = res.stderr
    except ValueError:  # stderr mixed into output
        err = ""
    return res.output + err


def cli_args(srv: "SshServer", root: Path) -> "List[str]":
    return ["--root", str(root), "--ssh-config", str(srv.ssh_config), "-q"]


def over_ssh(srv: "SshServer", root: "Union[str, Path]", **options: Any) -> "DeployOptions":
    """DeployOptions for ``srv`` (its client config) and device ``root``: the library twin of :func:`cli_args`."""
    from jetson_deploy.deploy import Connection, DeployOptions

    return DeployOptions(root=str(root), connection=Connection(ssh_config=str(srv.ssh_config)), **options)


def jd_cmd() -> "List[str]":
    return [sys.executable, "-m", "jetson_deploy"]


# ----------------------------------------------------------------------------- a fake systemd

_FAKE_SYSTEMCTL = r"""#!/bin/sh
# fake systemctl: logs "ARGS @VERSION" (the version active/NAME points at when called);
# is-active answers 'failed' while that version is listed in failing, else 'active';
# restart/stop fail while the file restart_fails exists
d={dir}
v=$(readlink "$(cat "$d/link" 2>/dev/null)" 2>/dev/null); v=${{v##*/}}
echo "$* @${{v:-none}}" >> "$d/calls"
case "$1" in
  is-active)
    if grep -qxF -- "$v" "$d/failing" 2>/dev/null; then s=failed; else s=active; fi
    [ "$2" = --quiet ] || echo "$s"
    [ "$s" = active ];;
  restart|stop)
    if [ -f "$d/restart_fails" ]; then echo "Failed to $1 $2: Access denied" >&2; exit 1; fi;;
  status) echo "$2 - crashed on $v";;
esac
"""

# `sudo -n CMD` runs CMD (the tests may run as a non-root user)
_FAKE_SUDO = '#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n'


class FakeSystemd(object):
    """A bin dir with fake ``systemctl`` and ``sudo``; ``calls()`` lists what systemctl was asked."""

    def __init__(self, base: Path) -> None:
        self.dir = Path(base)
        self.bin = self.dir / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        for name, text in (("systemctl", _FAKE_SYSTEMCTL.format(dir=self.dir)), ("sudo", _FAKE_SUDO)):
            p = self.bin / name
            p.write_text(text)
            p.chmod(0o755)

    def reset(self, root: Path, name: str = "demo", failing: "Sequence[str]" = (), restart_fails: bool = False) -> None:
        """Watch ROOT/active/NAME; versions in FAILING crash-loop; forget earlier calls."""
        (self.dir / "link").write_text(str(Path(root) / "active" / name))
        (self.dir / "failing").write_text("".join(v + "\n" for v in failing))
        (self.dir / "calls").write_text("")
        rf = self.dir / "restart_fails"
        if restart_fails:
            rf.write_text("")
        elif rf.exists():
            rf.unlink()

    def calls(self) -> "List[str]":
        p = self.dir / "calls"
        return p.read_text().splitlines() if p.exists() else []

    def path(self) -> str:
        return str(self.bin) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
