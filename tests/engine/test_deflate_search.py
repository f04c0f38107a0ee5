"""The zlib-settings search (ota.format.deflate) against the exhaustive one, over generated streams.

The exhaustive search compresses the inflated data in full with every setting of
deflate.SEARCH_STAGES, in order, and takes the first whose stream is the given one. The search
under test races settings over growing pieces and drops them early (find_reproducing_params), or
stops after a prefix and finishes later (start_search, as imgdiff runs it beside its diffs); both
must name exactly the exhaustive search's setting, or None, for streams of every zlib level,
memLevel, window size and strategy, GNU gzip's, and streams that match a setting for a while and
then stop matching. imgdiff's patches must not depend on how far the search got before the diffs.
"""

from __future__ import annotations

import functools
import random
import shutil
import struct
import subprocess
import zlib

import pytest

from ota.actions import imgdiff
from ota.format import deflate, imgpatch

ORDER = [params for stage in deflate.SEARCH_STAGES for params in stage]
STRATEGIES = (zlib.Z_DEFAULT_STRATEGY, zlib.Z_FILTERED, zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE, zlib.Z_FIXED)


def _words(rng: random.Random, size: int) -> bytes:
    vocabulary = [
        bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 9))) for _ in range(400)
    ]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(vocabulary) + rng.choice((b" ", b"\n", b"=", b"(", b", "))
    return bytes(out[:size])


def _code(rng: random.Random, size: int) -> bytes:
    """Instruction-like words with a few hot opcodes and many near-repeats."""
    out = bytearray()
    while len(out) < size:
        out += struct.pack(
            "<I", rng.choice((0xD503201F, 0xAA0103E0, 0x910003FD)) ^ rng.randrange(1 << rng.choice((0, 4, 12, 20)))
        )
    return bytes(out[:size])


def _data(kind: str, seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    if kind == "random":
        return rng.randbytes(size)
    if kind == "runs":
        return b"".join(bytes([rng.randrange(4)]) * rng.randint(1, 3000) for _ in range(size // 300 + 1))[:size]
    if kind == "mixed":
        parts = [_words(rng, size // 4), rng.randbytes(size // 8), _code(rng, size // 2)]
        return b"".join(parts + [bytes(size - sum(map(len, parts)))])
    return (_words if kind == "words" else _code)(rng, size)


INPUTS = [
    (kind, seed, size)
    for seed, (kind, size) in enumerate(
        [("words", 0), ("words", 1), ("random", 37), ("runs", 500), ("words", 3000), ("code", 20_000)]
        + [("mixed", 70_000), ("words", 120_000), ("code", 100_000), ("runs", 200_000), ("random", 40_000)]
    )
]


@functools.cache
def _exhaustive_outputs(kind: str, seed: int, size: int) -> dict[tuple[int, int], bytes]:
    data = _data(kind, seed, size)
    return {params: deflate.deflate(data, *params) for params in ORDER}


def _exhaustive(key: tuple[str, int, int], stream: bytes) -> tuple[int, int] | None:
    outputs = _exhaustive_outputs(*key)
    return next((params for params in ORDER if outputs[params] == stream), None)


def _zlib_stream(data: bytes, level: int, mem_level: int, wbits: int, strategy: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, wbits, mem_level, strategy)
    return compressor.compress(data) + compressor.flush()


def _flushed_stream(data: bytes, level: int, mem_level: int, at: int, mode: int) -> bytes:
    """zlib's stream at these settings with one flush at `at`: identical to the plain stream up
    to the block being flushed, different afterwards."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level)
    return compressor.compress(data[:at]) + compressor.flush(mode) + compressor.compress(data[at:]) + compressor.flush()


def _gnu_gzip_stream(data: bytes, level: int) -> bytes:
    member = subprocess.run(["gzip", "-n", f"-{level}", "-c"], input=data, capture_output=True, check=True).stdout
    return member[deflate.GZIP_FIXED_HEADER : -deflate.GZIP_FOOTER]


GRID = 90  # levels 0-9 x memLevels 1-9


def _streams(rng: random.Random, data: bytes, grid: bool) -> list[tuple[str, bytes]]:
    """Every level (0-9) at every memLevel with zlib's defaults (`grid`) or a sample of them, then
    sampled window sizes and strategies, flushed streams and corrupted tails."""
    settings = [(level, mem) for level in range(10) for mem in range(1, 10)]
    streams = [
        (f"{level},{mem}", _zlib_stream(data, level, mem, -15, 0))
        for level, mem in (settings if grid else rng.sample(settings, 12))
    ]
    for _ in range(12):
        level, mem, wbits, strategy = rng.randrange(10), rng.randint(1, 9), -rng.randint(9, 15), rng.choice(STRATEGIES)
        streams.append((f"{level},{mem},{wbits},{strategy}", _zlib_stream(data, level, mem, wbits, strategy)))
    if len(data) > 2:
        for _ in range(4):
            level, mem, at = rng.randint(1, 9), rng.randint(1, 9), rng.randrange(1, len(data))
            mode = rng.choice((zlib.Z_SYNC_FLUSH, zlib.Z_FULL_FLUSH, zlib.Z_BLOCK))
            streams.append((f"flush {mode} at {at}", _flushed_stream(data, level, mem, at, mode)))
        good = deflate.deflate(data, *rng.choice(ORDER))
        flipped = bytearray(good)
        flipped[-1 - rng.randrange(min(4, len(good)))] ^= 1 << rng.randrange(8)
        streams += [("last bytes flipped", bytes(flipped)), ("truncated", good[:-1]), ("extended", good + b"\0")]
    return streams


@pytest.mark.parametrize("key", INPUTS, ids=[f"{kind}-{size}" for kind, _, size in INPUTS])
def test_search_names_the_exhaustive_setting(key: tuple[str, int, int]) -> None:
    data = _data(*key)
    rng = random.Random(repr(key))  # a str seed is hashed by sha512: the same streams every run
    grid = key[2] in (3000, 20_000, 70_000)
    checked = 0
    for label, stream in _streams(rng, data, grid):
        expected = _exhaustive(key, stream)
        assert deflate.find_reproducing_params(data, stream) == expected, label
        for prefix in (rng.choice((0, 1, 4096)), rng.randrange(len(data) + 2)):
            pending = deflate.start_search(data, stream, prefix)
            if pending is None:
                assert expected is None, (label, prefix)
                continue
            assert pending.likely in ORDER
            assert pending.finish() == expected, (label, prefix)
        checked += 1
    assert checked >= (GRID if grid else 12) + 12


@pytest.mark.skipif(shutil.which("gzip") is None, reason="GNU gzip is not on PATH")
@pytest.mark.parametrize("key", INPUTS[4:], ids=[f"{kind}-{size}" for kind, _, size in INPUTS[4:]])
def test_gnu_gzip_streams_stay_unreproducible(key: tuple[str, int, int]) -> None:
    """GNU gzip's deflate is not zlib's: its streams must still be found unreproducible, and most
    within the prefix, before any diff is spent on them."""
    data = _data(*key)
    for level in range(1, 10):
        stream = _gnu_gzip_stream(data, level)
        if _exhaustive(key, stream) is not None:
            continue  # GNU gzip's bytes can coincide with zlib's on degenerate input: nothing to check
        assert deflate.find_reproducing_params(data, stream) is None, level
        pending = deflate.start_search(data, stream)
        assert pending is None or pending.finish() is None, level


LARGE = _data("mixed", 99, 3 << 20)


def test_speculation_past_the_default_prefix() -> None:
    """Streams larger than SPECULATION_PREFIX: a plain one is likely at once and confirmed; one
    that only diverges after the prefix (a flush at 2 MiB) is likely yet finishes as None."""
    for params in ((6, 8), (9, 8), (1, 8), (5, 9)):
        pending = deflate.start_search(LARGE, deflate.deflate(LARGE, *params))
        assert pending is not None and pending.likely == params and pending.finish() == params
    late = _flushed_stream(LARGE, 6, 8, 2 << 20, zlib.Z_FULL_FLUSH)
    pending = deflate.start_search(LARGE, late)
    assert pending is not None and pending.likely == (6, 8)
    assert pending.finish() is None
    assert deflate.find_reproducing_params(LARGE, late) is None


def _gzip_member(data: bytes, stream: bytes) -> bytes:
    return b"\x1f\x8b\x08\0" + bytes(6) + stream + struct.pack("<II", zlib.crc32(data), len(data))


@pytest.mark.parametrize("prefix", [1 << 12, 3 << 20])
def test_imgdiff_bytes_do_not_depend_on_the_speculation(prefix: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image whose second member only stops matching zlib after the speculation prefix: the
    diffs start on a layout the search then overturns. The patch must equal the one made with the
    whole search done first (a prefix past every stream), and apply."""
    rng = random.Random(7)
    old_large = bytearray(LARGE)
    for _ in range(30):
        at = rng.randrange(len(old_large) - 64)
        old_large[at : at + 16] = rng.randbytes(16)
    small_old, small_new = _data("words", 5, 200_000), _data("words", 6, 200_000)
    source = b"head" + _gzip_member(small_old, deflate.deflate(small_old, 6)) + b"mid"
    source += _gzip_member(bytes(old_large), deflate.deflate(bytes(old_large), 9)) + b"tail"
    late = _flushed_stream(LARGE, 9, 8, (2 << 20) + 12345, zlib.Z_SYNC_FLUSH)
    target = b"head" + _gzip_member(small_new, deflate.deflate(small_new, 6)) + b"mid" + _gzip_member(LARGE, late)
    target += b"tail!"

    monkeypatch.setattr(deflate, "SPECULATION_PREFIX", 64 << 20)
    reference = imgdiff.make_image_patch(source, target)
    monkeypatch.setattr(deflate, "SPECULATION_PREFIX", prefix)
    speculated = imgdiff.make_image_patch(source, target)
    assert speculated == reference
    assert imgpatch.apply(source, speculated) == target
