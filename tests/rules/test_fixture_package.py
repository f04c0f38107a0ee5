"""The fixture packages (tests/rules/BUILD) built by Bazel: per-path decisions end to end.

The analysis tests prove which actions exist; this proves what they produced: exact zip entries,
manifest operations, and the diff-failure fallback (WHOLE + a warning in the patch info) for a
system file and for the boot image.
"""

from __future__ import annotations

import gzip
import json
import pathlib
import zipfile

import pytest

from ota.format import layout
from ota.format.package_reader import open_package
from ota.format.patch import apply_patch
from ota.proto import ota_manifest_pb2 as pb

REPO = pathlib.Path(__file__).absolute().parents[2]  # not resolve(): stay inside Bazel runfiles
HERE = REPO / "tests/rules"
Op = pb.FileOperation


def _ops(manifest: pb.OtaManifest) -> dict[str, pb.FileOperation]:
    return {f.path.decode(): f for f in manifest.files}


def _info(kind: str, path: str) -> dict:
    """The info JSON of `path` under fixture_incremental.patches/<kind>: artifacts are named after
    a digest of the path (rules/private/names.bzl), so the info is found by the path it records."""
    infos = [json.loads(f.read_text()) for f in (HERE / "fixture_incremental.patches" / kind).glob("*.json")]
    (info,) = [info for info in infos if info["path"] == path]
    return info


def _data(package, path: str) -> bytes:
    """`path`'s patch or whole contents, out of the package's payload blob."""
    op = _ops(package.manifest)[path]
    return package.read_slice(op.data, op.target.size if op.op == Op.WRITE else op.data.length)


@pytest.fixture(scope="module")
def incremental():
    with open_package(str(HERE / "fixture_incremental.zip")) as pkg:
        pkg.verify_all()
        yield pkg


def test_incremental_entries_are_exactly_the_expected_ones(incremental) -> None:
    assert sorted(incremental.payload) == [
        "boot.img",  # imgdiff failed: whole image
        "patch/vendor.img.p",
        "payload.bin",  # bin/tool's patch, etc/data.gz (imgdiff failed: whole) and etc/new.txt
    ]
    slices = [
        (path, op.data.offset, op.data.length) for path, op in _ops(incremental.manifest).items() if op.data.length
    ]
    assert [path for path, _, _ in slices] == ["bin/tool", "etc/data.gz", "etc/new.txt"]
    assert [offset for _, offset, _ in slices] == [0, slices[0][2], slices[0][2] + slices[1][2]]  # back to back


@pytest.mark.parametrize("name", ["fixture_incremental.zip", "fixture_full.zip"])
def test_package_without_signing_key_is_unsigned(name: str) -> None:
    with open_package(str(HERE / name)) as pkg:
        payload = set(pkg.payload)
        assert pkg.signature is None
    with zipfile.ZipFile(HERE / name) as zf:
        assert set(zf.namelist()) == payload | {layout.MANIFEST_ENTRY}


def test_incremental_operations_per_path(incremental) -> None:
    ops = _ops(incremental.manifest)
    got = {path: (Op.Op.Name(op.op), pb.PatchMethod.Name(op.method)) for path, op in ops.items()}
    assert got == {
        "bin/tool": ("PATCH", "BSDIFF"),
        "etc/data.gz": ("WRITE", "WHOLE"),
        "etc/new.txt": ("WRITE", "WHOLE"),
        "etc/old.txt": ("DELETE", "PATCH_METHOD_UNSPECIFIED"),
    }
    assert (ops["bin/tool"].mode, ops["bin/tool"].uid, ops["bin/tool"].gid) == (0o755, 0, 2000)
    # Unchanged, so no operation: bin and etc (in the root's group), bin/sh (bin's), etc/same.txt
    # (the same File: no action at all) and etc/twin.txt (another File, same bytes: UNCHANGED).
    groups = {group.directory: group.count for group in incremental.manifest.unchanged}
    assert groups == {b"": 2, b"bin": 1, b"etc": 2}


def test_bsdiff_patch_turns_source_into_target(incremental) -> None:
    source = (HERE / "testdata/tool.v1").read_bytes()
    target = (HERE / "testdata/tool.v2").read_bytes()
    assert apply_patch(source, _data(incremental, "bin/tool")) == target


def test_same_bytes_in_another_file_reports_unchanged() -> None:
    info = _info("system", "etc/twin.txt")
    assert (info["method"], info["data_size"], info["warning"]) == ("UNCHANGED", 0, "")


def test_system_file_diff_failure_ships_whole_file_with_warning(incremental) -> None:
    info = _info("system", "etc/data.gz")
    assert info["method"] == "WHOLE"
    assert info["warning"].startswith("WARNING: etc/data.gz: IMGDIFF failed (")
    assert info["warning"].endswith("); shipping the whole file")
    shipped = _data(incremental, "etc/data.gz")
    assert shipped == (HERE / "data.gz").read_bytes()
    assert gzip.decompress(shipped) == (HERE / "testdata/data.txt").read_bytes()


def test_boot_image_diff_failure_ships_whole_image_with_warning(incremental) -> None:
    info = _info("partitions", "boot.img")
    assert info["method"] == "WHOLE"
    assert info["warning"].startswith("WARNING: boot.img: IMGDIFF failed (")
    assert "chunk structure" in info["warning"]
    boot = {p.name: p for p in incremental.manifest.partitions}["boot"]
    assert boot.method == pb.WHOLE and boot.entry == "boot.img"
    assert incremental.read("boot.img") == (HERE / "tgt_boot.img").read_bytes()


def test_unchanged_partition_is_left_out_and_changed_one_is_patched(incremental) -> None:
    parts = {p.name: p for p in incremental.manifest.partitions}
    assert sorted(parts) == ["boot", "vendor"]  # odm is the same File in both builds
    source = (HERE / "testdata/vendor.v1.img").read_bytes()
    target = (HERE / "testdata/vendor.v2.img").read_bytes()
    assert apply_patch(source, incremental.read(parts["vendor"].entry)) == target


def test_full_package_ships_everything_whole() -> None:
    with open_package(str(HERE / "fixture_full.zip")) as pkg:
        pkg.verify_all()
        assert pkg.manifest.type == pb.OtaManifest.FULL
        assert sorted(pkg.payload) == ["boot.img", "odm.img", "payload.bin", "vendor.img"]
        written = [path for path, op in _ops(pkg.manifest).items() if op.op == Op.WRITE]
        assert written == ["bin/tool", "etc/data.gz", "etc/new.txt", "etc/same.txt", "etc/twin.txt"]
        assert not pkg.manifest.unchanged
        assert _data(pkg, "etc/twin.txt") == (HERE / "testdata/twin.txt").read_bytes()
