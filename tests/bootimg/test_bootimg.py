"""Boot image build/parse: layouts of v0-v4, round trips, the id, and every kind of bad header."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootimg_helpers import blob, mutate, run_bootimg, sample_image
from ota.errors import OtaError
from ota.format import bootimg

SECTION_ORDER = ("kernel", "ramdisk", "second", "recovery_dtbo", "dtb", "boot_signature")


def _expected_size(img: bootimg.BootImage) -> int:
    page = img.page
    return page + sum(-(-len(getattr(img, name)) // page) * page for name in SECTION_ORDER)


CASES = [(v, page, optional) for v in (0, 1, 2) for page in bootimg.PAGE_SIZES for optional in (True, False)]
CASES += [(v, None, optional) for v in (3, 4) for optional in (True, False)]


@pytest.mark.parametrize("version,page,optional", CASES)
def test_round_trip(version: int, page: int | None, optional: bool) -> None:
    img = sample_image(version, page_size=page, optional=optional)
    data = bootimg.build(img)
    assert len(data) == _expected_size(img)
    parsed = bootimg.parse(data, "boot.img")
    assert parsed.image == img
    assert parsed.trailing == b""
    assert bootimg.build(parsed.image) == data
    for section in parsed.sections:
        assert section.offset % img.page == 0
        assert data[section.offset : section.offset + section.size] == getattr(img, section.name)
    assert [s.name for s in parsed.sections] == [n for n in SECTION_ORDER if getattr(img, n)]


def test_v0_header_fields_sit_at_spec_offsets() -> None:
    img = sample_image(0)
    data = bootimg.build(img)
    assert data[:8] == b"ANDROID!"
    sizes = struct.unpack_from("<10I", data, 8)
    assert sizes == (5001, 0x10008000, 4096, 0x11000000, 17, 0x10F00000, 0x10000100, 2048, 0, img.os_version)
    assert data[48:64] == b"otaboard".ljust(16, b"\0")
    assert data[64:576] == img.cmdline.ljust(512, b"\0")
    manual = hashlib.sha1(
        img.kernel
        + struct.pack("<I", 5001)
        + img.ramdisk
        + struct.pack("<I", 4096)
        + img.second
        + struct.pack("<I", 17)
    ).digest()
    assert data[576:608] == manual + bytes(12)
    assert data[608:1632] == b"quiet".ljust(1024, b"\0")
    assert data[1632:2048] == bytes(416)


def test_v2_tail_fields_and_id_cover_dtbo_and_dtb() -> None:
    img = sample_image(2, page_size=4096)
    data = bootimg.build(img)
    dtbo_size, dtbo_offset, header_size, dtb_size, dtb_addr = struct.unpack_from("<IQIIQ", data, 1632)
    # header page + kernel (2 pages) + ramdisk (1) + second (1) = 5 pages of 4096
    assert (dtbo_size, dtbo_offset, header_size, dtb_size, dtb_addr) == (3000, 5 * 4096, 1660, 2049, 0x11F00000)
    assert data[dtbo_offset : dtbo_offset + 3000] == img.recovery_dtbo
    manual = hashlib.sha1()
    for part in (img.kernel, img.ramdisk, img.second, img.recovery_dtbo, img.dtb):
        manual.update(part + struct.pack("<I", len(part)))
    assert data[576:596] == manual.digest()


def test_v4_header_layout() -> None:
    img = sample_image(4)
    data = bootimg.build(img)
    kernel, ramdisk, os_version, header_size = struct.unpack_from("<4I", data, 8)
    assert (kernel, ramdisk, os_version, header_size) == (5001, 4096, img.os_version, 1584)
    assert data[24:40] == bytes(16)
    assert struct.unpack_from("<I", data, 40) == (4,)
    assert data[44:1580].rstrip(b"\0") == img.cmdline
    assert struct.unpack_from("<I", data, 1580) == (4096,)
    # header page, kernel 2 pages, ramdisk 1 page, then the signature
    assert data[4 * 4096 : 5 * 4096] == img.boot_signature


def test_absent_sections_get_zero_addresses_like_mkbootimg() -> None:
    fields = bootimg.addresses(0, has_ramdisk=False, has_second=False)
    assert fields == {"kernel_addr": 0x10008000, "ramdisk_addr": 0, "second_addr": 0, "tags_addr": 0x10000100}
    assert "dtb_addr" in bootimg.addresses(2, has_ramdisk=True, has_second=False)
    assert bootimg.addresses(3, has_ramdisk=True, has_second=False) == {}


def test_trailing_bytes_are_kept_apart() -> None:
    data = bootimg.build(sample_image(0))
    trailer = blob(9, 1319)  # like AOSP's testdata boot.img (docs/formats.md#image-body-and-default-addresses)
    parsed = bootimg.parse(data + trailer, "boot.img")
    assert parsed.trailing == trailer
    assert bootimg.build(parsed.image) == data


def test_nonstandard_header_size_is_kept_for_identical_rebuild() -> None:
    img = sample_image(3)
    data = bytearray(bootimg.build(img))
    struct.pack_into("<I", data, 20, 1596)  # what Debian's mkbootimg 29 writes for v3
    parsed = bootimg.parse(bytes(data), "boot.img")
    assert parsed.image.header_size == 1596
    assert bootimg.build(parsed.image) == bytes(data)


def test_os_version_encoding() -> None:
    value = bootimg.encode_os_version("11.0.2", "2021-03")
    assert value == (11 << 25) | (0 << 18) | (2 << 11) | (21 << 4) | 3
    assert bootimg.decode_os_version(value) == ("11.0.2", "2021-03")
    assert bootimg.encode_os_version("12", "") == 12 << 25
    assert bootimg.encode_os_version("", "2024-12-05") == (24 << 4) | 12
    with pytest.raises(OtaError, match=r"^os_version: '128.0' is not"):
        bootimg.encode_os_version("128.0")
    with pytest.raises(OtaError, match=r"^os_patch_level: '2021-13' is not"):
        bootimg.encode_os_version("", "2021-13")


def test_cmdline_split_keeps_both_fields_nul_terminated() -> None:
    long = bytes(range(65, 91)) * 40  # 1040 bytes
    first, extra = bootimg.split_cmdline(long)
    assert (first, extra) == (long[:511], long[511:])
    data = bootimg.build(bootimg.BootImage(kernel=b"k", cmdline=first, extra_cmdline=extra))
    assert data[64 + 511] == 0 and data[608:1632].rstrip(b"\0") == extra
    with pytest.raises(OtaError, match=r"^cmdline: 1535 bytes exceed the 1534 bytes a v0-v2 header holds$"):
        bootimg.split_cmdline(b"x" * 1535)


@pytest.mark.parametrize(
    "img,message",
    [
        (bootimg.BootImage(header_version=5), "header_version: unsupported value 5 (supported: 0-4)"),
        (bootimg.BootImage(header_version=3, second=b"s"), "second: a v3 boot image has no such field"),
        (bootimg.BootImage(header_version=0, dtb=b"d"), "dtb: a v0 boot image has no such field"),
        (bootimg.BootImage(header_version=3, board=b"b"), "board: a v3 boot image has no such field"),
        (bootimg.BootImage(page_size=1024), "page_size: 1024 is not one of 2048, 4096, 8192, 16384"),
        (bootimg.BootImage(header_version=4, page_size=2048), "page_size: v4 images always use 4096, not 2048"),
        (bootimg.BootImage(cmdline=b"x" * 513), "cmdline: 513 bytes do not fit the 512-byte field"),
        (bootimg.BootImage(board=b"b\0"), "board: contains a NUL byte"),
        (bootimg.BootImage(kernel_addr=1 << 32), "kernel_addr: 0x100000000 does not fit 32 bits"),
        (bootimg.BootImage(header_version=1, header_size=1000), "header_size: 1000 is outside 1648..2048"),
    ],
)
def test_build_rejects_fields_the_version_cannot_hold(img: bootimg.BootImage, message: str) -> None:
    with pytest.raises(OtaError) as err:
        bootimg.build(img, where="out.img")
    assert str(err.value).startswith(f"out.img: {message}")


def _patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


V0 = bootimg.build(sample_image(0))
V1 = bootimg.build(sample_image(1))
V4 = bootimg.build(sample_image(4))
BAD_IMAGES = {
    "kernel_size": (
        _patched(V0, 8, "<I", 0xFFFFFFF0),
        f"kernel_size: 4294967280 bytes at offset 2048 run past the end of the file ({len(V0)} bytes)",
    ),
    "ramdisk_size": (
        _patched(V0, 16, "<I", len(V0)),
        f"ramdisk_size: {len(V0)} bytes at offset 8192 run past the end of the file ({len(V0)} bytes)",
    ),
    "signature_size": (
        _patched(V4, 1580, "<I", 8192),
        f"signature_size: 8192 bytes at offset 16384 run past the end of the file ({len(V4)} bytes)",
    ),
    "magic": (b"ANDROIX!" + V0[8:], "magic: expected 'ANDROID!', found b'ANDROIX!'"),
    "vendor": (b"VNDRBOOT" + V0[8:], "magic: this is a vendor_boot image (VNDRBOOT), not a boot image"),
    "version": (_patched(V0, 40, "<I", 7), "header_version: unsupported value 7 (supported: 0-4)"),
    "page_size": (_patched(V0, 36, "<I", 3000), "page_size: 3000 is not one of 2048, 4096, 8192, 16384"),
    "page_zero": (_patched(V0, 36, "<I", 0), "page_size: 0 is not one of 2048, 4096, 8192, 16384"),
    "truncated": (V0[:1000], "header: truncated, 1000 bytes but a v0 header is 1632"),
    "truncated_v1": (V1[:1640], "header: truncated, 1640 bytes but a v1 header is 1648"),
    "truncated_early": (V0[:20], "header: truncated, 20 bytes end before header_version (offset 40)"),
    "truncated_magic": (V0[:5], "header: truncated, 5 bytes (the magic alone is 8)"),
    "header_size": (_patched(V1, 1644, "<I", 1600), "header_size: 1600 is outside 1648..2048 for a v1 header"),
    "dtbo_offset": (_patched(V1, 1636, "<Q", 4096), "recovery_dtbo_offset: 4096 but the layout puts it at 14336"),
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_parse_rejects_bad_header(name: str) -> None:
    data, message = BAD_IMAGES[name]
    with pytest.raises(OtaError) as err:
        bootimg.parse(data, "boot.img")
    assert str(err.value) == f"boot.img: {message}"


@pytest.mark.parametrize("name", ["kernel_size", "magic", "version", "page_size", "truncated"])
def test_cli_reports_bad_header_in_one_line(tmp_path, name: str) -> None:
    data, message = BAD_IMAGES[name]
    path = tmp_path / "boot.img"
    path.write_bytes(data)
    for command in (["info", path], ["unpack", path, "--out", tmp_path / "out"]):
        done = run_bootimg(*command)
        assert done.returncode == 1
        assert done.stderr == f"ota_bootimg: error: {path}: {message}\n"
        assert done.stdout == ""


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from([V0, V1, bootimg.build(sample_image(2)), bootimg.build(sample_image(3)), V4]),
    edits=st.lists(st.tuples(st.integers(0, 1700), st.integers(0, 255)), max_size=8),
    cut=st.integers(0, 40000),
)
def test_parse_of_mutated_headers_only_raises_ota_error(base: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    data = mutate(base, edits, cut)
    try:
        parsed = bootimg.parse(data, "fuzz.img")
    except OtaError:
        return
    for section in parsed.sections:
        assert section.offset + section.size <= len(data)
