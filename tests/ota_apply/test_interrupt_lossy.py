"""ota_apply under the lossy power cut: each cut also loses every change not yet fsync'ed.

The process-cut sweeps (test_interrupt_*.py) cannot see a missing fsync. Here each cut rolls back
every write since the last fsync of its file and every directory entry change since the last
fsync of its directory (ota.testing.page_cache), and the rerun must still reach the target build.
The release sweeps are sampled (crash points spread evenly over the run; the full sweep is
bench/power_loss_sweep.py); the small release below is swept at every point: it holds the
changes only the metadata phase makes (a symlink's owner, a directory's mode), which is where a
missing fsync was found (sysroot's lchown of a symlink).
"""

from __future__ import annotations

import os

import pytest

from apply_helpers import make_release
from ota.testing import device_check as dc
from ota.testing.builds import Spec, make_package, write_build
from ota.testing.page_cache import LossModel

SAMPLED_CUTS = 70


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(str(tmp_path_factory.mktemp("release")))


def assert_recovered(report: dc.Report, minimum_points: int) -> None:
    assert report.sweep is not None and len(report.sweep.outcomes) >= minimum_points
    print(f"interruptions: {len(report.sweep.outcomes)}, recovered: {report.sweep.recovered}")
    assert report.problems == [], report.problems[:5]


@pytest.mark.parametrize(
    "kind, loss", [("incremental", LossModel()), ("full", LossModel()), ("incremental", LossModel(4242))]
)
def test_sampled_cuts_recover(release, tmp_path, kind, loss):
    report = dc.check_update(
        release.source,
        release.target,
        getattr(release, kind),
        str(tmp_path),
        release.layout,
        interrupt=True,
        max_cuts=SAMPLED_CUTS,
        loss=loss,
    )
    assert_recovered(report, SAMPLED_CUTS)


def test_metadata_only_changes_survive_every_lossy_cut(tmp_path):
    items = {"a": b"one\n" * 100, "l": ("symlink", "a"), "d": ("dir", 0o755, 0, 0), "d/f": b"f\n"}
    source = write_build(Spec("dev", "x/1", 1, items, {}), str(tmp_path / "source"))
    items.update(
        {
            "a": b"two\n" * 100,
            "l": ("symlink", "a", 1000, 1000),
            "d": ("dir", 0o750, 0, 2000),
            "d/f": (b"f\n", 0o600, 1000, 0),
        }
    )
    target = write_build(Spec("dev", "x/2", 2, items, {}), str(tmp_path / "target"))
    for name, base in (("incremental", source), ("full", None)):
        package = make_package(base, target, str(tmp_path), str(tmp_path / f"{name}.zip"))
        report = dc.check_update(
            source,
            target,
            package,
            str(tmp_path / name),
            dc.layout_for(source, target),
            interrupt=True,
            loss=LossModel(),
        )
        assert_recovered(report, 40)
        assert os.path.isdir(tmp_path / name)
