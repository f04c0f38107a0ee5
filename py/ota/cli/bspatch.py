"""bspatch SRC OUT PATCH: applies a BSDIFF40 or IMGDIFF2 patch (argument order of bsdiff 4.x's bspatch).

BSDIFF40 patches are what `bsdiff` (ours, Debian's, AOSP's) writes. IMGDIFF2 patches, what
`imgdiff` writes, are recognised by their magic as AOSP's applypatch does, so a patch can be
checked on a host with `imgdiff SRC TGT P && bspatch SRC OUT P && cmp OUT TGT`; --bonus gives the
bonus file an `imgdiff -b` patch needs. On a device use `applypatch`, which also checks the
source and target hashes and survives power loss. Exit status: 0 ok, 1 bad input (one line
naming the patch file and the field), 2 bad command line.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from ota.errors import UsageError
from ota.format import patch
from ota.io import fileio, runner

_LIMIT = flags.DEFINE_integer(
    "limit", patch.DEFAULT_LIMIT, "Largest output (new file) size a patch may declare, in bytes.", lower_bound=0
)
_EXPAND_LIMIT = flags.DEFINE_integer(
    "expand_limit",
    patch.DEFAULT_LIMIT,
    "IMGDIFF2: largest inflated size a deflate chunk may declare, in bytes (a gzip'd kernel inflates "
    "to more than the whole image, so --limit cannot bound it).",
    lower_bound=0,
)
_BONUS = flags.DEFINE_string(
    "bonus", None, "IMGDIFF2: bonus file appended to the source's chunk 1 (the file given to `imgdiff -b`)."
)


def main(argv: Sequence[str]) -> None:
    if len(argv) != 4:
        raise UsageError("bspatch [--bonus FILE] SRC OUT PATCH")
    _, source, output, patch_path = argv
    bonus = None if _BONUS.value is None else fileio.read_file(_BONUS.value)
    result = patch.apply_patch(
        fileio.read_file(source),
        fileio.read_file(patch_path),
        bonus=bonus,
        where=patch_path,
        limit=_LIMIT.value,
        expand_limit=_EXPAND_LIMIT.value,
    )
    fileio.write_file(output, result)


def run() -> None:
    runner.run_absl("bspatch", main)


if __name__ == "__main__":
    run()
