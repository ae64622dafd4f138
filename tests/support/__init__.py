"""Test support: data makers and fixtures shared by the test modules.

``bundles`` (the one bundle maker and sha helper), ``convert``, ``calib``, ``runtime`` (small real
models and bundles), ``deploy`` (sshd fixtures and device-layout assertions), ``support.sshd_server``.
Skips go through the ``needs`` marker (tests/conftest.py), never ``pytest.importorskip``.
"""
import importlib
from typing import Any, Optional


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
