#!/usr/bin/env python3
"""Cuts a 4 MB boot-image update at every I/O step on each applypatch backend and reruns it.

Prints, per backend, `crash points: N, recovered: N` (recovered = the rerun left the target
image in place, the cache backup removed and no scratch file behind). Backends: partition on a
file image, on a loop device (root only; sampled with --loop_every), on the NAND simulator
(including half-erased blocks and partially programmed pages), and a regular-file target with
and without the low-space cache path.

  PYTHONPATH=py python3 bench/applypatch_crash_points.py [--loop_every=N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from ota.testing.scenarios import BootUpdate, FileScenario, PartitionScenario, loop_device, loop_unavailable
from ota.testing.sweep import Scenario, crash_points, sweep


def report(name: str, scenario: Scenario, every: int = 1) -> bool:
    every_point = crash_points(scenario)
    started = time.monotonic()
    result = sweep(scenario, every_point[::every])
    sampled = f" (every {every}th of {len(every_point)})" if every > 1 else ""
    print(
        f"{name:<22} crash points: {len(result.points)}, recovered: {result.recovered}{sampled}"
        f"  [{time.monotonic() - started:.1f} s]"
    )
    for outcome in result.failures():
        print(f"  {outcome.point}: {outcome.problem}")
    return not result.failures()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop_every", type=int, default=1, help="sample every Nth loop-device crash point")
    args = parser.parse_args()
    update = BootUpdate.make()
    print(f"boot image: {len(update.source)} -> {len(update.target)} bytes, IMGDIFF2 patch {len(update.patch)} bytes")
    ok = True
    with tempfile.TemporaryDirectory() as root:

        def workdir(name: str) -> str:
            path = os.path.join(root, name)
            os.makedirs(path)
            return path

        ok &= report("partition/file", PartitionScenario(workdir("file"), update, "file"))
        reason = loop_unavailable()
        if reason is None:
            backing = os.path.join(root, "loop.img")
            with open(backing, "wb") as stream:
                stream.truncate(6 << 20)
            with loop_device(backing) as device:
                ok &= report(
                    "partition/loop",
                    PartitionScenario(workdir("loop"), update, "block", device_path=device),
                    args.loop_every,
                )
        else:
            print(f"partition/loop         skipped: {reason}")
        ok &= report("partition/mtdsim", PartitionScenario(workdir("mtd"), update, "mtdsim"))
        ok &= report("file", FileScenario(workdir("f"), update, low_space=False))
        ok &= report("file/low-space", FileScenario(workdir("fl"), update, low_space=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
