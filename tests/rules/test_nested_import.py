"""Importing v1's release archive with ota_release_archive (the usual source of a real
incremental) gives the same incremental package byte for byte as //release:incremental_ota, and
as the same trees imported as directories (ota_tree_repository).

The archive records every file's SHA-256, size and SHA-1 (META/system_manifest.json), and its
generated image passes them as `contents`: the image's manifest is written while Bazel analyzes
(no OtaSystemManifest action), and against a target whose sizes are known too (an imported
directory) a small changed file goes to an OtaFilePatchShard bucket, exactly as with a directory
source. Against //release:v2 (per-file labels, sizes unknown) every path present in both builds
gets one OtaFilePatch action: the source files are other artifacts than the target's, so
"unchanged" is decided at execution time (the action reports UNCHANGED). Runs Bazel on a copy of
the checkout (nested_bazel.py).
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import shutil
import zipfile

from nested_bazel import NestedWorkspace, patched_path

# Smaller than the default, so the release's changed files fall on both sides of it.
BATCH_MAX_BYTES = 20000


def _materialize(archive: pathlib.Path, dest: pathlib.Path) -> dict:
    """Writes the system tree of a release archive to `dest` as a device would hold it (modes and
    owners of the manifest; run as root), and returns its manifest's file entries by path."""
    with zipfile.ZipFile(archive) as z:
        entries = json.loads(z.read("META/system_manifest.json"))["entries"]
        dest.mkdir()
        for index, entry in enumerate(entries):
            path = dest / entry["path"]
            if entry["kind"] == "dir":
                path.mkdir()
            elif entry["kind"] == "symlink":
                path.symlink_to(entry["target"])
            else:
                path.write_bytes(z.read(f"SYSTEM/{index}"))
            os.chown(path, entry["uid"], entry["gid"], follow_symlinks=False)
        for entry in reversed(entries):  # children first: a directory's mode may forbid writing
            if entry["kind"] != "symlink":
                os.chmod(dest / entry["path"], entry["mode"])
    return {e["path"]: e for e in entries if e["kind"] == "file"}


def _build_rule(name: str, archive: pathlib.Path, boot: str) -> str:
    """The ota_build of an archive's identity (META/build.json) with its system imported as a directory."""
    with zipfile.ZipFile(archive) as z:
        build = json.loads(z.read("META/build.json"))
    return (
        f'ota_system_image(name = "{name}_system", tree = "@tree_{name}//:tree")\n\n'
        f'ota_build(\n    name = "{name}",\n    boot = "{boot}",\n    device = "{build["device"]}",\n'
        f'    fingerprint = "{build["fingerprint"]}",\n    system = ":{name}_system",\n'
        f"    timestamp = {build['timestamp']},\n)\n\n"
    )


def _package_rule(name: str, source: str, target: str, batch_max_bytes: int | None = None) -> str:
    limit = "" if batch_max_bytes is None else f"    batch_max_bytes = {batch_max_bytes},\n"
    return (
        f'ota_package(\n    name = "{name}",\n{limit}'
        '    signing_key = "//release/keys:TEST_ONLY_ota_ed25519.pem",\n'
        f'    source = "{source}",\n    target = "{target}",\n)\n\n'
    )


def test_imported_v1_archive_gives_the_same_incremental_package(tmp_path) -> None:
    ws = NestedWorkspace.create(tmp_path, "ws")
    root = ws.root
    try:
        (root / "shipped").mkdir()
        (root / "shipped/BUILD").write_text(
            'load("//rules:defs.bzl", "ota_build_archive")\n\n'
            'exports_files(["v1.zip"])\n\nota_build_archive(name = "v2_archive", build = "//release:v2")\n'
        )
        ws.build("//release:v1_archive", "//release:incremental_ota", "//shipped:v2_archive")
        shutil.copyfile(ws.bin("release/v1_archive.zip"), root / "shipped/v1.zip")
        trees = tmp_path / "trees"
        trees.mkdir()
        v1 = _materialize(root / "shipped/v1.zip", trees / "v1")
        v2 = _materialize(ws.bin("shipped/v2_archive.zip"), trees / "v2")
        with open(root / "WORKSPACE", "a") as workspace:
            workspace.write(
                '\nload("//rules:repositories.bzl", "ota_release_archive", "ota_tree_repository")\n\n'
                'ota_release_archive(\n    name = "shipped_v1",\n    archive = "//shipped:v1.zip",\n)\n'
                f'\nota_tree_repository(name = "tree_v1", path = "{trees / "v1"}")\n'
                f'\nota_tree_repository(name = "tree_v2", path = "{trees / "v2"}")\n'
            )
        (root / "imported").mkdir()
        (root / "imported/BUILD").write_text(
            'load("//rules:defs.bzl", "ota_build", "ota_package", "ota_system_image")\n\n'
            + _build_rule("v1", root / "shipped/v1.zip", "@shipped_v1//:boot")
            + _build_rule("v2", ws.bin("shipped/v2_archive.zip"), "//release:v2_boot")
            + _package_rule("incremental_ota", "@shipped_v1//:build", "//release:v2")
            + _package_rule("archive_to_directory", "@shipped_v1//:build", ":v2", BATCH_MAX_BYTES)
            + _package_rule("directory_to_directory", ":v1", ":v2", BATCH_MAX_BYTES)
        )
        spawns = ws.build("//imported:incremental_ota", log=tmp_path / "import.log")
        from_archive = ws.build("//imported:archive_to_directory", log=tmp_path / "archive.log")
        from_directory = ws.build("//imported:directory_to_directory", log=tmp_path / "directory.log")
    finally:
        ws.close()
    assert ws.bin("imported/incremental_ota.zip").read_bytes() == ws.bin("release/incremental_ota.zip").read_bytes()
    assert (
        ws.bin("imported/archive_to_directory.zip").read_bytes()
        == ws.bin("imported/directory_to_directory.zip").read_bytes()
    )

    in_both = set(v1) & set(v2)
    patched = [patched_path(s, ws.root) for s in spawns if s.get("mnemonic") == "OtaFilePatch"]
    assert sorted(patched) == sorted(in_both)
    # The archive's image hashes nothing: its manifest is written from the recorded contents.
    assert not [s for s in spawns if s.get("mnemonic") == "OtaSystemManifest"]

    changed = {p for p in in_both if v1[p]["sha256"] != v2[p]["sha256"]}
    large = {p for p in changed if v1[p]["size"] + v2[p]["size"] >= BATCH_MAX_BYTES}
    assert large and large != changed  # the release's changes fall on both sides of the limit
    for log in (from_archive, from_directory):
        counts = collections.Counter(s.get("mnemonic") for s in log)
        assert counts["OtaFilePatchShard"] == 32 and counts["OtaSystemManifest"] == 0, counts
        assert sorted(patched_path(s, ws.root) for s in log if s.get("mnemonic") == "OtaFilePatch") == sorted(large)
