"""A tar-backed system tree: changing one file of the target archive re-executes one OtaTarTree
(the target's), exactly one OtaFilePatchShard (the changed path's shard), and the package; the
other shards are cache hits because their shard directories kept their bytes. Runs Bazel on a
copy of the checkout (nested_bazel.py) and counts the spawns in --execution_log_json_file.
"""

from __future__ import annotations

import collections
import tarfile

from nested_bazel import NestedWorkspace
from ota.actions import shard_layout

PACKAGE = "//tests/tar_tree:tar_incremental"
TARGET_TAR = "tests/tar_tree/system_v2.tar.gz"
SHARDS = 32  # TAR_SHARDS in rules/private/tar_tree.bzl
NO_BUMP = "--classes %s --bump '' "
ONE_BUMP = "--classes %s --bump 5 "


def _members(path) -> dict[str, bytes]:
    with tarfile.open(path, encoding="utf-8", errors="surrogateescape") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive if m.isreg()}  # type: ignore[union-attr]


def _shard_dirs(spawn: dict) -> list[str]:
    return [out.rsplit("/", 1)[1] for out in spawn.get("listedOutputs", []) if "/system_shards/shard_" in out]


def test_changing_one_file_of_a_tar_reruns_one_shard(tmp_path) -> None:
    ws = NestedWorkspace.create(tmp_path, "ws")
    try:
        cold = ws.build(PACKAGE, log=tmp_path / "cold.log")
        before = _members(ws.bin(TARGET_TAR))
        build = ws.root / "tests/tar_tree/BUILD"
        text = build.read_text()
        assert text.count(NO_BUMP) == 1
        build.write_text(text.replace(NO_BUMP, ONE_BUMP))
        spawns = ws.build(PACKAGE, log=tmp_path / "change.log")
        after = _members(ws.bin(TARGET_TAR))
    finally:
        ws.close()
    cold_counts = collections.Counter(s.get("mnemonic") for s in cold)
    assert cold_counts["OtaFilePatchShard"] == SHARDS
    assert cold_counts["OtaTarTree"] == 4  # two system trees, two ramdisks
    changed = [name for name in after if before.get(name) != after[name]]
    assert len(changed) == 1
    counts = collections.Counter(s.get("mnemonic") for s in spawns)
    assert counts == {
        "Genrule": 1,  # rewrites both system archives; only the target's bytes differ
        "OtaTarTree": 1,  # the target's
        "OtaFilePatchShard": 1,
        "OtaPackage": 1,
    }
    (shard,) = [s for s in spawns if s.get("mnemonic") == "OtaFilePatchShard"]
    path = changed[0].removeprefix("./")
    assert _shard_dirs(shard) == [f"shard_{shard_layout.shard_of(path, SHARDS)}"]
