"""Shared fixtures: a real boot-image update and a small BSDIFF40 update (each built once)."""

from __future__ import annotations

import random

import pytest

from applypatch_helpers import Small
from ota.actions import make_bsdiff
from ota.testing.scenarios import BootUpdate


@pytest.fixture(scope="session")
def boot_update() -> BootUpdate:
    """Two >4 MB Android boot images and their IMGDIFF2 patch (built once: ~2 s)."""
    return BootUpdate.make()


@pytest.fixture(scope="session")
def small() -> Small:
    source = random.Random(7).randbytes(307_200)
    target = source[:5000] + b"new bytes in the middle" * 40 + source[5000:]  # longer than the source
    return Small(source, target, make_bsdiff.diff(source, target))
