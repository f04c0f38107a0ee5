"""imgdiff [-z] [-b BONUS] SRC TGT PATCH: writes an IMGDIFF2 patch (AOSP's command line).

Image mode (default) patches every gzip member of SRC/TGT in uncompressed space when zlib can
reproduce the target's compressed bytes; the two images must have the same chunk structure.
-z treats SRC and TGT as zip files and pairs deflated entries by name. -b names a bonus file
whose bytes the applier appends to the source's chunk 1 (image mode only). Exit status: 0 ok,
1 failure, 2 bad command line.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from ota.actions import imgdiff
from ota.errors import UsageError
from ota.io import fileio, runner

# Single letters on purpose: AOSP's scripts call `imgdiff -z` and `imgdiff -b FILE`, and absl
# accepts one dash for any flag.
_ZIP = flags.DEFINE_boolean("z", False, "Zip mode: SRC and TGT are zip files.")
_BONUS = flags.DEFINE_string("b", None, "Bonus file appended to source chunk 1 when applying (image mode).")


def main(argv: Sequence[str]) -> None:
    if len(argv) != 4:
        raise UsageError("imgdiff [-z] [-b BONUS] SRC TGT PATCH")
    if _ZIP.value and _BONUS.value is not None:
        raise UsageError("-b is for image mode only, not with -z")
    _, source_path, target_path, patch_path = argv
    source, target = fileio.read_file(source_path), fileio.read_file(target_path)
    if _ZIP.value:
        made = imgdiff.make_zip_patch(source, target, source_name=source_path, target_name=target_path)
    else:
        bonus = None if _BONUS.value is None else fileio.read_file(_BONUS.value)
        made = imgdiff.make_image_patch(source, target, bonus=bonus, source_name=source_path, target_name=target_path)
    fileio.write_file(patch_path, made)


def run() -> None:
    runner.run_absl("imgdiff", main)


if __name__ == "__main__":
    run()
