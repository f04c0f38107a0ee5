"""IMGDIFF2 application: every malformed record gives one OtaError line naming the field, and
through the command lines a user runs (`bspatch` on a host, `applypatch` on a device) one stderr
line and exit status 1."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from engine_helpers import run_tool
from ota.actions import imgdiff, make_bsdiff
from ota.errors import OtaError
from ota.format import deflate, imgdiff_format, imgpatch, patch
from ota.format.imgdiff_format import DeflateChunk, NormalChunk, RawChunk

TEXT = b"".join(b"record %d has value %d\n" % (i, i * 7 % 13) for i in range(3000))
NEW_TEXT = TEXT.replace(b"value 3", b"value three")
SOURCE = (
    b"H" * 200
    + b"\x1f\x8b\x08\0"
    + bytes(6)
    + deflate.deflate(TEXT, 6)
    + struct.pack("<II", zlib.crc32(TEXT), len(TEXT))
)
STREAM = slice(210, 210 + len(deflate.deflate(TEXT, 6)))


def _expect(source: bytes, made: bytes, problem: str, **kwargs) -> None:
    with pytest.raises(OtaError) as caught:
        patch.apply_patch(source, made, where="p", **kwargs)
    assert str(caught.value) == f"p: {problem}"


def _one(chunk: imgdiff_format.Chunk, bsdiff_patch: bytes | None) -> bytes:
    return imgdiff_format.pack([chunk], [bsdiff_patch])


def _deflate_patch(**changes: int) -> bytes:
    good = DeflateChunk(STREAM.start, STREAM.stop - STREAM.start, len(TEXT), len(NEW_TEXT), 6)
    return _one(dataclasses.replace(good, **changes), make_bsdiff.diff(TEXT, NEW_TEXT))


def test_hand_built_patch_applies() -> None:
    assert patch.apply_patch(SOURCE, _deflate_patch()) == deflate.deflate(NEW_TEXT, 6)
    raw_then_normal = imgdiff_format.pack(
        [RawChunk(b"lit"), NormalChunk(0, 200)], [None, make_bsdiff.diff(b"H" * 200, b"h" * 300)]
    )
    assert patch.apply_patch(SOURCE, raw_then_normal) == b"lit" + b"h" * 300


def test_recorded_deflate_parameters_are_honoured() -> None:
    for level, mem_level, strategy in ((1, 9, 0), (9, 1, 0), (6, 8, zlib.Z_FILTERED)):
        made = _deflate_patch(level=level, mem_level=mem_level, strategy=strategy)
        want = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy)
        assert patch.apply_patch(SOURCE, made) == want.compress(NEW_TEXT) + want.flush()


def test_generated_patch_corrupted_anywhere_fails_cleanly() -> None:
    target = (
        b"H" * 201 + b"\x1f\x8b\x08\0" + bytes(6) + deflate.deflate(NEW_TEXT, 6) + struct.pack("<II", 0, len(NEW_TEXT))
    )
    made = imgdiff.make_image_patch(SOURCE, target)
    assert patch.apply_patch(SOURCE, made) == target
    for cut in range(0, len(made), 7):
        try:
            out = patch.apply_patch(SOURCE, made[:cut], where="p")
        except OtaError as err:
            assert str(err).startswith("p: ")
        else:  # only the last bzip2 stream's end marker was cut; the lazy reader never needs it
            assert out == target and len(made) - cut <= 10
    for pos in range(12, len(made), 5):
        corrupted = bytearray(made)
        corrupted[pos] ^= 0x55
        try:
            out = patch.apply_patch(SOURCE, bytes(corrupted), where="p")
        except OtaError as err:
            assert str(err).startswith("p: ")
        else:
            assert isinstance(out, bytes)  # some bytes (e.g. inside bzip2 padding) do not matter


BAD = {
    "truncated header": (b"IMGDIFF2\0", "IMGDIFF2 header truncated (9 of 12 bytes)"),
    "chunk count past patch": (
        b"IMGDIFF2" + struct.pack("<i", 0x7FFFFFFF),
        "IMGDIFF2 chunk count 2147483647 does not fit the 12-byte patch",
    ),
    "negative chunk count": (
        b"IMGDIFF2" + struct.pack("<i", -1),
        "IMGDIFF2 chunk count -1 does not fit the 12-byte patch",
    ),
    "IMGDIFF1 gzip chunk type": (b"IMGDIFF2" + struct.pack("<ii", 1, 1) + bytes(30), "chunk 0: unknown chunk type 1"),
    "truncated record": (b"IMGDIFF2" + struct.pack("<iiq", 1, 0, 0), "chunk 0: record truncated at offset 16"),
    "raw data past patch": (
        b"IMGDIFF2" + struct.pack("<iii", 1, 3, 100) + b"abc",
        "chunk 0: RAW data_len 100 runs past the end of the patch",
    ),
    "raw negative length": (
        b"IMGDIFF2" + struct.pack("<iii", 1, 3, -1),
        "chunk 0: RAW data_len -1 runs past the end of the patch",
    ),
    "normal past source": (
        _one(NormalChunk(100, SOURCE.__len__(), 0), make_bsdiff.diff(b"", b"")),
        f"chunk 0: src_start 100 + src_len {len(SOURCE)} runs past the source ({len(SOURCE)} bytes)",
    ),
    "normal negative length": (
        _one(NormalChunk(0, -4, 0), make_bsdiff.diff(b"", b"")),
        "chunk 0: src_len is negative (-4)",
    ),
    "patch offset past end": (
        b"IMGDIFF2" + struct.pack("<iiqqq", 1, 0, 0, 0, 9999),
        "chunk 0: patch_offset 9999 is past the end of the patch (40 bytes)",
    ),
    "deflate past source": (
        _deflate_patch(src_len=len(SOURCE)),
        f"chunk 0: src_start 210 + src_len {len(SOURCE)} runs past the source ({len(SOURCE)} bytes)",
    ),
    "src_expanded_len 2^62": (
        _deflate_patch(src_expanded_len=1 << 62),
        f"chunk 0: src_expanded_len 4611686018427387904 is more than a {STREAM.stop - STREAM.start}-byte deflate stream can hold",
    ),
    "tgt_expanded_len 2^62": (
        _deflate_patch(tgt_expanded_len=1 << 62),
        "chunk 0: tgt_expanded_len 4611686018427387904 exceeds the expansion limit 2147483648",
    ),
    "negative expanded length": (_deflate_patch(tgt_expanded_len=-1), "chunk 0: tgt_expanded_len is negative (-1)"),
    "src_expanded_len too small": (
        _deflate_patch(src_expanded_len=len(TEXT) - 1),
        f"chunk 0: deflate data inflates to more than src_expanded_len {len(TEXT) - 1}",
    ),
    "tgt_expanded_len too big": (
        _deflate_patch(tgt_expanded_len=len(NEW_TEXT) + 1),
        f"chunk 0: patch makes {len(NEW_TEXT)} bytes, tgt_expanded_len says {len(NEW_TEXT) + 1}",
    ),
    "tgt_expanded_len too small": (
        _deflate_patch(tgt_expanded_len=10),
        f"chunk 0: BSDIFF40 new size {len(NEW_TEXT)} exceeds the limit 10",
    ),
    "bad zlib level": (
        _deflate_patch(level=12),
        "chunk 0: zlib parameters level=12 method=8 windowBits=-15 memLevel=8 strategy=0 rejected (Invalid initialization option)",
    ),
    "deflate over raw bytes": (
        _deflate_patch(src_start=0, src_len=100),
        "chunk 0: deflate data does not inflate (Error -3 while decompressing data: invalid stored block lengths)",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_patch(name: str) -> None:
    made, problem = BAD[name]
    _expect(SOURCE, made, problem)


def test_output_limit_and_wrong_magic() -> None:
    made = _one(RawChunk(b"x" * 100), None)
    _expect(SOURCE, made, "chunk 0: output grows past the limit 99", limit=99)
    with pytest.raises(OtaError) as caught:
        imgpatch.apply(SOURCE, b"IMGDIFF1" + bytes(4), where="p")
    assert str(caught.value) == "p: magic is b'IMGDIFF1', expected b'IMGDIFF2'"


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_patch_through_bspatch_is_one_line_exit_1(tmp_path: Path, name: str) -> None:
    made, problem = BAD[name]
    (tmp_path / "src").write_bytes(SOURCE)
    bad = tmp_path / "bad.p"
    bad.write_bytes(made)
    done = run_tool("bspatch", tmp_path / "src", tmp_path / "out", bad)
    assert (done.returncode, done.stderr, done.stdout) == (1, f"bspatch: error: {bad}: {problem}\n", "")
    assert not (tmp_path / "out").exists()


def test_bspatch_applies_imgdiff_output(tmp_path: Path) -> None:
    target = (
        b"H" * 201 + b"\x1f\x8b\x08\0" + bytes(6) + deflate.deflate(NEW_TEXT, 9) + struct.pack("<II", 0, len(NEW_TEXT))
    )
    (tmp_path / "src").write_bytes(SOURCE)
    (tmp_path / "tgt").write_bytes(target)
    assert run_tool("imgdiff", tmp_path / "src", tmp_path / "tgt", tmp_path / "p").returncode == 0
    done = run_tool("bspatch", tmp_path / "src", tmp_path / "out", tmp_path / "p")
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "out").read_bytes() == target
    done = run_tool(
        "bspatch", f"--expand_limit={len(NEW_TEXT) - 1}", tmp_path / "src", tmp_path / "out2", tmp_path / "p"
    )
    assert (done.returncode, done.stderr) == (
        1,
        (
            f"bspatch: error: {tmp_path / 'p'}: chunk 1: tgt_expanded_len "
            f"{len(NEW_TEXT)} exceeds the expansion limit {len(NEW_TEXT) - 1}\n"
        ),
    )


def test_bad_patch_through_applypatch_is_one_line_exit_1(tmp_path: Path) -> None:
    """What a device runs: the classic file form, target size and SHA-1 known."""
    made, problem = BAD["src_expanded_len too small"]
    (tmp_path / "cache").mkdir()
    (tmp_path / "src").write_bytes(SOURCE)
    (tmp_path / "bad.p").write_bytes(made)
    target = deflate.deflate(NEW_TEXT, 6)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ota.cli.applypatch",
            f"--cache_dir={tmp_path / 'cache'}",
            str(tmp_path / "src"),
            str(tmp_path / "out"),
            hashlib.sha1(target).hexdigest(),
            str(len(target)),
            f"{hashlib.sha1(SOURCE).hexdigest()}:{tmp_path / 'bad.p'}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (1, f"applypatch: error: {tmp_path / 'bad.p'}: {problem}\n")
    assert not (tmp_path / "out").exists()
