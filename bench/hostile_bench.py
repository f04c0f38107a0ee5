"""Every hostile input of the attack table, with the exact peak RSS and wall time of each run.

    PYTHONPATH=py python3 bench/hostile_bench.py [--work DIR]

Runs tests/security/attacks.py's attacks (the same builds, devices and tools; docs/security.md,
"Attack table") and prints one line per attack: peak RSS of the tool's process (MB = 10^6 bytes),
wall time, and the outcome. The table in docs/security.md shows only the bound each row must stay
within, so that it is the same on every run; these are the measurements. The closing line:

    hostile: N tried, N refused before any write, peak RSS max X MB, pre-signature max Y MB

"refused before any write": refused with one line and exit 1, nothing on the device (or in the
host tool's directory) changed. "pre-signature": the attacks refused before a signature is
verified, which anyone can send (docs/security.md, "Memory and time bounds").
Exit status 1 if any attack did not have its expected outcome within its bounds.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "security"))

import attacks

_WORK = flags.DEFINE_string("work", None, "Keep builds, packages and devices here (default: a temporary directory).")

_MB_PER_MIB = (1 << 20) / 1e6


def _line(row: attacks.Row) -> str:
    verdict = "ok" if row.ok else "FAILED"
    return (
        f"{row.peak_rss_mib * _MB_PER_MIB:8.1f} MB {row.seconds:6.2f} s  {verdict:6s} {row.attack.name}: "
        f"{row.outcome[:160]}"
    )


def summary(rows: list[attacks.Row]) -> str:
    refused = sum(row.refused_before_any_write for row in rows)
    peak = max(row.peak_rss_mib for row in rows) * _MB_PER_MIB
    pre = max(row.peak_rss_mib for row in rows if row.attack.pre_signature) * _MB_PER_MIB
    return (
        f"hostile: {len(rows)} tried, {refused} refused before any write, "
        f"peak RSS max {peak:.0f} MB, pre-signature max {pre:.0f} MB"
    )


def main(argv: list[str]) -> int:
    del argv
    work = _WORK.value or tempfile.mkdtemp(prefix="ota-hostile-")
    if _WORK.value and os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work, exist_ok=True)
    try:
        rows = attacks.run_all(work, on_row=lambda row: print(_line(row), flush=True))
    finally:
        if not _WORK.value:
            shutil.rmtree(work)
    print(summary(rows))
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    app.run(main)
