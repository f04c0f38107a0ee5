"""system_manifest --tree T.json --out M.json: hashes every file of a tree description.

The manifest is what the package writer and the release archive read
(docs/contracts.md#2-system-manifest): the same
entries with "size", "sha256" and "sha1" in place of "file", so those actions depend on hashes,
not on file locations, and the manifest stays identical when only a file's exec path moves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from absl import flags

from ota.actions import toolchain_identity, tree
from ota.errors import UsageError
from ota.format import hashing, jsonio
from ota.io import runner

_TREE = flags.DEFINE_string("tree", None, "Tree description JSON (docs/contracts.md#1-tree-description) to hash.")
_OUT = flags.DEFINE_string("out", None, "Where to write the system manifest JSON.")


def build_manifest(entries: Sequence[tree.TreeEntry]) -> list[tree.TreeEntry]:
    """Manifest entries of a validated tree: files get content hashes and lose their exec path."""
    return [
        dataclasses.replace(e, file=None, content=hashing.of_file(e.file)) if e.kind == tree.FILE else e
        for e in entries
    ]


def main(argv: Sequence[str]) -> None:
    toolchain_identity.verify_flag()
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _TREE.value or not _OUT.value:
        raise UsageError("--tree and --out are required")
    jsonio.write(_OUT.value, tree.manifest_doc(build_manifest(tree.load_tree(_TREE.value))))


def run() -> None:
    runner.run_absl("system_manifest", main)


if __name__ == "__main__":
    run()
