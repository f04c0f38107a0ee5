"""The power-loss sweep: cut a scenario at every crash point, rerun it, check the end state.

`sweep` runs a `Scenario` through crash points (all of a clean run's unless given): prepare a
fresh device, run it under `ota.testing.faults.FaultyFsOps` cut at the point (a process cut, or
with `loss` the lossy model of a real power cut), rerun without faults, check the final state.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ota.device.fsops import FsOps
from ota.testing.faults import FaultPoint, FaultyFsOps, PowerLoss
from ota.testing.page_cache import LossModel


class Scenario(Protocol):
    """An operation under power-loss test (see `sweep`).

    A scenario may define `raw_paths`, the files with no page cache (a NAND simulator's chip
    image): the lossy model keeps whatever reaches them.
    """

    def prepare(self) -> None:
        """Puts the device into its starting state (called before every cut run)."""

    def run(self, ops: FsOps) -> None:
        """Performs the operation with all its I/O through `ops`."""

    def recover(self) -> str | None:
        """Reruns the operation without faults; returns an error text if it refused."""

    def check(self, recover_error: str | None) -> str | None:
        """Returns None if the final state is acceptable, else what is wrong."""


@dataclass
class Outcome:
    """What happened at one crash point."""

    point: FaultPoint
    crashed: bool
    recover_error: str | None
    problem: str | None

    @property
    def recovered(self) -> bool:
        return self.problem is None


@dataclass
class SweepResult:
    """All outcomes of one sweep."""

    points: list[FaultPoint]
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def recovered(self) -> int:
        return sum(outcome.recovered for outcome in self.outcomes)

    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if not outcome.recovered]


def crash_points(scenario: Scenario) -> list[FaultPoint]:
    """Every crash point of a clean run of `scenario` (which it leaves applied)."""
    scenario.prepare()
    clean = FaultyFsOps()
    scenario.run(clean)
    return clean.crash_points()


def cut(scenario: Scenario, point: FaultPoint, loss: LossModel | None = None) -> bool:
    """Runs `scenario` cut at `point`; says whether the cut happened (the run may end first)."""
    ops = FaultyFsOps(point, loss=loss, raw_paths=tuple(getattr(scenario, "raw_paths", ())))
    try:
        scenario.run(ops)
    except PowerLoss:
        return True
    finally:
        ops.close()
    return False


def sweep(
    scenario: Scenario, points: Iterable[FaultPoint] | None = None, *, loss: LossModel | None = None
) -> SweepResult:
    """Cuts `scenario` at each crash point (all of a clean run's, unless `points` is given), in-process.

    With `loss`, each cut also loses what was not yet durable (see ota.testing.page_cache); a
    seeded model draws its losses from the seed and the point, so a failure reproduces alone.
    """
    result = SweepResult(list(crash_points(scenario) if points is None else points))
    for point in result.points:
        scenario.prepare()
        point_loss = loss
        if loss is not None and loss.seed is not None:  # its own seed per point, reproducible alone
            point_loss = LossModel(zlib.crc32(f"{loss.seed}:{point}".encode()))
        crashed = cut(scenario, point, point_loss)
        error = scenario.recover()
        result.outcomes.append(Outcome(point, crashed, error, scenario.check(error)))
    return result
