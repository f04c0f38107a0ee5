"""applypatch under the lossy power cut: every crash point also loses what was not fsync'ed.

The process-cut sweeps (test_crash_partitions.py, test_crash_files.py) cannot see a missing fsync:
the kernel still writes the data. Here each cut rolls back every write since the last fsync of
its file and every directory entry change since the last fsync of its directory (the worst
case, every point), plus seeded random subsets of those losses (ota.testing.page_cache). The
rerun must still leave the target in place, the backup gone and no scratch file behind.
"""

from __future__ import annotations

import pytest

from ota.testing.page_cache import LossModel
from ota.testing.scenarios import FileScenario, PartitionScenario, loop_device, loop_unavailable
from ota.testing.sweep import SweepResult, sweep

WORST = LossModel()


def assert_all_recovered(result: SweepResult, minimum_points: int) -> None:
    assert len(result.points) >= minimum_points
    assert all(outcome.crashed for outcome in result.outcomes)
    assert [(str(o.point), o.problem) for o in result.failures()] == []


@pytest.mark.parametrize("low_space, minimum_points", [(False, 14), (True, 30)])
def test_file_target_worst_case(tmp_path, boot_update, low_space, minimum_points):
    assert_all_recovered(
        sweep(FileScenario(str(tmp_path), boot_update, low_space=low_space), loss=WORST), minimum_points
    )


def test_file_target_seeded_random_losses(tmp_path, boot_update):
    assert_all_recovered(sweep(FileScenario(str(tmp_path), boot_update, low_space=True), loss=LossModel(1009)), 30)


def test_partition_on_a_file_worst_case_and_seeded(tmp_path, boot_update):
    scenario = PartitionScenario(str(tmp_path), boot_update, "file")
    assert_all_recovered(sweep(scenario, loss=WORST), 30)
    assert_all_recovered(sweep(scenario, loss=LossModel(2026)), 30)


def test_nand_simulator_worst_case(tmp_path, boot_update):
    """The chip is raw flash (no page cache: `raw_paths`); the cache backup and scratch files are not."""
    scenario = PartitionScenario(str(tmp_path), boot_update, "mtdsim")
    assert scenario.raw_paths == (scenario.device_path,)
    assert_all_recovered(sweep(scenario, loss=WORST), 90)


@pytest.mark.skipif(loop_unavailable() is not None, reason=f"loop device: {loop_unavailable()}")
def test_loop_device_worst_case(tmp_path, boot_update):
    backing = str(tmp_path / "loop.img")
    with open(backing, "wb") as stream:
        stream.truncate(6 << 20)
    with loop_device(backing) as device:
        workdir = tmp_path / "work"
        workdir.mkdir()
        assert_all_recovered(
            sweep(PartitionScenario(str(workdir), boot_update, "block", device_path=device), loss=WORST), 30
        )
