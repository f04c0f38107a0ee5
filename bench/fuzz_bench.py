#!/usr/bin/env python3
"""Longer fuzzing runs than the tests: prints `<engine> <target>: execs: N, crashes: C` per target.

    PYTHONPATH=py python3 bench/fuzz_bench.py --seconds 300 [--engine atheris|mutate|both] [--target T]

atheris runs are coverage-guided (libFuzzer; the work directory keeps the grown corpus and any
crash-* inputs); the mutation engine is the deterministic fallback. Each crash is printed with its
input in base64. The exit status is 1 when anything crashed.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).absolute().parent.parent / "tests" / "fuzz"))

from fuzz_runs import run_atheris
from harnesses import TARGETS
from mutate import run_loop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="time per target and engine")
    parser.add_argument("--engine", choices=("atheris", "mutate", "both"), default="both")
    parser.add_argument("--target", choices=sorted(TARGETS), action="append", help="default: all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", help="keep corpora and crash inputs here (default: a temp dir)")
    args = parser.parse_args()
    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="ota-fuzz-"))
    crashed = False
    for name in args.target or sorted(TARGETS):
        if args.engine in ("atheris", "both"):
            run = run_atheris(name, workdir, seconds=args.seconds, seed=args.seed)
            crashes = len(run.crashes) + (run.returncode != 0 and not run.crashes)
            print(f"atheris {name}: execs: {run.execs}, crashes: {crashes}", flush=True)
            if crashes:
                print(run.report(), flush=True)
            crashed |= bool(crashes)
        if args.engine in ("mutate", "both"):
            result = run_loop(TARGETS[name], seconds=args.seconds, seed=args.seed)
            print(f"mutate {name}: execs: {result.execs}, crashes: {len(result.findings)}", flush=True)
            for finding in result.findings:
                print(finding.report(), flush=True)
            crashed |= bool(result.findings)
    print(f"work directory: {workdir}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
