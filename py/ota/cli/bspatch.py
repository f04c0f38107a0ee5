"""bspatch SRC OUT PATCH: applies a BSDIFF40 patch (argument order of bsdiff 4.x's bspatch)."""

from __future__ import annotations

from typing import Sequence

from absl import flags

from ota import bsdiff
from ota.cli import fileio, runner
from ota.errors import UsageError

_LIMIT = flags.DEFINE_integer("limit", bsdiff.DEFAULT_LIMIT,
                              "Largest new-file size a patch may declare (bytes).", lower_bound=0)


def main(argv: Sequence[str]) -> None:
    if len(argv) != 4:
        raise UsageError("bspatch SRC OUT PATCH")
    _, source, output, patch = argv
    result = bsdiff.apply(fileio.read_file(source), fileio.read_file(patch), where=patch, limit=_LIMIT.value)
    fileio.write_file(output, result)


def run() -> None:
    runner.run_absl("bspatch", main)


if __name__ == "__main__":
    run()
