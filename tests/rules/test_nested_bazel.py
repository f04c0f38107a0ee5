"""Whole-build properties of //release, each checked by running Bazel on a copy of the checkout.

- Two copies at different paths, each with its own output root and no shared cache, build
  byte-identical packages and release archive.
- Importing v1's release archive with ota_release_archive (the usual source of a real
  incremental) gives the same incremental package byte for byte, with one OtaFilePatch action
  per path present in both builds (the source files are other artifacts: "unchanged" is decided
  at execution time there).
- Changing one v2 system file re-executes exactly one OtaFilePatch and one OtaPackage, although
  the generator rewrites all v2-only files (unchanged bytes do not invalidate downstream actions).
"""

from __future__ import annotations

import collections
import json
import pathlib
import shutil

import pytest

from nested_bazel import NestedWorkspace, arg_after

TARGETS = ("//release:incremental_ota", "//release:full_ota", "//release:v1_archive")
OUTPUTS = ("release/incremental_ota.zip", "release/full_ota.zip", "release/v1_archive.zip")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("nested")


@pytest.fixture(scope="module")
def clone_a(base):
    ws = NestedWorkspace.create(base, "a")
    try:
        ws.build(*TARGETS)
        yield ws
    finally:
        ws.close()


def test_two_checkouts_build_byte_identical_outputs(base, clone_a) -> None:
    other = NestedWorkspace.create(base / "elsewhere" / "deeper", "b")
    try:
        other.build(*TARGETS)
    finally:
        other.close()
    assert other.root != clone_a.root
    for out in OUTPUTS:
        assert other.bin(out).read_bytes() == clone_a.bin(out).read_bytes(), out


def test_imported_v1_archive_gives_the_same_incremental_package(clone_a, base) -> None:
    root = clone_a.root
    (root / "shipped").mkdir()
    shutil.copyfile(clone_a.bin("release/v1_archive.zip"), root / "shipped/v1.zip")
    (root / "shipped/BUILD").write_text('exports_files(["v1.zip"])\n')
    with open(root / "WORKSPACE", "a") as workspace:
        workspace.write(
            '\nload("//rules:defs.bzl", "ota_release_archive")\n\n'
            'ota_release_archive(\n    name = "shipped_v1",\n    archive = "//shipped:v1.zip",\n)\n'
        )
    (root / "imported").mkdir()
    (root / "imported/BUILD").write_text(
        'load("//rules:defs.bzl", "ota_package")\n\n'
        'ota_package(\n    name = "incremental_ota",\n    source = "@shipped_v1//:build",\n'
        '    target = "//release:v2",\n)\n'
    )
    spawns = clone_a.build("//imported:incremental_ota", "//release:incremental_ota", log=base / "import.log")
    assert clone_a.bin("imported/incremental_ota.zip").read_bytes() == clone_a.bin("release/incremental_ota.zip").read_bytes()

    v1 = json.loads(clone_a.bin("release/v1_system.manifest.json").read_text())["entries"]
    v2 = json.loads(clone_a.bin("release/v2_system.manifest.json").read_text())["entries"]
    in_both = {e["path"] for e in v1 if e["kind"] == "file"} & {e["path"] for e in v2 if e["kind"] == "file"}
    patched = sorted(arg_after(s, "--path") for s in spawns if s.get("mnemonic") == "OtaFilePatch")
    assert patched == sorted(in_both)


def test_changing_one_v2_file_reruns_one_patch_and_the_package(clone_a, base) -> None:
    clone_a.build("//release:incremental_ota")
    before = clone_a.bin("release/incremental_ota.zip").read_bytes()
    layout = clone_a.root / "release/layout.bzl"
    text = layout.read_text()
    assert text.count("\nV2_REVISION_OVERRIDES = {}\n") == 1
    layout.write_text(text.replace("\nV2_REVISION_OVERRIDES = {}\n", '\nV2_REVISION_OVERRIDES = {"bin/tool003": 2}\n'))

    spawns = clone_a.build("//release:incremental_ota", log=base / "change.log")
    counts = collections.Counter(s.get("mnemonic") for s in spawns)
    assert counts == {
        "OtaExampleFiles": 1,  # the v2-only generator: rewrites all its files, one differs
        "OtaSystemManifest": 1,  # v2's manifest
        "OtaFilePatch": 1,
        "OtaPackage": 1,
    }
    (patch,) = [s for s in spawns if s.get("mnemonic") == "OtaFilePatch"]
    assert arg_after(patch, "--path") == "bin/tool003"
    assert clone_a.bin("release/incremental_ota.zip").read_bytes() != before
