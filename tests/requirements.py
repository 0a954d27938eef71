"""Module-level requirements of test files: skip on a developer's machine, fail in CI.

CI installs everything (`.ci/run`), so a missing package there is a broken install, not a reason
to skip: with CI set, a missing requirement fails the run instead of hiding the tests.
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def require(ok: bool, reason: str) -> None:
    """Skip the calling test module when `ok` is false (fail instead when CI is set)."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must be able to run this module: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str) -> None:
    """Require an importable module (see `require`)."""
    require(importlib.util.find_spec(name) is not None, f"{name} is not installed")
