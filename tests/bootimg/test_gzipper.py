"""gzipper: our gzip is one imgdiff re-creates; normalize fixes GNU gzip files and is idempotent."""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootimg_helpers import blob, mutate, run_bootimg
from ota.errors import OtaError
from ota.format import bootimg, cpio, deflate, gzipper

# Text-like, compressible, and long enough for GNU gzip and zlib to choose different matches.
TEXT = b"".join(b"line %d: the quick brown fox %x jumps\n" % (i, i * 7919) for i in range(40000))


def _gnu_gzip(data: bytes, *flags: str) -> bytes:
    return subprocess.run(["gzip", *flags], input=data, capture_output=True, check=True).stdout


def _imgdiff_reproduces(member: bytes) -> bool:
    """imgdiff's test, written out with zlib: FLG 0, then level 6 or 9 re-deflates the stream."""
    if member[:4] != b"\x1f\x8b\x08\x00":
        return False
    inflater = zlib.decompressobj(-15)
    inflated = inflater.decompress(member[10:])
    deflate = member[10 : len(member) - len(inflater.unused_data)]
    for level in (6, 9):
        comp = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
        if comp.compress(inflated) + comp.flush() == deflate:
            return True
    return False


def test_compress_is_reproducible_standard_gzip() -> None:
    out = gzipper.compress(TEXT)
    assert out == gzipper.compress(bytes(TEXT))
    assert out[:10] == bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 2, 3])
    assert _gnu_gzip(out, "-dc") == TEXT
    assert struct.unpack("<II", out[-8:]) == (zlib.crc32(TEXT), len(TEXT))
    assert gzipper.compress(TEXT, 6)[8] == 0
    with pytest.raises(OtaError, match="level 1 is not one imgdiff reproduces"):
        gzipper.compress(TEXT, 1)


def test_ramdisk_in_boot_image_is_a_reproducible_deflate_chunk() -> None:
    entries = [cpio.Entry("etc", cpio.Kind.DIR, 0o755)]
    entries += [cpio.Entry(f"etc/f{i}", cpio.Kind.FILE, 0o644, data=TEXT[i * 997 : i * 997 + 3000]) for i in range(200)]
    ramdisk = gzipper.compress(cpio.write(entries))
    image = bootimg.build(bootimg.BootImage(kernel=blob(1, 9000), ramdisk=ramdisk))
    start = image.index(b"\x1f\x8b\x08\x00")  # the scan imgdiff does (docs/formats.md#generating-imgdiff2-imgdiff)
    assert start == 2048 + 10240
    assert _imgdiff_reproduces(image[start : start + len(ramdisk)])


def test_gnu_gzip_is_not_reproducible_and_normalize_fixes_it() -> None:
    gnu = _gnu_gzip(TEXT, "-9n")
    assert not _imgdiff_reproduces(gnu)
    out, report = gzipper.normalize(gnu, "Image.gz")
    assert (report.action, report.level, report.inflated_size) == ("recompressed", 9, len(TEXT))
    assert (report.input_size, report.output_size) == (len(gnu), len(out))
    assert zlib.decompress(out, 31) == TEXT
    assert _imgdiff_reproduces(out)
    assert out == gzipper.compress(TEXT)
    assert report.line().startswith(f"recompressed: level 9, {len(gnu)} -> {len(out)} bytes")


@pytest.mark.parametrize("level", [6, 9])
def test_normalize_leaves_zlib_streams_alone(level: int) -> None:
    ours = gzipper.compress(TEXT, level)
    out, report = gzipper.normalize(ours, "ramdisk.gz")
    assert out is ours
    assert (report.action, report.level) == ("kept", level)
    again, second = gzipper.normalize(gzipper.normalize(_gnu_gzip(TEXT, "-9n"), "x")[0], "x")
    assert second.action == "kept" and again == gzipper.compress(TEXT)


def test_normalize_rewrites_only_the_header_when_the_deflate_is_ours() -> None:
    body = deflate.deflate(TEXT, 9)
    named = (
        b"\x1f\x8b\x08\x08\x01\x02\x03\x04\x02\x03ramdisk.cpio\0"
        + body
        + struct.pack("<II", zlib.crc32(TEXT), len(TEXT))
    )
    out, report = gzipper.normalize(named, "ramdisk.gz")
    assert (report.action, report.level) == ("reheadered", 9)
    assert out == gzipper.compress(TEXT, 9)


def test_normalize_passes_non_gzip_through() -> None:
    raw = blob(3, 1000).replace(b"\x1f\x8b", b"xx")
    out, report = gzipper.normalize(raw, "Image")
    assert out is raw and report.action == "not-gzip"


GOOD = gzipper.compress(TEXT)
SMALL = _gnu_gzip(TEXT[:2000], "-9n")


@pytest.mark.parametrize(
    "data,limit,message",
    [
        (GOOD[:9], None, "gzip header: reserved FLG bits, truncated optional fields"),
        (GOOD[:4000], None, "gzip data: not one complete deflate stream inflating to at most 2147483648 bytes"),
        (GOOD[:-3], None, "gzip trailer: truncated (CRC32/ISIZE missing)"),
        (GOOD[:-8] + b"\0\0\0\0" + GOOD[-4:], None, f"gzip CRC32: stored 00000000, data has {zlib.crc32(TEXT):08x}"),
        (GOOD[:-4] + b"\1\0\0\0", None, f"gzip ISIZE: stored 1, data inflates to {len(TEXT)} bytes"),
        (GOOD + GOOD, None, f"gzip: {len(GOOD)} bytes after the first member (one member expected)"),
        (GOOD[:2] + b"\x07" + GOOD[3:], None, "gzip magic: expected 1f8b08 (deflate), found 1f8b07"),
        (GOOD[:3] + b"\xe0" + GOOD[4:], None, "gzip header: reserved FLG bits, truncated optional fields"),
        (
            GOOD[:3] + b"\x08" + GOOD[4:10] + b"noterminator",
            None,
            "gzip header: reserved FLG bits, truncated optional fields",
        ),
        (GOOD[:10] + b"\xff\xff" + GOOD[12:], None, "gzip data: not one complete deflate stream"),
        (
            gzipper.compress(bytes(50 << 20)),
            1 << 20,
            "gzip data: not one complete deflate stream inflating to at most 1048576 bytes",
        ),
    ],
)
def test_bad_gzip_is_one_clean_error(data: bytes, limit: int | None, message: str) -> None:
    with pytest.raises(OtaError) as err:
        gzipper.normalize(data, "Image.gz", **({"limit": limit} if limit else {}))
    assert str(err.value).startswith(f"Image.gz: {message}")


def test_cli_build_normalizes_a_gnu_gzip_kernel(tmp_path: Path) -> None:
    kernel = tmp_path / "Image.gz"
    kernel.write_bytes(_gnu_gzip(TEXT, "-9n"))
    done = run_bootimg("build", "--kernel", kernel, "--normalize_gzip", "--output", tmp_path / "boot.img")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"ota_bootimg: {kernel}: recompressed: level 9,")
    parsed = bootimg.parse((tmp_path / "boot.img").read_bytes(), "boot.img")
    assert parsed.image.kernel == gzipper.compress(TEXT)


def test_cli_ramdisk_packs_a_tree_reproducibly(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sbin").mkdir(parents=True)
    (root / "init.rc").write_text("on boot\n")
    (root / "sbin" / "adbd").write_bytes(blob(5, 3000))
    (root / "sbin" / "adbd").chmod(0o755)
    outputs = []
    for name in ("a.gz", "b.gz"):
        done = run_bootimg("ramdisk", "--root", root, "--uid", "0", "--gid", "2000", "--output", tmp_path / name)
        assert done.returncode == 0, done.stderr
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]
    entries = cpio.read(zlib.decompress(outputs[0], 31), "ramdisk")
    assert [(e.path, e.mode, e.gid) for e in entries] == [
        ("init.rc", 0o644, 2000),
        ("sbin", 0o755, 2000),
        ("sbin/adbd", 0o755, 2000),
    ]
    assert _imgdiff_reproduces(outputs[0])


def test_streams_spanning_many_reads_keep_exact_boundaries() -> None:
    noisy = blob(7, 3 << 20)  # incompressible: 3 MiB of deflate input, read in 1 MiB pieces
    out, report = gzipper.normalize(_gnu_gzip(noisy, "-9n"), "big.gz")
    assert report.action == "recompressed" and zlib.decompress(out, 31) == noisy
    assert gzipper.normalize(out, "big.gz")[1].action == "kept"
    with pytest.raises(OtaError, match=r"big\.gz: gzip: 1 bytes after the first member"):
        gzipper.normalize(out + b"\0", "big.gz")


@settings(max_examples=300, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 299), st.integers(0, 255)), max_size=6), cut=st.integers(0, 300))
def test_normalize_only_raises_ota_error(edits: list[tuple[int, int]], cut: int) -> None:
    data = mutate(SMALL, edits, cut)
    try:
        out, _ = gzipper.normalize(data, "fuzz.gz", limit=1 << 16)
    except OtaError:
        return
    assert len(out) < 1 << 17
