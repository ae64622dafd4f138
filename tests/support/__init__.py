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
