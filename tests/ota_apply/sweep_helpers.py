"""Shared body of the power-cut sweeps (one test file per package, so Bazel runs them in parallel)."""

from __future__ import annotations

import os

from apply_helpers import Release
from ota.testing import device_check as dc


def sweep_every_cut(release: Release, package: str, scratch: str) -> None:
    """Cuts the apply before every I/O operation and half way through every tearable one."""
    report = dc.check_update(release.source, release.target, package, scratch, release.layout, interrupt=True)
    assert report.sweep is not None
    kinds = {point.mode for point in report.sweep.points}
    print(f"interruptions: {len(report.sweep.outcomes)}, recovered: {report.sweep.recovered}")
    assert kinds == {"before", "tear", "after"}
    assert len(report.sweep.outcomes) > 100
    assert report.problems == [], report.problems[:5]
    assert os.path.isdir(scratch)
