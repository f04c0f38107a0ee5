"""Running atheris_main.py as a subprocess and turning a libFuzzer crash into a readable report.

Shared by the fuzz tests and bench/fuzz_bench.py. libFuzzer ends its process when done, so each
run is its own interpreter; the crash input comes back from `<artifact_prefix>crash-*`.
"""

from __future__ import annotations

import base64
import os
import pathlib
import re
import subprocess
import sys
from dataclasses import dataclass

HERE = pathlib.Path(__file__).absolute().parent  # not resolve(): stay inside Bazel runfiles


@dataclass(frozen=True)
class AtherisRun:
    target: str
    returncode: int
    execs: int
    crashes: list[bytes]
    log: str

    def report(self) -> str:
        inputs = "\n".join(f"input ({len(c)} bytes, base64): {base64.b64encode(c).decode()}" for c in self.crashes)
        return f"{self.target}: libFuzzer exit {self.returncode}\n{self.log[-3000:]}\n{inputs}"


def environment() -> dict[str, str]:
    """The caller's environment with this directory importable (harnesses.py)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    return env


def run_atheris(
    target: str,
    workdir: pathlib.Path,
    *,
    runs: int | None = None,
    seconds: int | None = None,
    seed: int = 1,
    script: pathlib.Path = HERE / "atheris_main.py",
) -> AtherisRun:
    """Fuzzes `target` for `runs` executions and/or `seconds`, corpus and artifacts in `workdir`."""
    corpus, artifacts = workdir / f"{target}-corpus", workdir / f"{target}-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    env = environment()
    subprocess.run(
        [sys.executable, str(script), target, "--write_seeds", str(corpus)], env=env, check=True, capture_output=True
    )
    flags = [
        f"-seed={seed}",
        "-max_len=65536",
        "-rss_limit_mb=2048",
        "-timeout=20",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
    ]
    flags += [f"-runs={runs}"] if runs is not None else []
    flags += [f"-max_total_time={seconds}"] if seconds is not None else []
    done = subprocess.run(
        [sys.executable, str(script), target, *flags, str(corpus)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        check=False,
    )
    found = re.findall(r"stat::number_of_executed_units:\s*(\d+)", done.stdout)
    crashes = [p.read_bytes() for p in sorted(artifacts.iterdir())]
    return AtherisRun(target, done.returncode, int(found[-1]) if found else 0, crashes, done.stdout)
