"""BSDIFF40: round trips, interop with Debian's bsdiff/bspatch, and every malformed field."""

from __future__ import annotations

import bz2
import hashlib
import random
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine_helpers import bsdiff40, peak_rss_mb, run_tool
from ota.actions import make_bsdiff
from ota.errors import OtaError
from ota.format import bsdiff, patch


def _structured(seed: int, size: int) -> bytes:
    """Binary-looking data: records with counters, text and random runs (like an executable)."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += len(out).to_bytes(4, "little") + b"symbol_%d\0" % rng.randrange(500) + rng.randbytes(rng.randrange(40))
    return bytes(out[:size])


def _edit(data: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(20):
        pos = rng.randrange(len(out))
        out[pos : pos + rng.randrange(50)] = rng.randbytes(rng.randrange(60))
    return bytes(out)


@pytest.mark.parametrize(
    "source,target",
    [
        (b"", b""),
        (b"", b"new file"),
        (b"old file", b""),
        (random.Random(1).randbytes(70_000), random.Random(2).randbytes(50_000)),
        (_structured(3, 300_000), _edit(_structured(3, 300_000), 4)),
    ],
)
def test_round_trip(source: bytes, target: bytes) -> None:
    made = make_bsdiff.diff(source, target)
    assert made.startswith(b"BSDIFF40")
    assert patch.apply_patch(source, made) == target


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3000), st.binary(max_size=3000))
def test_any_pair_round_trips(source: bytes, target: bytes) -> None:
    assert patch.apply_patch(source, make_bsdiff.diff(source, target)) == target


def test_offset_encoding_is_sign_magnitude() -> None:
    assert bsdiff.encode_offset(-1) == b"\x01" + b"\0" * 6 + b"\x80"
    assert bsdiff.decode_offset(b"\0" * 7 + b"\x80") == 0  # negative zero
    for value in (0, 1, -1, 255, -(1 << 62), (1 << 63) - 1):
        assert bsdiff.decode_offset(bsdiff.encode_offset(value)) == value


def test_cli_round_trip_and_debian_bspatch_applies_ours(tmp_path: Path) -> None:
    source, target = _structured(5, 200_000), _edit(_structured(5, 200_000), 6)
    (tmp_path / "src").write_bytes(source)
    (tmp_path / "tgt").write_bytes(target)
    assert run_tool("bsdiff", tmp_path / "src", tmp_path / "tgt", tmp_path / "p").returncode == 0
    subprocess.run(["bspatch", tmp_path / "src", tmp_path / "debian_out", tmp_path / "p"], check=True)
    assert (tmp_path / "debian_out").read_bytes() == target
    done = run_tool("bspatch", tmp_path / "src", tmp_path / "our_out", tmp_path / "p")
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "our_out").read_bytes() == target


def test_debian_bsdiff_patch_applies_with_ours(tmp_path: Path) -> None:
    source, target = _structured(7, 250_000), _edit(_structured(8, 250_000), 9)
    (tmp_path / "src").write_bytes(source)
    (tmp_path / "tgt").write_bytes(target)
    subprocess.run(["bsdiff", tmp_path / "src", tmp_path / "tgt", tmp_path / "p"], check=True)
    made = patch.apply_patch(source, (tmp_path / "p").read_bytes())
    assert hashlib.sha256(made).digest() == hashlib.sha256(target).digest()


def test_embedded_patch_ignores_trailing_bytes() -> None:
    """Inside IMGDIFF2 a BSDIFF40 is followed by the next chunk's patch."""
    source, target = b"a" * 1000 + b"b" * 1000, b"a" * 900 + b"c" * 1200
    assert bsdiff.apply(source, make_bsdiff.diff(source, target) + make_bsdiff.diff(target, source)) == target


def test_lazy_reader_accepts_unused_control_tuples() -> None:
    """AOSP's bspatch stops once the new file is complete; so do we."""
    made = bsdiff40([(3, 0, 0), (99, 99, 99)], b"\x01\x01\x01", b"", 3)
    assert bsdiff.apply(b"abc", made) == b"bcd"


def test_old_position_outside_source_reads_as_zero() -> None:
    made = bsdiff40([(2, 0, 10), (2, 0, -100)], b"\x05\x06\x07\x08", b"", 4)
    assert bsdiff.apply(b"ab", made) == bytes([ord("a") + 5, ord("b") + 6, 7, 8])


BAD_CASES = {
    "truncated header": (b"BSDIFF40\0\0", "BSDIFF40 header truncated (10 of 32 bytes)"),
    "wrong magic": (b"BSDIFF41" + bytes(24), "unknown patch format (magic b'BSDIFF41'; expected BSDIFF40 or IMGDIFF2)"),
    "negative control length": (
        b"BSDIFF40" + bsdiff.encode_offset(-5) + bytes(16),
        "BSDIFF40 control block length is negative (-5)",
    ),
    "negative new size": (b"BSDIFF40" + bytes(16) + bsdiff.encode_offset(-1), "BSDIFF40 new size is negative (-1)"),
    "new size 2^62": (
        b"BSDIFF40" + bytes(16) + bsdiff.encode_offset(1 << 62),
        "BSDIFF40 new size 4611686018427387904 exceeds the limit 2147483648",
    ),
    "control length past patch": (
        b"BSDIFF40" + bsdiff.encode_offset(100) + bytes(16) + bytes(10),
        "BSDIFF40 control block length 100 exceeds the 10 bytes after the header",
    ),
    "diff length past patch": (
        b"BSDIFF40" + bsdiff.encode_offset(4) + bsdiff.encode_offset(7) + bytes(8) + bytes(10),
        "BSDIFF40 diff block length 7 exceeds the 6 bytes after the control block",
    ),
    "truncated extra stream": (
        bsdiff40([(0, 3000, 0)], b"", random.Random(0).randbytes(3000), 3000)[:-1000],
        "BSDIFF40 extra block holds 0 bytes, control tuples need 3000",
    ),
    "control not bzip2": (
        bsdiff40([], b"", b"", 3, control_raw=b"")[:8]
        + bsdiff.encode_offset(4)
        + bsdiff.encode_offset(0)
        + bsdiff.encode_offset(3)
        + b"junk",
        "BSDIFF40 control block is not valid bzip2 (Invalid data stream)",
    ),
    "control ends early": (
        bsdiff40([(1, 0, 0)], b"\0", b"", 3),
        "BSDIFF40 control block ends at new position 1 before the new size 3",
    ),
    "negative x": (bsdiff40([(-1, 0, 0)], b"", b"", 3), "BSDIFF40 control tuple 0: negative length (x=-1, y=0)"),
    "negative y": (bsdiff40([(0, -2, 0)], b"", b"", 3), "BSDIFF40 control tuple 0: negative length (x=0, y=-2)"),
    "x past new buffer": (
        bsdiff40([(1, 0, 0), (5, 0, 0)], b"\0" * 6, b"", 3),
        "BSDIFF40 control tuple 1: diff length x=5 at new position 1 runs past the new size 3",
    ),
    "y past new buffer": (
        bsdiff40([(2, 2, 0)], b"\0\0", b"zz", 3),
        "BSDIFF40 control tuple 0: extra length y=2 at new position 2 runs past the new size 3",
    ),
    "x past diff block": (
        bsdiff40([(3, 0, 0)], b"\0", b"", 3),
        "BSDIFF40 diff block holds 1 bytes, control tuples need 3",
    ),
    "y past extra block": (
        bsdiff40([(0, 3, 0)], b"", b"z", 3),
        "BSDIFF40 extra block holds 1 bytes, control tuples need 3",
    ),
    "seek out of range": (
        bsdiff40([(1, 0, (1 << 63) - 1), (1, 0, (1 << 63) - 1)], b"\0\0", b"", 2),
        "BSDIFF40 control tuple 0: seek z=9223372036854775807 moves the old position out of range",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_patch_exits_1_naming_file_and_field(tmp_path: Path, name: str) -> None:
    data, problem = BAD_CASES[name]
    (tmp_path / "src").write_bytes(b"abc")
    bad = tmp_path / "bad.patch"
    bad.write_bytes(data)
    done = run_tool("bspatch", tmp_path / "src", tmp_path / "out", bad)
    assert (done.returncode, done.stderr, done.stdout) == (1, f"bspatch: error: {bad}: {problem}\n", "")
    assert not (tmp_path / "out").exists()
    with pytest.raises(OtaError, match=r"^x: "):
        patch.apply_patch(b"abc", data, where="x")


def test_zero_tuple_bomb_is_refused_without_inflating(tmp_path: Path) -> None:
    """240 MB of zero control tuples compress to ~200 bytes; reading them all would be a bomb."""
    bomb = bsdiff40([], b"", b"", 10, control_raw=bytes(240_000_000))
    assert len(bomb) < 1000
    (tmp_path / "src").write_bytes(b"0123456789")
    (tmp_path / "bomb").write_bytes(bomb)
    done, peak_mb = peak_rss_mb("bspatch", tmp_path / "src", tmp_path / "out", tmp_path / "bomb")
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        f"bspatch: error: {tmp_path / 'bomb'}: BSDIFF40 control block has more than 22 tuples for new size 10"
    )
    assert peak_mb < 150


def test_diff_block_bomb_is_read_only_as_far_as_needed(tmp_path: Path) -> None:
    """A diff block inflating to 300 MB, of which the control tuples use 10 bytes: AOSP reads
    lazily and succeeds, and so do we, without inflating the rest."""
    bomb = bsdiff40([(10, 0, 0)], b"", b"", 10, diff_raw=bz2.compress(bytes(300_000_000)))
    (tmp_path / "src").write_bytes(b"0123456789")
    (tmp_path / "bomb").write_bytes(bomb)
    done, peak_mb = peak_rss_mb("bspatch", tmp_path / "src", tmp_path / "out", tmp_path / "bomb")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out").read_bytes() == b"0123456789"
    assert peak_mb < 150


def test_limit_flag_bounds_the_declared_size(tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(b"abc")
    (tmp_path / "tgt").write_bytes(b"x" * 1000)
    assert run_tool("bsdiff", tmp_path / "src", tmp_path / "tgt", tmp_path / "p").returncode == 0
    done = run_tool("bspatch", "--limit=999", tmp_path / "src", tmp_path / "out", tmp_path / "p")
    assert (done.returncode, done.stderr) == (
        1,
        f"bspatch: error: {tmp_path / 'p'}: BSDIFF40 new size 1000 exceeds the limit 999\n",
    )


def test_missing_input_and_usage(tmp_path: Path) -> None:
    done = run_tool("bspatch", tmp_path / "nope", tmp_path / "out", tmp_path / "p")
    assert (done.returncode, done.stderr) == (
        1,
        f"bspatch: error: {tmp_path / 'nope'}: cannot read: No such file or directory\n",
    )
    assert run_tool("bspatch", "a", "b").returncode == 2
    assert run_tool("bsdiff", "a").returncode == 2
    helped = run_tool("bsdiff", "--help")
    assert "bsdiff SRC TGT PATCH" in helped.stdout  # absl itself picks --help's exit status


def test_unknown_magic_is_an_ota_error() -> None:
    with pytest.raises(OtaError, match=r"^p: magic is b'BSDIFF41', expected b'BSDIFF40'$"):
        bsdiff.apply(b"", b"BSDIFF41" + bytes(24), where="p")
    with pytest.raises(
        OtaError, match=r"^p: unknown patch format \(magic b'VCDIFF\\x00\\x00'; expected BSDIFF40 or IMGDIFF2\)$"
    ):
        patch.apply_patch(b"", b"VCDIFF\0\0rest", where="p")
