"""bsdiff SRC TGT PATCH: writes a BSDIFF40 patch that turns SRC into TGT (AOSP/bsdiff 4.x format)."""

from __future__ import annotations

from collections.abc import Sequence

from ota.actions import make_bsdiff
from ota.errors import UsageError
from ota.io import fileio, runner


def main(argv: Sequence[str]) -> None:
    if len(argv) != 4:
        raise UsageError("bsdiff SRC TGT PATCH")
    _, source, target, patch = argv
    fileio.write_file(patch, make_bsdiff.diff(fileio.read_file(source), fileio.read_file(target), where=source))


def run() -> None:
    runner.run_absl("bsdiff", main)


if __name__ == "__main__":
    run()
