"""Shared guard for the tests of the compiled fast paths."""

from __future__ import annotations

import os
from types import ModuleType

import pytest

from parsers import native


def require_native() -> ModuleType:
    """The compiled module, or skip the calling test module (fail instead under CI=true,
    where `make native` always runs, unless KEYTRAIL_NATIVE=0 turns it off on purpose)."""
    if native.NATIVE is None:
        if os.environ.get("CI") == "true" and os.environ.get("KEYTRAIL_NATIVE") != "0":
            pytest.fail("parsers/_native is not built (make native); CI requires it",
                        pytrace=False)
        pytest.skip("compiled fast paths not built (run `make native`); Python parsers in use",
                    allow_module_level=True)
    return native.NATIVE
