"""IMGDIFF2 generation: byte-for-byte round trips over gzip, multi-member, zip and bonus inputs."""

from __future__ import annotations

import gzip
import io
import random
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine_helpers import run_tool
from ota.actions import imgdiff
from ota.errors import OtaError
from ota.format import deflate, imgdiff_format, patch
from ota.format.imgdiff_format import DeflateChunk, NormalChunk, RawChunk


def _text(seed: int, lines: int) -> bytes:
    rng = random.Random(seed)
    return b"".join(
        b"entry %d: value=%d name=item_%d\n" % (i, rng.randrange(1000), rng.randrange(50)) for i in range(lines)
    )


def _edited(data: bytes) -> bytes:
    return data.replace(b"value=1", b"value=one").replace(b"name=item_7\n", b"name=item_seven\n")


SOURCE_TEXT = _text(1, 3000)
TARGET_TEXT = _edited(SOURCE_TEXT)


def _zlib_gzip(data: bytes, level: int, mem_level: int = 8) -> bytes:
    """A gzip member (FLG=0) whose deflate stream is zlib's at the given settings."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + 15, mem_level)
    return compressor.compress(data) + compressor.flush()


def _round_trip(source: bytes, target: bytes, **kwargs) -> list[imgdiff_format.Chunk]:
    made = imgdiff.make_image_patch(source, target, **kwargs)
    assert patch.apply_patch(source, made, bonus=kwargs.get("bonus")) == target
    return imgdiff_format.parse(made, "made")


def _deflate_chunks(chunks: list[imgdiff_format.Chunk]) -> list[DeflateChunk]:
    return [c for c in chunks if isinstance(c, DeflateChunk)]


@pytest.mark.parametrize("level", range(1, 10))
def test_zlib_gzip_every_level_patches_in_uncompressed_space(level: int) -> None:
    source = b"BOOT" * 50 + _zlib_gzip(SOURCE_TEXT, level) + b"tail" * 50
    target = b"BOOT" * 50 + _zlib_gzip(TARGET_TEXT, level) + b"tail" * 50
    chunks = _round_trip(source, target)
    (chunk,) = _deflate_chunks(chunks)
    assert deflate.deflate(TARGET_TEXT, chunk.level, chunk.mem_level) == _zlib_gzip(TARGET_TEXT, level)[10:-8]
    assert (chunk.src_expanded_len, chunk.tgt_expanded_len) == (len(SOURCE_TEXT), len(TARGET_TEXT))
    assert len(imgdiff.make_image_patch(source, target)) < len(target) // 10


def test_search_finds_streams_aosp_misses() -> None:
    """AOSP tries only (6, 8) and (9, 8); level 1 and memLevel 9 streams need the wider search."""
    for level, mem_level in ((1, 8), (6, 9), (4, 3)):
        stream = deflate.deflate(TARGET_TEXT, level, mem_level)
        assert all(deflate.deflate(TARGET_TEXT, *aosp) != stream for aosp in deflate.AOSP_PARAMS)
        found = deflate.find_reproducing_params(TARGET_TEXT, stream)
        assert found is not None and deflate.deflate(TARGET_TEXT, *found) == stream
    chunks = _round_trip(_zlib_gzip(SOURCE_TEXT, 1, 9), _zlib_gzip(TARGET_TEXT, 1, 9))
    (chunk,) = _deflate_chunks(chunks)
    assert deflate.deflate(TARGET_TEXT, chunk.level, chunk.mem_level) == _zlib_gzip(TARGET_TEXT, 1, 9)[10:-8]


def test_search_covers_every_level_and_mem_level_once() -> None:
    order = [params for stage in deflate.SEARCH_STAGES for params in stage]
    assert order[:2] == [(6, 8), (9, 8)]
    assert sorted(order) == [(level, mem) for level in range(1, 10) for mem in range(1, 10)]


def test_unreproducible_stream_falls_back_to_normal() -> None:
    """A stream zlib cannot make (here: with a sync flush inside) is patched as raw bytes."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    odd = compressor.compress(TARGET_TEXT[:1000]) + compressor.flush(zlib.Z_SYNC_FLUSH)
    odd += compressor.compress(TARGET_TEXT[1000:]) + compressor.flush()
    assert deflate.find_reproducing_params(TARGET_TEXT, odd) is None
    source = b"\x1f\x8b\x08\0" + bytes(6) + deflate.deflate(SOURCE_TEXT, 6) + struct.pack("<II", 0, len(SOURCE_TEXT))
    target = b"\x1f\x8b\x08\0" + bytes(6) + odd + struct.pack("<II", 0, len(TARGET_TEXT))
    assert _deflate_chunks(_round_trip(source, target)) == []


def _gnu_gzip(tmp_path: Path, name: str, data: bytes, *flags: str) -> bytes:
    (tmp_path / name).write_bytes(data)
    subprocess.run(["gzip", "-f", *flags, str(tmp_path / name)], check=True)
    return (tmp_path / f"{name}.gz").read_bytes()


def test_gnu_gzip_with_and_without_stored_name(tmp_path: Path) -> None:
    for flags in (["-n"], ["-9n"], []):
        source = _gnu_gzip(tmp_path, "data", SOURCE_TEXT, *flags)
        target = _gnu_gzip(tmp_path, "data", TARGET_TEXT, *flags)
        assert bool(source[3] & 0x08) == (flags == [])  # FNAME unless -n
        _round_trip(b"pre" + source, b"pre" + target)
        (tmp_path / "s").write_bytes(source)
        (tmp_path / "t").write_bytes(target)
        assert run_tool("imgdiff", tmp_path / "s", tmp_path / "t", tmp_path / "p").returncode == 0
        assert patch.apply_patch(source, (tmp_path / "p").read_bytes()) == target


@pytest.mark.parametrize(
    "flags,extra_header",
    [
        (0x08, b"kernel.bin\0"),  # FNAME, what `gzip` (no -n) and Python's GzipFile write
        (0x04, b"\x06\0AB\x02\0xy"),  # FEXTRA with one subfield
        (0x10 | 0x08, b"name\0a comment\0"),  # FNAME + FCOMMENT
    ],
)
def test_gzip_header_flags_are_recognised(flags: int, extra_header: bytes) -> None:
    def member(text: bytes) -> bytes:
        return (
            b"\x1f\x8b\x08"
            + bytes([flags])
            + bytes(4)
            + b"\0\x03"
            + extra_header
            + deflate.deflate(text, 9)
            + struct.pack("<II", zlib.crc32(text), len(text))
        )

    chunks = _round_trip(member(SOURCE_TEXT), member(TARGET_TEXT))
    assert [type(c) for c in chunks] == [RawChunk, DeflateChunk, RawChunk]
    assert chunks[0].data == member(TARGET_TEXT)[: 10 + len(extra_header)]


def test_gzip_header_crc_is_checked() -> None:
    header = b"\x1f\x8b\x08\x02" + bytes(4) + b"\0\x03"
    good = header + struct.pack("<H", zlib.crc32(header) & 0xFFFF)
    assert deflate.gzip_header_len(good, 0) == 12
    assert deflate.gzip_header_len(good[:-1] + bytes([good[-1] ^ 1]), 0) is None
    assert deflate.gzip_header_len(b"\x1f\x8b\x08\x20" + bytes(6), 0) is None  # reserved FLG bit


def test_python_gzipfile_with_name() -> None:
    def member(text: bytes) -> bytes:
        out = io.BytesIO()
        with gzip.GzipFile("ramdisk.cpio", "wb", 9, out, mtime=0) as stream:
            stream.write(text)
        return out.getvalue()

    assert _deflate_chunks(_round_trip(member(SOURCE_TEXT), member(TARGET_TEXT)))


def test_multi_member_image() -> None:
    parts_src = [
        b"HDR" * 30,
        _zlib_gzip(SOURCE_TEXT[:50000], 6),
        random.Random(5).randbytes(3000),
        _zlib_gzip(SOURCE_TEXT[50000:], 9),
        _zlib_gzip(b"unchanged" * 100, 6),
        b"end",
    ]
    parts_tgt = [
        b"HDR" * 31,
        _zlib_gzip(TARGET_TEXT[:50000], 6),
        random.Random(5).randbytes(3000),
        _zlib_gzip(TARGET_TEXT[50000:], 9),
        _zlib_gzip(b"unchanged" * 100, 6),
        b"end!",
    ]
    chunks = _round_trip(b"".join(parts_src), b"".join(parts_tgt))
    # the identical third member became NORMAL and merged with its neighbours
    assert [c.level for c in _deflate_chunks(chunks)] == [6, 9]


def test_chunk_structure_mismatch_fails_with_exit_1(tmp_path: Path) -> None:
    (tmp_path / "s").write_bytes(b"x" * 100 + _zlib_gzip(SOURCE_TEXT, 6))
    (tmp_path / "t").write_bytes(b"x" * 100)
    done = run_tool("imgdiff", tmp_path / "s", tmp_path / "t", tmp_path / "p")
    assert (done.returncode, done.stderr) == (
        1,
        (
            f"imgdiff: error: {tmp_path / 't'}: chunk structure (1 chunks: normal) differs from "
            f"{tmp_path / 's'} (3 chunks: normal,deflate,normal)\n"
        ),
    )
    assert not (tmp_path / "p").exists()


def test_spurious_magic_and_bad_footer_are_plain_data() -> None:
    member = _zlib_gzip(SOURCE_TEXT, 6)
    bad_footer = member[:-4] + struct.pack("<I", len(SOURCE_TEXT) + 1)
    source = b"\x1f\x8b\x08\0garbage" + bad_footer + b"\x1f\x8b\x08"
    target = b"\x1f\x8b\x08\0garbage!" + bad_footer + b"\x1f\x8b"
    assert deflate.find_gzip_members(source, 1 << 30) == []
    assert _deflate_chunks(_round_trip(source, target)) == []


@pytest.mark.parametrize(
    "source,target",
    [
        (b"", b""),
        (b"", b"a" * 500),
        (b"a" * 500, b""),
        (random.Random(2).randbytes(40_000), random.Random(3).randbytes(41_000)),
    ],
)
def test_plain_binary(source: bytes, target: bytes) -> None:
    _round_trip(source, target)


def test_bonus_data(tmp_path: Path) -> None:
    """As recovery-from-boot: the source's chunk 1 plus the bonus bytes is what the target patches."""
    bonus = _text(9, 3000)
    source = b"boot" * 200 + _zlib_gzip(SOURCE_TEXT, 6) + b"trailer"
    target = b"recovery" * 100 + _zlib_gzip(TARGET_TEXT + _edited(bonus), 9) + b"trailer2"
    for path, data in (("s", source), ("t", target), ("bonus", bonus)):
        (tmp_path / path).write_bytes(data)
    done = run_tool("imgdiff", "-b", tmp_path / "bonus", tmp_path / "s", tmp_path / "t", tmp_path / "p")
    assert (done.returncode, done.stderr) == (0, "")
    made = (tmp_path / "p").read_bytes()
    assert patch.apply_patch(source, made, bonus=bonus) == target
    done = run_tool("bspatch", "--bonus", tmp_path / "bonus", tmp_path / "s", tmp_path / "out", tmp_path / "p")
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "out").read_bytes() == target
    (chunk,) = _deflate_chunks(imgdiff_format.parse(made, "p"))
    assert chunk.src_expanded_len == len(SOURCE_TEXT) + len(bonus)
    with pytest.raises(OtaError) as missing_bonus:
        patch.apply_patch(source, made, where="p")
    assert str(missing_bonus.value) == (
        f"p: chunk 1: deflate data inflates to {len(SOURCE_TEXT)} bytes, "
        f"src_expanded_len says {len(SOURCE_TEXT) + len(bonus)}"
    )
    assert len(made) < len(imgdiff.make_image_patch(source, target)) // 3


def _python_zip(entries: dict[str, bytes], stored: tuple[str, ...] = ()) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, (2009, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return out.getvalue()


def _zip_mode(tmp_path: Path, source: bytes, target: bytes) -> list[imgdiff_format.Chunk]:
    (tmp_path / "s.zip").write_bytes(source)
    (tmp_path / "t.zip").write_bytes(target)
    done = run_tool("imgdiff", "-z", tmp_path / "s.zip", tmp_path / "t.zip", tmp_path / "p")
    assert (done.returncode, done.stderr) == (0, "")
    made = (tmp_path / "p").read_bytes()
    assert patch.apply_patch(source, made) == target
    return imgdiff_format.parse(made, "p")


def test_zip_mode_python_zipfile(tmp_path: Path) -> None:
    source = _python_zip(
        {"a.txt": SOURCE_TEXT, "same.txt": b"same" * 500, "store.bin": b"s" * 400, "gone.txt": b"old" * 100}
    )
    target = _python_zip(
        {
            "store.bin": b"t" * 400,
            "a.txt": TARGET_TEXT,
            "same.txt": b"same" * 500,
            "new.txt": _text(4, 100),
            "empty": b"",
        },
        stored=("store.bin",),
    )
    chunks = _zip_mode(tmp_path, source, target)
    deflates = _deflate_chunks(chunks)
    assert len(deflates) == 1 and deflates[0].tgt_expanded_len == len(TARGET_TEXT)
    assert all(c.src_start == 0 and c.src_len == len(source) for c in chunks if isinstance(c, NormalChunk))


def test_zip_mode_info_zip_and_trailing_bytes(tmp_path: Path) -> None:
    for version, text in (("v1", SOURCE_TEXT), ("v2", TARGET_TEXT)):
        tree = tmp_path / version
        (tree / "sub").mkdir(parents=True)
        (tree / "sub" / "a.txt").write_bytes(text)
        (tree / "b.txt").write_bytes(text[:20000])
        subprocess.run(["zip", "-q", "-X", "-r", str(tmp_path / f"{version}.zip"), "."], cwd=tree, check=True)
    source = (tmp_path / "v1.zip").read_bytes()
    target = (tmp_path / "v2.zip").read_bytes() + bytes(100)  # trailing zeros after the EOCD
    _zip_mode(tmp_path, source, target)


def _as_zip64(archive: bytes) -> bytes:
    """Rewrites a comment-less zip's end records in zip64 form (saturated EOCD + zip64 record +
    locator), as writers do past 65535 entries or 4 GiB."""
    eocd = len(archive) - 22
    _, _, _, _, count, size, offset, _ = struct.unpack_from("<4sHHHHIIH", archive, eocd)
    record = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, offset)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, eocd, 1)
    saturated = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return archive[:eocd] + record + locator + saturated


def test_zip64_end_records(tmp_path: Path) -> None:
    source = _as_zip64(_python_zip({"big.txt": SOURCE_TEXT, "x": b"x" * 300}))
    target = _as_zip64(_python_zip({"big.txt": TARGET_TEXT, "x": b"y" * 300}))
    assert zipfile.ZipFile(io.BytesIO(target)).read("big.txt") == TARGET_TEXT  # a valid zip64 file
    assert len(_deflate_chunks(_zip_mode(tmp_path, source, target))) == 1


def test_zip_mode_rejects_non_zip(tmp_path: Path) -> None:
    (tmp_path / "s").write_bytes(b"not a zip")
    (tmp_path / "t.zip").write_bytes(_python_zip({"a": b"a"}))
    done = run_tool("imgdiff", "-z", tmp_path / "s", tmp_path / "t.zip", tmp_path / "p")
    assert (done.returncode, done.stderr) == (
        1,
        f"imgdiff: error: {tmp_path / 's'}: not a zip file (no end of central directory record)\n",
    )


def test_command_line_usage(tmp_path: Path) -> None:
    assert run_tool("imgdiff", "a", "b").returncode == 2
    assert run_tool("imgdiff", "-z", "-b", "x", "a", "b", "c").returncode == 2
    done = run_tool("imgdiff", tmp_path / "missing", tmp_path / "t", tmp_path / "p")
    assert (done.returncode, done.stderr) == (
        1,
        f"imgdiff: error: {tmp_path / 'missing'}: cannot read: No such file or directory\n",
    )


_segments = st.lists(st.one_of(st.binary(max_size=400), st.sampled_from([b"alpha ", b"beta\n", b"gamma"])), max_size=8)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(_segments, _segments, _segments, _segments, st.integers(1, 9)), min_size=0, max_size=3),
    _segments,
    _segments,
)
def test_any_images_with_matching_members_round_trip(members, tail_src, tail_tgt) -> None:
    source, target = bytearray(), bytearray()
    for gap_src, gap_tgt, text_src, text_tgt, level in members:
        source += b"".join(gap_src).replace(b"\x1f\x8b", b"") + _zlib_gzip(b"".join(text_src), level)
        target += b"".join(gap_tgt).replace(b"\x1f\x8b", b"") + _zlib_gzip(b"".join(text_tgt), level)
    source += b"".join(tail_src).replace(b"\x1f\x8b", b"")
    target += b"".join(tail_tgt).replace(b"\x1f\x8b", b"")
    _round_trip(bytes(source), bytes(target))


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=2000), st.binary(max_size=2000))
def test_any_pair_round_trips_or_fails_cleanly(source: bytes, target: bytes) -> None:
    try:
        made = imgdiff.make_image_patch(source, target)
    except OtaError as err:
        assert "chunk structure" in str(err)
        return
    assert patch.apply_patch(source, made) == target
