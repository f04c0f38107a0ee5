"""Which shard a system path belongs to, and the files inside a shard directory.

A tree read from a tar archive (py/ota/actions/tar_tree.py) is only known when its action runs, so
ota_package cannot declare one action per path. It declares a fixed number of shard actions
instead (py/ota/actions/file_patch_shard.py), and every path belongs to the shard `shard_of` names.
The function depends on the path's bytes alone, so a one-file change touches one shard's inputs
and re-runs one shard action; rules/private/tar_tree.bzl computes the same function in Starlark
for trees known at analysis time (its `hash` is Java's String.hashCode over the path's bytes).
"""

from __future__ import annotations

import hashlib

from ota.format.paths import to_bytes

# The tar tree action's per-shard listing: {"entries": [{"path", "file", "size", "sha256", "sha1"}]}.
TREE_INDEX = "shard.json"
# A shard action's listing of what it produced (docs/contracts.md#11-tar-trees-and-patch-shards).
RESULTS = "results.json"
_MULTIPLIER = 0x5BD1E995  # below 2**31, so the Starlark product stays below 2**63
_WORD = 1 << 32


def shard_of(path: str, shards: int) -> int:
    """The shard (0..shards-1) of an install path: Java's String.hashCode over its bytes, mixed
    by one multiplication so that the high bits, which pick the shard, depend on every byte."""
    value = 0
    for byte in to_bytes(path):
        value = (31 * value + byte) % _WORD
    return (value * _MULTIPLIER % _WORD) * shards // _WORD


def file_name(path: str) -> str:
    """The name a path's bytes get inside a shard directory: a digest, never the path itself
    (no artifact is named after an install path)."""
    return hashlib.sha256(to_bytes(path)).hexdigest()
