"""ota_boot_image(src = ..., normalize_src = True) built by Bazel (tests/bootimg/BUILD) and used as the
target of an incremental package whose source is a prebuilt image devices hold as it is."""

from __future__ import annotations

import dataclasses
import gzip
import pathlib

import pytest

from ota.format import bootimg, deflate, gzipper
from ota.format.package_reader import open_package
from ota.format.patch import apply_patch
from ota.proto import ota_manifest_pb2 as pb

HERE = pathlib.Path(__file__).absolute().parent  # not resolve(): stay inside Bazel runfiles


def _image(name: str) -> bytes:
    return (HERE / name).read_bytes()


@pytest.fixture(scope="module")
def incremental():
    with open_package(str(HERE / "prebuilt_incremental.zip")) as pkg:
        pkg.verify_all()
        yield pkg


def test_normalized_image_keeps_header_and_contents() -> None:
    prebuilt = bootimg.parse(_image("prebuilt_v2.img"), "prebuilt_v2.img")
    normalized = bootimg.parse(_image("prebuilt_v2_boot_normalized.img"), "normalized")
    for name in ("kernel", "ramdisk"):
        original, new = getattr(prebuilt.image, name), getattr(normalized.image, name)
        assert original != new, f"{name}: GNU gzip's stream must have been recompressed"
        assert gzip.decompress(new) == gzip.decompress(original)
        member = deflate.read_gzip_member(new, 0, 1 << 30)
        raw = new[member.deflate_start : member.footer_start]
        assert gzipper.reproducing_level(member.inflated, raw) is not None
    kept = {name: getattr(prebuilt.image, name) for name in ("kernel", "ramdisk")}
    assert dataclasses.replace(normalized.image, **kept) == prebuilt.image
    assert normalized.image.kernel_addr == 0x80008000 and normalized.image.header_version == 2
    assert normalized.id_matches is True


def test_boot_patch_is_small_and_applies_to_the_prebuilt_source(incremental) -> None:
    (boot,) = incremental.manifest.partitions
    assert boot.name == "boot" and boot.method == pb.IMGDIFF
    source, target = _image("prebuilt_v1.img"), _image("prebuilt_v2_boot_normalized.img")
    patch = incremental.read(boot.entry)
    assert len(patch) < 0.30 * len(target), f"boot patch {len(patch)} bytes for a {len(target)}-byte image"
    assert apply_patch(source, patch, where="boot.img") == target
