"""Changing one v2 system file re-executes exactly one OtaFilePatch, one OtaPackage and one
OtaSign, although the v2-only generator rewrites all of its files (unchanged bytes do not
invalidate downstream actions: Bazel's action cache is keyed by input digests). Runs Bazel on a copy of the checkout
(nested_bazel.py) and counts the executed spawns in --execution_log_json_file.
"""

from __future__ import annotations

import collections

from nested_bazel import NestedWorkspace, patched_path

OVERRIDES = "\nV2_REVISION_OVERRIDES = {}\n"


def test_changing_one_v2_file_reruns_one_patch_and_the_package(tmp_path) -> None:
    ws = NestedWorkspace.create(tmp_path, "ws")
    try:
        ws.build("//release:incremental_ota")
        before = ws.bin("release/incremental_ota.zip").read_bytes()
        layout = ws.root / "release/layout.bzl"
        text = layout.read_text()
        assert text.count(OVERRIDES) == 1
        layout.write_text(text.replace(OVERRIDES, '\nV2_REVISION_OVERRIDES = {"bin/tool003": 2}\n'))
        spawns = ws.build("//release:incremental_ota", log=tmp_path / "change.log")
    finally:
        ws.close()
    counts = collections.Counter(s.get("mnemonic") for s in spawns)
    assert counts == {
        "OtaExampleFiles": 1,  # the v2-only generator: rewrites all its files, one differs
        "OtaSystemManifest": 1,  # v2's manifest
        "OtaFilePatch": 1,
        "OtaPackage": 1,
        "OtaSign": 1,  # the package is signed with the TEST key
    }
    (patch,) = [s for s in spawns if s.get("mnemonic") == "OtaFilePatch"]
    assert patched_path(patch, ws.root) == "bin/tool003"
    assert ws.bin("release/incremental_ota.zip").read_bytes() != before
