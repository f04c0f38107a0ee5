"""normalize_gzip --in X --out Y: make a gzip file one that imgdiff patches in uncompressed space.

GNU gzip's output (kernels' Image.gz, most prebuilt ramdisks) is not what any zlib setting
produces, so imgdiff would patch its compressed bytes and a boot-image patch would be about as
big as the image (docs/formats.md#gzip-streams-imgdiff-can-reproduce). ota.format.gzipper.normalize re-compresses such a
stream with zlib (same inflated bytes) and leaves reproducible streams and non-gzip files as they
are. Silent on success, as a build action should be; a damaged gzip is a one-line error.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from ota.errors import UsageError
from ota.format import gzipper
from ota.io import fileio, runner

_IN = flags.DEFINE_string("in", None, "Input file (gzip or not).")
_OUT = flags.DEFINE_string("out", None, "Where to write the normalized file.")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _IN.value or not _OUT.value:
        raise UsageError("--in and --out are required")
    data, _ = gzipper.normalize(fileio.read_file(_IN.value), _IN.value)
    fileio.write_file(_OUT.value, data)


def run() -> None:
    runner.run_absl("normalize_gzip", main)


if __name__ == "__main__":
    run()
