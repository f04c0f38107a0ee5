"""Normalizing prebuilt boot images (py/ota/actions/boot_normalize.py, `ota_bootimg normalize`).

Images are generated: header v0-v4 with random header values, kernels gzip'd by GNU gzip at every
level (with and without a name and time stamp), by zlib at settings imgdiff does not reproduce,
lz4'd or raw, and ramdisks of generated trees. Each is normalized and checked against what it
must keep (header values, inflated bytes as GNU gzip and Debian's unpack_bootimg read them) and
what it must gain (members imgdiff reproduces, small patches against a non-normalized source).
"""

from __future__ import annotations

import dataclasses
import random
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bootimg_helpers import run_bootimg
from ota.actions import boot_normalize, imgdiff
from ota.errors import OtaError
from ota.format import bootimg, cpio, deflate, gzipper, imgpatch
from tests.environment import require, tools_missing

UNPACK_BOOTIMG = "/usr/bin/unpack_bootimg"
GNU_GZIP = "/usr/bin/gzip"
LZ4 = "/usr/bin/lz4"
require(tools_missing(GNU_GZIP, LZ4, package="gzip and lz4"))


# --- generated inputs ---------------------------------------------------------------------------


def kernel_payload(seed: int, size: int) -> bytes:
    """Kernel-like bytes: code-like runs drawn from a vocabulary of instruction words, strings and
    a few random tables, compressing about 3:1 as a real Image does."""
    rng = random.Random(seed)
    words = [rng.randbytes(4) for _ in range(600)]
    strings = [
        b"%s_%s\0" % (rng.choice([b"sys", b"dev", b"kmem", b"irq", b"sched"]), rng.randbytes(3).hex().encode())
        for _ in range(300)
    ]
    out = bytearray()
    while len(out) < size:
        kind = rng.random()
        if kind < 0.75:
            out += b"".join(rng.choice(words) for _ in range(rng.randint(8, 64)))
        elif kind < 0.95:
            out += b"".join(rng.choice(strings) for _ in range(rng.randint(2, 12)))
        else:
            out += rng.randbytes(rng.randint(16, 256))
    return bytes(out[:size])


def edited(data: bytes, seed: int) -> bytes:
    """`data` as the next kernel version: a relocated word in about every other KB (addresses
    that moved) and a few inserted runs (new code)."""
    rng = random.Random(seed)
    out = bytearray(data)
    for block in range(0, len(out) - 1024, 1024):
        if rng.random() < 0.5:
            at = block + rng.randrange(1020)
            out[at : at + 4] = rng.randbytes(4)
    for _ in range(6):
        at = rng.randrange(len(out))
        out[at:at] = rng.randbytes(rng.randint(1, 400))
    return bytes(out)


def ramdisk_tree(seed: int) -> bytes:
    """A newc cpio of a generated ramdisk tree: init, rc files, a few binaries and symlinks."""
    rng = random.Random(seed)
    entries = [cpio.Entry(d, cpio.Kind.DIR, 0o755) for d in ("dev", "etc", "proc", "sbin", "system")]
    entries.append(cpio.Entry("init", cpio.Kind.FILE, 0o750, data=kernel_payload(seed, rng.randint(20000, 60000))))
    for index in range(rng.randint(3, 12)):
        lines = [b"on boot-%d\n    start svc%d\n" % (index, rng.randrange(100)) for _ in range(rng.randint(5, 60))]
        entries.append(cpio.Entry(f"etc/init{index}.rc", cpio.Kind.FILE, 0o644, data=b"".join(lines)))
    entries.append(cpio.Entry("sbin/ueventd", cpio.Kind.SYMLINK, 0o777, data=b"../init"))
    return cpio.write(entries)


def gnu_gzip(data: bytes, level: int, *, named: bool, tmp: Path) -> bytes:
    """GNU gzip at `level`; `named` stores the file name and time stamp (FLG.FNAME, MTIME set) as
    `gzip file` does, otherwise `-n` as kernel builds do."""
    if not named:
        return subprocess.run([GNU_GZIP, f"-{level}", "-n", "-c"], input=data, capture_output=True, check=True).stdout
    source = tmp / "Image"
    source.write_bytes(data)
    return subprocess.run([GNU_GZIP, f"-{level}", "-c", str(source)], capture_output=True, check=True).stdout


def zlib_gzip(data: bytes, level: int, mem_level: int, mtime: int) -> bytes:
    """One gzip member made by zlib at any setting, with MTIME `mtime` (not what imgdiff reproduces
    unless level 6/9, memLevel 8 and MTIME 0)."""
    body = deflate.deflate(data, level, mem_level)
    head = struct.pack("<3sBIBB", deflate.GZIP_MAGIC, 0, mtime, 0, 3)
    return head + body + struct.pack("<II", zlib.crc32(data), len(data))


def lz4_legacy(data: bytes) -> bytes:
    """lz4's legacy frame, the format a kernel's Image.lz4 uses."""
    return subprocess.run([LZ4, "-l", "-9", "-c"], input=data, capture_output=True, check=True).stdout


COMPRESSORS = ("gnu", "gnu-named", "zlib-other", "zlib-mtime", "lz4", "raw", "gnu+dtb", "gnu-2-members")


def compressed(kind: str, data: bytes, rng: random.Random, tmp: Path) -> bytes:
    """`data` compressed the way `kind` says (see COMPRESSORS)."""
    level = rng.randint(1, 9)
    if kind == "gnu":
        return gnu_gzip(data, level, named=False, tmp=tmp)
    if kind == "gnu-named":
        return gnu_gzip(data, level, named=True, tmp=tmp)
    if kind == "zlib-other":
        return zlib_gzip(data, rng.choice([1, 2, 3, 4, 5, 7, 8]), rng.randint(1, 9), 0)
    if kind == "zlib-mtime":
        return zlib_gzip(data, rng.choice([6, 9]), 8, rng.randint(1, 2**32 - 1))
    if kind == "lz4":
        return lz4_legacy(data)
    if kind == "gnu+dtb":  # Image.gz-dtb: device trees appended after the gzip member
        return gnu_gzip(data, level, named=False, tmp=tmp) + b"\xd0\x0d\xfe\xed" + rng.randbytes(3000)
    if kind == "gnu-2-members":  # concatenated ramdisks
        half = len(data) // 2
        return gnu_gzip(data[:half], level, named=False, tmp=tmp) + gnu_gzip(data[half:], 9, named=False, tmp=tmp)
    return data


def boot_image(version: int, kernel: bytes, ramdisk: bytes, rng: random.Random) -> bootimg.BootImage:
    """A boot image of `version` with random header values and the given sections."""
    fields: dict[str, object] = {
        "cmdline": b"console=ttyS0 androidboot.slot=%d " % rng.randrange(2) + b"x" * rng.randrange(400),
        "os_version": bootimg.encode_os_version(
            f"{rng.randint(10, 15)}.0.{rng.randrange(3)}", f"2025-{rng.randint(1, 12):02d}"
        ),
    }
    parts = {"kernel": kernel, "ramdisk": ramdisk}
    if version < 3:
        fields.update(
            bootimg.addresses(
                version,
                has_ramdisk=True,
                has_second=version == 0,
                base=rng.choice([0x10000000, 0x80000000, 0x40078000]),
                kernel_offset=rng.choice([0x8000, 0x80000]),
            )
        )
        fields.update(
            page_size=rng.choice(bootimg.PAGE_SIZES),
            board=b"board%d" % rng.randrange(100),
            extra_cmdline=b"quiet" * rng.randrange(3),
        )
        if version == 0:
            parts["second"] = rng.randbytes(rng.randint(1, 5000))
        if version >= 1:
            parts["recovery_dtbo"] = rng.randbytes(rng.randint(1, 3000))
        if version == 2:
            parts["dtb"] = rng.randbytes(rng.randint(1, 9000))
    if version == 3 and rng.random() < 0.5:
        fields["header_size"] = 1596  # what Debian's mkbootimg writes: kept as found
    return bootimg.BootImage(header_version=version, **parts, **fields)


# --- what a normalized image must be ------------------------------------------------------------


def gnu_inflated(section: bytes) -> bytes:
    """GNU gzip's reading of a gzip section (all members, trailing bytes ignored with a warning)."""
    done = subprocess.run([GNU_GZIP, "-dc"], input=section, capture_output=True, check=False)
    assert done.returncode in (0, 2), done.stderr  # 2: "trailing garbage ignored" (an appended DTB)
    return done.stdout


def assert_imgdiff_reproduces_every_member(section: bytes) -> None:
    """Each leading member has FLG 0, MTIME 0 and a deflate stream zlib re-creates at level 6 or 9."""
    pos = 0
    while section.startswith(deflate.GZIP_MAGIC, pos):
        member = deflate.read_gzip_member(section, pos, 1 << 30)
        assert member is not None
        assert section[pos + 3 : pos + 8] == bytes(5), "FLG and MTIME must be 0"
        raw = section[member.deflate_start : member.footer_start]
        assert gzipper.reproducing_level(member.inflated, raw) in gzipper.IMGDIFF_LEVELS
        pos = member.end


def assert_normalized(original: bytes, normalized: bytes) -> None:
    """Same header values, same inflated sections, other sections byte-identical, every gzip
    member reproducible, a v0-v2 id that matches, idempotent."""
    before, after = bootimg.parse(original, "original"), bootimg.parse(normalized, "normalized")
    for name in boot_normalize.NORMALIZED_SECTIONS:
        old, new = getattr(before.image, name), getattr(after.image, name)
        if old.startswith(deflate.GZIP_MAGIC):
            assert gnu_inflated(new) == gnu_inflated(old), name
            assert boot_normalize.inflated_contents(new, name) == boot_normalize.inflated_contents(old, name)
            assert_imgdiff_reproduces_every_member(new)
        else:
            assert new == old, f"{name}: not gzip, must pass through unchanged"
    same_sections = {name: getattr(before.image, name) for name in boot_normalize.NORMALIZED_SECTIONS}
    assert dataclasses.replace(after.image, **same_sections) == before.image
    assert after.trailing == before.trailing
    assert after.id_matches in (True, None)
    assert boot_normalize.normalize_image(normalized, "again")[0] == normalized


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    version=st.integers(0, 4),
    kernel_kind=st.sampled_from(COMPRESSORS),
    ramdisk_kind=st.sampled_from(("gnu", "gnu-named", "zlib-other", "zlib-mtime", "raw", "gnu-2-members")),
    seed=st.integers(0, 2**32 - 1),
)
@example(version=0, kernel_kind="gnu", ramdisk_kind="gnu", seed=336)  # a GNU gzip stream zlib makes too
def test_normalize_keeps_header_and_contents(
    tmp_path: Path, version: int, kernel_kind: str, ramdisk_kind: str, seed: int
) -> None:
    rng = random.Random(seed)
    payload = kernel_payload(seed, rng.randint(30000, 200000))
    kernel = compressed(kernel_kind, payload, rng, tmp_path)
    ramdisk = compressed(ramdisk_kind, ramdisk_tree(seed), rng, tmp_path)
    original = bootimg.build(boot_image(version, kernel, ramdisk, rng))
    if rng.random() < 0.3:
        original += bytes(rng.randrange(1, 9000))  # zero padding to a partition size: kept
    normalized, reports = boot_normalize.normalize_image(original, "boot.img")
    assert_normalized(original, normalized)
    assert [report.name for report in reports] == list(boot_normalize.NORMALIZED_SECTIONS)
    if kernel_kind in ("gnu", "gnu+dtb", "zlib-other"):
        # GNU gzip's stream is now and then zlib's to the byte (gzip -9 -n on one 31,658-byte
        # payload of seed 336); only such a stream is kept, every other one is recompressed.
        by_zlib = any(kernel.startswith(gzipper.compress(payload, level)) for level in gzipper.IMGDIFF_LEVELS)
        assert reports[0].members[0].action == ("kept" if by_zlib else "recompressed")
    if kernel_kind == "gnu+dtb":
        assert reports[0].tail_bytes == 3004
        assert bootimg.parse(normalized, "n").image.kernel.endswith(kernel[-3004:])


# --- Debian's tools read the result ---------------------------------------------------------------


def _unpack_bootimg_fields(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) if ": " in line else (line.rstrip(":"), "") for line in stdout.splitlines())


# Debian's unpack_bootimg predates v4 and reads a v4 header as v3 (kernel and ramdisk only).
@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("level", [1, 6, 9])
def test_debian_unpack_bootimg_reads_normalized_images(tmp_path: Path, version: int, level: int) -> None:
    require(tools_missing(UNPACK_BOOTIMG, package="mkbootimg"))
    rng = random.Random(version * 10 + level)
    kernel = gnu_gzip(kernel_payload(level, 150000), level, named=level == 6, tmp=tmp_path)
    ramdisk = gnu_gzip(ramdisk_tree(level), level, named=False, tmp=tmp_path)
    original = bootimg.build(boot_image(version, kernel, ramdisk, rng))
    image = tmp_path / "boot.img"
    image.write_bytes(original)
    normalized_path = tmp_path / "normalized.img"
    done = run_bootimg("normalize", image, "--output", normalized_path)
    assert done.returncode == 0, done.stderr
    normalized = normalized_path.read_bytes()
    assert normalized != original
    assert_normalized(original, normalized)
    fields = {}
    for name, path in (("original", image), ("normalized", normalized_path)):
        out = tmp_path / name
        listing = subprocess.run(
            [UNPACK_BOOTIMG, "--boot_img", str(path), "--out", str(out)], capture_output=True, text=True, check=True
        ).stdout
        fields[name] = _unpack_bootimg_fields(listing)
        assert gnu_inflated((out / "kernel").read_bytes()) == kernel_payload(level, 150000)
        assert gnu_inflated((out / "ramdisk").read_bytes()) == ramdisk_tree(level)
        for extra in ("second", "recovery_dtbo", "dtb"):
            if (tmp_path / "original" / extra).exists():
                assert (out / extra).read_bytes() == (tmp_path / "original" / extra).read_bytes()
    sizes = ("kernel_size", "ramdisk size")
    assert {k: v for k, v in fields["normalized"].items() if k not in sizes} == {
        k: v for k, v in fields["original"].items() if k not in sizes
    }
    assert fields["normalized"]["kernel_size"] == str(len(bootimg.parse(normalized, "n").image.kernel))


# --- the point of it: small patches against what devices hold -------------------------------------


@pytest.mark.parametrize(("version", "level"), [(0, 9), (2, 6), (3, 9), (4, 1)])
def test_normalized_target_patches_small_against_a_gnu_gzip_source(tmp_path: Path, version: int, level: int) -> None:
    """The source is a prebuilt image as devices hold it (GNU gzip, never normalized); only the
    target is normalized. Its imgdiff patch is small and imgpatch rebuilds it byte-exact."""
    rng = random.Random(version)
    source_kernel = kernel_payload(version, 600000)
    target_kernel = edited(source_kernel, version)
    source_ramdisk, target_ramdisk = ramdisk_tree(1), ramdisk_tree(1) + b"\0" * 512
    header = boot_image(version, b"", b"", rng)
    source = bootimg.build(
        dataclasses.replace(
            header,
            kernel=gnu_gzip(source_kernel, level, named=False, tmp=tmp_path),
            ramdisk=gnu_gzip(source_ramdisk, 9, named=False, tmp=tmp_path),
        )
    )
    target = bootimg.build(
        dataclasses.replace(
            header,
            kernel=gnu_gzip(target_kernel, level, named=False, tmp=tmp_path),
            ramdisk=gnu_gzip(target_ramdisk, 9, named=False, tmp=tmp_path),
        )
    )
    normalized, _ = boot_normalize.normalize_image(target, "target.img")
    patch = imgdiff.make_image_patch(source, normalized)
    assert len(patch) < 0.30 * len(normalized), f"patch {len(patch)} of {len(normalized)} bytes"
    assert imgpatch.apply(source, patch) == normalized
    # Without normalization, unless some zlib setting happens to re-create GNU gzip's stream (it
    # can on generated data, never at AOSP's settings), the compressed bytes are patched: most of
    # the image ships.
    member = deflate.read_gzip_member(bootimg.parse(target, "target").image.kernel, 0, 1 << 30)
    raw = bootimg.parse(target, "target").image.kernel[member.deflate_start : member.footer_start]
    assert gzipper.reproducing_level(member.inflated, raw) is None
    if deflate.find_reproducing_params(member.inflated, raw) is None:
        assert len(imgdiff.make_image_patch(source, target)) > 0.5 * len(target)


# --- signed, damaged and wrong inputs -------------------------------------------------------------


def avb_footer(original_size: int, vbmeta_offset: int, vbmeta_size: int) -> bytes:
    """avbtool's 64-byte footer: magic, version 1.0, original size, vbmeta offset and size (big-endian)."""
    return struct.pack(">4sII3Q28x", b"AVBf", 1, 0, original_size, vbmeta_offset, vbmeta_size)


def _signed_variants(tmp_path: Path) -> dict[str, bytes]:
    rng = random.Random(7)
    kernel = gnu_gzip(kernel_payload(7, 50000), 9, named=False, tmp=tmp_path)
    ramdisk = gnu_gzip(ramdisk_tree(7), 9, named=False, tmp=tmp_path)
    plain = bootimg.build(boot_image(2, kernel, ramdisk, rng))
    vbmeta = b"AVB0" + rng.randbytes(1500)
    partition = 1 << 20
    body = plain + vbmeta
    avb = body + bytes(partition - len(body) - 64) + avb_footer(len(plain), len(plain), len(vbmeta))
    v4 = bootimg.build(dataclasses.replace(boot_image(4, kernel, ramdisk, rng), boot_signature=rng.randbytes(4096)))
    return {"avb": avb, "v4-signature": v4, "vb1-trailer": plain + b"\x30\x82\x05\x21" + rng.randbytes(1315)}


@pytest.mark.parametrize("variant", ["avb", "v4-signature", "vb1-trailer"])
def test_signed_image_is_refused_unless_the_signature_is_dropped(tmp_path: Path, variant: str) -> None:
    signed = _signed_variants(tmp_path)[variant]
    image, out = tmp_path / "signed.img", tmp_path / "out.img"
    image.write_bytes(signed)
    done = run_bootimg("normalize", image, "--output", out)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"ota_bootimg: error: {image}: ")
    assert "sign" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["signed.img"]  # no output, no temporary

    done = run_bootimg("normalize", image, "--output", out, "--drop_signature")
    assert done.returncode == 0, done.stderr
    parsed, result = bootimg.parse(signed, "signed"), bootimg.parse(out.read_bytes(), "out")
    assert result.trailing == b"" and result.image.boot_signature == b""
    unsigned = dataclasses.replace(parsed.image, boot_signature=b"")
    for name in boot_normalize.NORMALIZED_SECTIONS:
        assert gnu_inflated(getattr(result.image, name)) == gnu_inflated(getattr(parsed.image, name))
    same = {name: getattr(unsigned, name) for name in boot_normalize.NORMALIZED_SECTIONS}
    assert dataclasses.replace(result.image, **same) == unsigned


@settings(max_examples=60, deadline=None)
@given(truncate=st.booleans(), cut=st.integers(1, 40000), flip=st.integers(0, 40000), value=st.integers(0, 255))
def test_damaged_gzip_sections_are_one_line_errors(truncate: bool, cut: int, flip: int, value: int) -> None:
    kernel = zlib_gzip(kernel_payload(3, 60000), 1, 9, 0)
    damaged = bytearray(kernel)
    if truncate:
        del damaged[len(damaged) - 1 - cut % (len(damaged) - 11) :]
    if flip < len(damaged):
        damaged[flip] = value
    image = bootimg.build(bootimg.BootImage(kernel=bytes(damaged), ramdisk=gzipper.compress(b"ramdisk")))
    try:
        out, _ = boot_normalize.normalize_image(image, "boot.img")
    except OtaError as err:
        assert str(err).startswith("boot.img: kernel") and "\n" not in str(err)
        return
    assert_normalized(image, out)  # the change left a valid member (or a non-gzip kernel)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"VNDRBOOT" + bytes(2100), "vendor_boot"),
        (b"not a boot image at all", "magic"),
        (b"ANDROID!" + bytes(30), "truncated"),
    ],
)
def test_not_a_boot_image_is_a_one_line_error(tmp_path: Path, data: bytes, message: str) -> None:
    image, out = tmp_path / "x.img", tmp_path / "out.img"
    image.write_bytes(data)
    done = run_bootimg("normalize", image, "--output", out)
    assert done.returncode == 1 and message in done.stderr and done.stderr.count("\n") == 1
    assert not out.exists()


def test_cli_is_reproducible_and_matches_the_library(tmp_path: Path) -> None:
    rng = random.Random(11)
    kernel = gnu_gzip(kernel_payload(11, 300000), 9, named=True, tmp=tmp_path)
    image = tmp_path / "boot.img"
    image.write_bytes(
        bootimg.build(boot_image(2, kernel, gnu_gzip(ramdisk_tree(11), 6, named=False, tmp=tmp_path), rng))
    )
    outputs = []
    for run in range(2):
        out = tmp_path / f"run{run}.img"
        done = run_bootimg("normalize", image, "--output", out)
        assert done.returncode == 0, done.stderr
        assert "kernel: 1 gzip member(s): recompressed" in done.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == boot_normalize.normalize_image(image.read_bytes(), "x")[0]
