"""No reader allocates what an untrusted size field declares: every case runs the real command
line under a 256 MiB address-space limit (prlimit --as), far below the declared sizes, and must
end with the expected one-line error (a MemoryError would print a traceback instead).

Readers covered: the BSDIFF40 header's new size and control lengths, IMGDIFF2 chunk counts, RAW
lengths and deflate expanded lengths, boot image section sizes, cpio entry sizes, and zip sizes
read by `imgdiff -z`. The diffing side (make_bsdiff.peak_estimate) must fail in one line too.
"""

from __future__ import annotations

import io
import random
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from engine_helpers import bsdiff40, run_tool
from ota.actions import make_bsdiff
from ota.format import bootimg, bsdiff, cpio, deflate, imgdiff_format
from ota.format.imgdiff_format import DeflateChunk

LIMIT = 256 << 20
HUGE = (1 << 31) - 1  # the largest size the default limits let through to the readers

PAYLOAD = random.Random(7).randbytes(512 << 10)
STREAM = deflate.deflate(PAYLOAD, 6)  # stored blocks: a 1032x claim on it is ~540 MB
SOURCE = b"S" * 100 + STREAM


def _deflate_chunk(**changes: int) -> DeflateChunk:
    fields = {
        "src_start": 100,
        "src_len": len(STREAM),
        "src_expanded_len": len(PAYLOAD),
        "tgt_expanded_len": len(PAYLOAD),
        "level": 6,
        **changes,
    }
    return DeflateChunk(**fields)


PATCHES = {
    "bsdiff new size 2^62": (
        bsdiff.MAGIC + bytes(16) + bsdiff.encode_offset(1 << 62),
        "BSDIFF40 new size 4611686018427387904 exceeds the limit 2147483648",
    ),
    "bsdiff extra length 2^31-1": (
        bsdiff40([(0, HUGE, 0)], b"", b"z" * 10, HUGE),
        f"BSDIFF40 extra block holds 10 bytes, control tuples need {HUGE}",
    ),
    "bsdiff diff length 2^31-1": (
        bsdiff40([(HUGE, 0, 0)], b"y" * 10, b"", HUGE),
        f"BSDIFF40 diff block holds 10 bytes, control tuples need {HUGE}",
    ),
    "imgdiff chunk count 2^31-1": (
        imgdiff_format.MAGIC + struct.pack("<i", HUGE) + bytes(100),
        f"IMGDIFF2 chunk count {HUGE} does not fit the 112-byte patch",
    ),
    "imgdiff RAW length 2^31-1": (
        imgdiff_format.MAGIC + struct.pack("<iii", 1, imgdiff_format.CHUNK_RAW, HUGE) + b"abc",
        f"chunk 0: RAW data_len {HUGE} runs past the end of the patch",
    ),
    "imgdiff src_expanded_len at the deflate bound": (
        imgdiff_format.pack([_deflate_chunk(src_expanded_len=1032 * len(STREAM) + 16)], [make_bsdiff.diff(b"", b"")]),
        f"chunk 0: deflate data inflates to {len(PAYLOAD)} bytes, src_expanded_len says {1032 * len(STREAM) + 16}",
    ),
    "imgdiff tgt_expanded_len 2^31-1": (
        imgdiff_format.pack([_deflate_chunk(tgt_expanded_len=HUGE)], [bsdiff40([(0, HUGE, 0)], b"", b"", HUGE)]),
        f"chunk 0: BSDIFF40 extra block holds 0 bytes, control tuples need {HUGE}",
    ),
}


@pytest.mark.parametrize("name", sorted(PATCHES))
def test_patch_sizes(tmp_path: Path, name: str) -> None:
    made, problem = PATCHES[name]
    (tmp_path / "src").write_bytes(SOURCE)
    (tmp_path / "p").write_bytes(made)
    done = run_tool("bspatch", tmp_path / "src", tmp_path / "out", tmp_path / "p", address_space=LIMIT)
    assert (done.returncode, done.stderr) == (1, f"bspatch: error: {tmp_path / 'p'}: {problem}\n")


def _with_u32(data: bytes, offset: int, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<I", out, offset, value)
    return bytes(out)


@pytest.mark.parametrize(
    "version,offset,field,at",
    [
        (0, 8, "kernel_size", 2048),
        (0, 16, "ramdisk_size", 2048 + 4096),
        (3, 12, "ramdisk_size", 4096 + 4096),
        (4, 1580, "signature_size", 3 * 4096),
    ],
)
def test_boot_image_section_sizes(tmp_path: Path, version: int, offset: int, field: str, at: int) -> None:
    image = bootimg.build(bootimg.BootImage(header_version=version, kernel=b"k" * 3000, ramdisk=b"r" * 100))
    path = tmp_path / "boot.img"
    path.write_bytes(_with_u32(image, offset, 0xFFFFFFFF))
    for command in (["info", path], ["unpack", path, "--out", tmp_path / "out"]):
        done = run_tool("bootimg", *command, address_space=LIMIT)
        assert (done.returncode, done.stderr) == (
            1,
            (
                f"ota_bootimg: error: {path}: {field}: 4294967295 bytes at offset {at} run past the end "
                f"of the file ({len(image)} bytes)\n"
            ),
        )


_READ_CPIO = """
import sys
from ota.format import cpio
from ota.errors import OtaError
try:
    cpio.read(open(sys.argv[1], "rb").read(), sys.argv[1])
except OtaError as err:
    sys.exit(f"cpio: error: {err}")
"""


@pytest.mark.parametrize(
    "field,index,problem",
    [
        ("filesize", 6, "cpio filesize at offset 0: 4294967295 bytes run past the end"),
        ("namesize", 11, "cpio namesize at offset 0: 4294967295 does not fit the archive"),
    ],
)
def test_cpio_entry_sizes(tmp_path: Path, field: str, index: int, problem: str) -> None:
    archive = bytearray(cpio.write([cpio.Entry("init", cpio.Kind.FILE, 0o755, data=b"#!/bin/sh\n")]))
    archive[6 + 8 * index : 14 + 8 * index] = b"FFFFFFFF"
    path = tmp_path / f"{field}.cpio"
    path.write_bytes(archive)
    done = subprocess.run(
        ["prlimit", f"--as={LIMIT}", sys.executable, "-c", _READ_CPIO, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (1, f"cpio: error: {path}: {problem}\n")


def _zip(text: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("a.txt", (2009, 1, 1, 0, 0, 0)), text)
    return out.getvalue()


def test_zip_declared_uncompressed_size(tmp_path: Path) -> None:
    """A central directory claiming 4 GiB for a small entry: imgdiff -z treats the entry as plain
    bytes (the claim is checked against what its compressed size can hold) and still works."""
    text = b"".join(b"line %d\n" % i for i in range(20000))
    source = _zip(text)
    target = bytearray(_zip(text.replace(b"line 1", b"LINE 1")))
    central = target.rfind(b"PK\x01\x02")
    target = _with_u32(bytes(target), central + 24, 0xFFFFFFFE)
    for name, data in (("s.zip", source), ("t.zip", target)):
        (tmp_path / name).write_bytes(data)
    done = run_tool("imgdiff", "-z", tmp_path / "s.zip", tmp_path / "t.zip", tmp_path / "p", address_space=LIMIT)
    assert (done.returncode, done.stderr) == (0, "")
    chunks = imgdiff_format.parse((tmp_path / "p").read_bytes(), "p")
    assert not any(isinstance(c, DeflateChunk) for c in chunks)
    done = run_tool("bspatch", tmp_path / "s.zip", tmp_path / "out", tmp_path / "p", address_space=LIMIT)
    assert (done.returncode, done.stderr, (tmp_path / "out").read_bytes()) == (0, "", target)


def test_diff_out_of_memory_is_one_line(tmp_path: Path) -> None:
    size = 64 << 20  # its 4-byte suffix array alone is the whole limit
    (tmp_path / "src").write_bytes(random.Random(1).randbytes(size))
    (tmp_path / "tgt").write_bytes(b"small")
    done = run_tool("bsdiff", tmp_path / "src", tmp_path / "tgt", tmp_path / "p", address_space=LIMIT)
    assert (done.returncode, done.stderr) == (
        1,
        (
            f"bsdiff: error: {tmp_path / 'src'}: out of memory diffing a {size}-byte source "
            f"(the diff needs about {make_bsdiff.peak_estimate(size, 5) >> 20} MiB)\n"
        ),
    )
    assert not (tmp_path / "p").exists()
    small = run_tool("bsdiff", tmp_path / "tgt", tmp_path / "tgt", tmp_path / "p", address_space=LIMIT)
    assert (small.returncode, small.stderr) == (0, "")  # the 1 GiB stack fell back to one that fits
