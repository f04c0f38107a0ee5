"""Shared helpers of the engine tests: running the CLIs and hand-building hostile patches."""

from __future__ import annotations

import bz2
import subprocess
import sys
from pathlib import Path

from ota.format import bsdiff


def run_tool(tool: str, *args: str | Path, address_space: int | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `python -m ota.cli.<tool> args...` the way a user would, capturing its output;
    with `address_space`, under that RLIMIT_AS (util-linux prlimit), so any allocation near a
    hostile declared size fails instead of merely showing in the peak RSS."""
    limit = [] if address_space is None else ["prlimit", f"--as={address_space}"]
    return subprocess.run(
        [*limit, sys.executable, "-m", f"ota.cli.{tool}", *map(str, args)], capture_output=True, text=True, check=False
    )


def bsdiff40(
    controls: list[tuple[int, int, int]],
    diff: bytes,
    extra: bytes,
    new_size: int,
    *,
    control_raw: bytes | None = None,
    diff_raw: bytes | None = None,
) -> bytes:
    """Builds a BSDIFF40 patch from explicit parts (to say exactly what is wrong with it)."""
    control = (
        control_raw
        if control_raw is not None
        else b"".join(bsdiff.encode_offset(v) for triple in controls for v in triple)
    )
    control_z = bz2.compress(control)
    diff_z = diff_raw if diff_raw is not None else bz2.compress(diff)
    return (
        bsdiff.MAGIC
        + bsdiff.encode_offset(len(control_z))
        + bsdiff.encode_offset(len(diff_z))
        + bsdiff.encode_offset(new_size)
        + control_z
        + diff_z
        + bz2.compress(extra)
    )


def peak_rss_mb(tool: str, *args: str | Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """Runs a CLI and reports its peak resident memory, to prove a bomb was not inflated."""
    probe = (
        "import resource, runpy, sys\n"
        f"sys.argv = [{tool!r}] + sys.argv[1:]\n"
        "try:\n"
        f"    runpy.run_module('ota.cli.{tool}', run_name='__main__')\n"
        "finally:\n"
        "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, *map(str, args)], capture_output=True, text=True, check=False)
    lines = done.stderr.strip().splitlines()
    return done, int(lines[-1]) / 1024
