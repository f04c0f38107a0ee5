"""Importing v1's release archive with ota_release_archive (the usual source of a real
incremental) gives the same incremental package byte for byte as //release:incremental_ota.

With an imported source every path present in both builds gets one OtaFilePatch action: the
source files are other artifacts than the target's, so "unchanged" is decided at execution time
(the action reports UNCHANGED). Runs Bazel on a copy of the checkout (nested_bazel.py).
"""

from __future__ import annotations

import json
import shutil

from nested_bazel import NestedWorkspace, patched_path


def test_imported_v1_archive_gives_the_same_incremental_package(tmp_path) -> None:
    ws = NestedWorkspace.create(tmp_path, "ws")
    try:
        ws.build("//release:v1_archive", "//release:incremental_ota")
        root = ws.root
        (root / "shipped").mkdir()
        shutil.copyfile(ws.bin("release/v1_archive.zip"), root / "shipped/v1.zip")
        (root / "shipped/BUILD").write_text('exports_files(["v1.zip"])\n')
        with open(root / "WORKSPACE", "a") as workspace:
            workspace.write(
                '\nload("//rules:repositories.bzl", "ota_release_archive")\n\n'
                'ota_release_archive(\n    name = "shipped_v1",\n    archive = "//shipped:v1.zip",\n)\n'
            )
        (root / "imported").mkdir()
        (root / "imported/BUILD").write_text(
            'load("//rules:defs.bzl", "ota_package")\n\n'
            'ota_package(\n    name = "incremental_ota",\n'
            '    signing_key = "//release/keys:TEST_ONLY_ota_ed25519.pem",\n'
            '    source = "@shipped_v1//:build",\n    target = "//release:v2",\n)\n'
        )
        spawns = ws.build("//imported:incremental_ota", log=tmp_path / "import.log")
    finally:
        ws.close()
    assert ws.bin("imported/incremental_ota.zip").read_bytes() == ws.bin("release/incremental_ota.zip").read_bytes()

    v1 = json.loads(ws.bin("release/v1_system.manifest.json").read_text())["entries"]
    v2 = json.loads(ws.bin("release/v2_system.manifest.json").read_text())["entries"]
    in_both = {e["path"] for e in v1 if e["kind"] == "file"} & {e["path"] for e in v2 if e["kind"] == "file"}
    patched = [patched_path(s, ws.root) for s in spawns if s.get("mnemonic") == "OtaFilePatch"]
    assert sorted(patched) == sorted(in_both)
