"""Helpers for the applypatch tests: a small BSDIFF40 update and a CLI runner."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Small:
    """A 300 KB pseudo-random source, its target and the BSDIFF40 patch, with hex SHA-1s."""

    source: bytes
    target: bytes
    patch: bytes

    @property
    def src_sha(self) -> str:
        return hashlib.sha1(self.source).hexdigest()

    @property
    def tgt_sha(self) -> str:
        return hashlib.sha1(self.target).hexdigest()

    def spec(self, kind: str = "EMMC", name: str = "boot") -> str:
        return f"{kind}:{name}:{len(self.source)}:{self.src_sha}:{len(self.target)}:{self.tgt_sha}"


def sha1_of(path: str) -> str:
    with open(path, "rb") as stream:
        return hashlib.sha1(stream.read()).hexdigest()


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Runs the applypatch CLI in a child process (PYTHONPATH is inherited)."""
    return subprocess.run(
        [sys.executable, "-m", "ota.cli.applypatch", *args],
        capture_output=True,
        text=True,
        env=None if env is None else {**os.environ, **env},
        cwd=cwd,
        check=False,
    )


def run_testbench_cli(faults: list[str], *args: str) -> subprocess.CompletedProcess:
    """Runs the real applypatch CLI under the test bench entry point (ota.testing.testbench_cli):
    the NAND simulator's kind `mtdsim` is known, and `faults` are the injector's options (e.g.
    ["--fault=tear:7"] or ["--fault_log=ops.log"]; [] for none)."""
    return subprocess.run(
        [sys.executable, "-m", "ota.testing.testbench_cli", *faults, "applypatch", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def setuid_source(tmp_path, small: Small, mode: int) -> str:
    """The source as a file owned by 1000:2000 with `mode` (setuid/setgid bits), a cache dir and patch `p`."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "p").write_bytes(small.patch)
    tool = tmp_path / "su"
    tool.write_bytes(small.source)
    os.chown(tool, 1000, 2000)
    os.chmod(tool, mode)
    return str(tool)


def contents_mode_owner(path: str) -> tuple[bytes, int, int, int]:
    info = os.stat(path)
    with open(path, "rb") as stream:
        return stream.read(), info.st_mode & 0o7777, info.st_uid, info.st_gid
