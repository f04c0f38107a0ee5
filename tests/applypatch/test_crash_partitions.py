"""Power loss at every I/O step of a 4 MB boot-partition patch, on every backend (exhaustive: size large).

Each crash point: restore the source, run applypatch cut at that point (in-process PowerLoss),
rerun it cleanly, and demand the target image in place and the cache backup gone.
"""

from __future__ import annotations

import os

from ota.testing.scenarios import PartitionScenario, loop_device, loop_unavailable
from ota.testing.sweep import sweep
from tests.environment import require


def assert_all_recovered(result, minimum_points: int) -> None:
    assert len(result.points) >= minimum_points
    assert all(outcome.crashed for outcome in result.outcomes)
    failures = [(str(o.point), o.problem) for o in result.failures()]
    assert failures == []
    assert result.recovered == len(result.points)


def test_every_crash_point_on_a_file_backed_partition(tmp_path, boot_update):
    assert len(boot_update.source) >= 4_000_000
    result = sweep(PartitionScenario(str(tmp_path), boot_update, "file"))
    assert_all_recovered(result, 30)


def test_every_crash_point_on_the_nand_simulator(tmp_path, boot_update):
    scenario = PartitionScenario(str(tmp_path), boot_update, "mtdsim")
    result = sweep(scenario)
    tears = [p for p in result.points if p.mode == "tear"]
    assert len(tears) >= 40  # every erase (half-erased block) and program (partial page) is also torn
    assert_all_recovered(result, 90)


def test_every_crash_point_on_a_loop_device(tmp_path, boot_update):
    require(loop_unavailable())
    backing = str(tmp_path / "loop.img")
    with open(backing, "wb") as stream:
        stream.truncate(6 << 20)
    with loop_device(backing) as device:
        workdir = tmp_path / "work"
        workdir.mkdir()
        result = sweep(PartitionScenario(str(workdir), boot_update, "block", device_path=device))
    assert_all_recovered(result, 30)
    assert os.path.getsize(backing) == 6 << 20
