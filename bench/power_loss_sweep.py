#!/usr/bin/env python3
"""The lossy power-cut sweep at EVERY crash point: applypatch on each backend and ota_apply.

Each cut also loses every write since the last fsync of its file and every directory entry change
since the last fsync of its directory (ota.testing.page_cache; docs/applypatch.md, "Power-loss
model"); the rerun must reach the target. The tests sample ota_apply's points
(tests/ota_apply/test_interrupt_lossy.py); this script runs them all. Prints one line per target:
`<target>  <loss model>: N points, N recovered  [seconds]`, then every failure.

  PYTHONPATH=py:tests/ota_apply python3 bench/power_loss_sweep.py [--seed=N] [--only=ota_apply]

--seed adds a second sweep per target in which each cut loses a seeded random part of the
unsynced changes instead of all of them. The loop-device target needs root and /dev/loop*.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable

from ota.testing import device_check as dc
from ota.testing.page_cache import LossModel
from ota.testing.scenarios import BootUpdate, FileScenario, PartitionScenario, loop_device, loop_unavailable
from ota.testing.sweep import Scenario, sweep


def _line(name: str, loss: LossModel, points: int, recovered: int, started: float) -> str:
    return f"{name:<26} {loss!s:<22}: {points} points, {recovered} recovered  [{time.monotonic() - started:.0f} s]"


def applypatch_target(name: str, scenario: Scenario, loss: LossModel) -> bool:
    started = time.monotonic()
    result = sweep(scenario, loss=loss)
    print(_line(name, loss, len(result.points), result.recovered, started), flush=True)
    for outcome in result.failures():
        print(f"  {outcome.point}: {outcome.problem}")
    return not result.failures()


def ota_apply_target(name: str, release, package: str, scratch: str, loss: LossModel) -> bool:
    started = time.monotonic()
    report = dc.check_update(
        release.source, release.target, package, scratch, release.layout, interrupt=True, loss=loss
    )
    assert report.sweep is not None
    print(_line(name, loss, len(report.sweep.points), report.sweep.recovered, started), flush=True)
    for problem in report.problems:
        print(f"  {problem}")
    return not report.problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="also sweep with seeded random losses")
    parser.add_argument("--only", choices=("applypatch", "ota_apply"), default=None)
    args = parser.parse_args()
    models = [LossModel()] + ([LossModel(args.seed)] if args.seed is not None else [])
    ok = True
    with tempfile.TemporaryDirectory() as root:
        counter = iter(range(1 << 30))

        def workdir() -> str:
            path = os.path.join(root, f"w{next(counter)}")
            os.makedirs(path)
            return path

        if args.only in (None, "applypatch"):
            update = BootUpdate.make()
            print(
                f"applypatch: boot image {len(update.source)} -> {len(update.target)} bytes, "
                f"IMGDIFF2 patch {len(update.patch)} bytes"
            )
            targets: list[tuple[str, Callable[[], Scenario]]] = [
                ("file", lambda: FileScenario(workdir(), update, low_space=False)),
                ("file/low-space", lambda: FileScenario(workdir(), update, low_space=True)),
                ("partition/file", lambda: PartitionScenario(workdir(), update, "file")),
                ("partition/mtdsim", lambda: PartitionScenario(workdir(), update, "mtdsim")),
            ]
            for loss in models:
                for name, make in targets:
                    ok &= applypatch_target(name, make(), loss)
                reason = loop_unavailable()
                if reason is not None:
                    print(f"{'partition/loop':<26} skipped: {reason}")
                    continue
                backing = os.path.join(workdir(), "loop.img")
                with open(backing, "wb") as stream:
                    stream.truncate(6 << 20)
                with loop_device(backing) as device:
                    scenario = PartitionScenario(workdir(), update, "block", device_path=device)
                    ok &= applypatch_target("partition/loop", scenario, loss)
        if args.only in (None, "ota_apply"):
            from apply_helpers import make_release  # tests/ota_apply: the release every ota_apply test uses

            release = make_release(workdir())
            for loss in models:
                for kind in ("incremental", "full"):
                    ok &= ota_apply_target(f"ota_apply/{kind}", release, getattr(release, kind), workdir(), loss)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
