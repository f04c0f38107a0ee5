"""ramdisk --tree T.json --out R: a boot image's ramdisk, byte-reproducible (docs/contracts.md#6-ramdisk).

A deterministic newc cpio of the tree (ota.format.cpio: sorted, fixed mtime, declared modes and owners)
compressed by zlib at a level imgdiff re-creates (ota.format.gzipper), so that a later boot-image patch
can work on the uncompressed ramdisk instead of its compressed bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from ota.actions import toolchain_identity, tree
from ota.errors import UsageError
from ota.format import cpio, gzipper, paths
from ota.io import fileio, runner

_TREE = flags.DEFINE_string(
    "tree", None, "Tree description JSON (docs/contracts.md#1-tree-description) of the ramdisk's contents."
)
_OUT = flags.DEFINE_string("out", None, "Where to write the gzip'd cpio archive.")
_LEVEL = flags.DEFINE_enum(
    "level",
    str(gzipper.DEFAULT_LEVEL),
    [str(v) for v in gzipper.IMGDIFF_LEVELS],
    "zlib level (only levels imgdiff reproduces).",
)

_KINDS = {tree.FILE: cpio.Kind.FILE, tree.DIR: cpio.Kind.DIR, tree.SYMLINK: cpio.Kind.SYMLINK}


def cpio_entries(entries: Sequence[tree.TreeEntry]) -> list[cpio.Entry]:
    """The cpio members of a validated tree; file bytes are read from each entry's `file`."""
    out = []
    for e in entries:
        if e.kind == tree.FILE:
            data = fileio.read_file(e.file)  # type: ignore[arg-type]
        elif e.kind == tree.SYMLINK:
            data = paths.to_bytes(e.target)  # type: ignore[arg-type]
        else:
            data = b""
        out.append(cpio.Entry(e.path, _KINDS[e.kind], e.mode, e.uid, e.gid, data))
    return out


def build_ramdisk(tree_path: str, level: int = gzipper.DEFAULT_LEVEL) -> bytes:
    return gzipper.compress(cpio.write(cpio_entries(tree.load_tree(tree_path))), level)


def main(argv: Sequence[str]) -> None:
    toolchain_identity.verify_flag()
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _TREE.value or not _OUT.value:
        raise UsageError("--tree and --out are required")
    fileio.write_file(_OUT.value, build_ramdisk(_TREE.value, int(_LEVEL.value)))


def run() -> None:
    runner.run_absl("ramdisk", main)


if __name__ == "__main__":
    run()
