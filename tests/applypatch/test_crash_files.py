"""Power loss at every I/O step of a 4 MB file patch, with and without the low-space cache path (size large)."""

from __future__ import annotations

import pytest

from ota.testing.scenarios import FileScenario
from ota.testing.sweep import sweep


@pytest.mark.parametrize("low_space, minimum_points", [(False, 14), (True, 30)])
def test_every_crash_point_of_a_file_patch(tmp_path, boot_update, low_space, minimum_points):
    result = sweep(FileScenario(str(tmp_path), boot_update, low_space=low_space))
    assert len(result.points) >= minimum_points
    assert [(str(o.point), o.problem) for o in result.failures()] == []
    assert all(outcome.crashed for outcome in result.outcomes)
