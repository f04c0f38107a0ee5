"""No fork while another thread runs: imgdiff's zlib-settings searches and its chunks' diffs share
one pool of forked children (make_bsdiff.diff_many_beside), and ota/io/forked.py refuses a fork
with a second thread alive.

A hook registered with os.register_at_fork records, at every fork of this process, how many
threads it has: Python's (threading.active_count) and the kernel's (/proc/self/status, which also
counts threads no Python code started, such as OpenMP's). Generated boot-like images (deflate
members of several zlib settings, sizes, and streams that stop matching their setting after the
speculation prefix, or that no setting makes) go through imgdiff; every fork must have seen one
thread, and every patch must equal the one made with every search finished before any diff.
"""

from __future__ import annotations

import os
import random
import struct
import threading
import zlib

import pytest

from ota.actions import imgdiff, make_bsdiff
from ota.format import deflate, imgpatch
from ota.io import forked

_THREADS_AT_FORK: list[tuple[int, int]] = []


def _kernel_threads() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


os.register_at_fork(before=lambda: _THREADS_AT_FORK.append((threading.active_count(), _kernel_threads())))


def _code(rng: random.Random, size: int) -> bytes:
    """Instruction-like words: a few hot opcodes with varied operands, compressible as code is."""
    hot = [rng.getrandbits(32) for _ in range(24)]
    words = (rng.choice(hot) ^ rng.getrandbits(rng.choice((0, 4, 12))) for _ in range(size // 4 + 1))
    return struct.pack(f"<{size // 4 + 1}I", *words)[:size]


def _edit(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 20)):
        at = rng.randrange(len(out))
        out[at : at + rng.randint(0, 64)] = rng.randbytes(rng.randint(0, 64))
    return bytes(out)


def _stream(rng: random.Random, data: bytes, kind: str) -> bytes:
    """zlib's raw deflate of `data` at a setting of the search's stages, or one that matches a
    setting up to a flush past the speculation prefix ("late"), or Huffman-only ("foreign": no
    setting of the search makes it)."""
    level, mem_level = rng.choice([params for stage in deflate.SEARCH_STAGES for params in stage])
    if kind == "foreign":
        compressor = zlib.compressobj(level, zlib.DEFLATED, deflate.RAW_WBITS, mem_level, zlib.Z_HUFFMAN_ONLY)
        return compressor.compress(data) + compressor.flush()
    if kind == "late":
        compressor = zlib.compressobj(level, zlib.DEFLATED, deflate.RAW_WBITS, mem_level)
        at = rng.randrange(len(data) // 2, len(data))
        return (
            compressor.compress(data[:at])
            + compressor.flush(zlib.Z_FULL_FLUSH)
            + compressor.compress(data[at:])
            + compressor.flush()
        )
    return deflate.deflate(data, level, mem_level)


def _member(data: bytes, stream: bytes) -> bytes:
    return b"\x1f\x8b\x08\0" + bytes(6) + stream + struct.pack("<II", zlib.crc32(data), len(data))


def _images(seed: int, size: int) -> tuple[bytes, bytes]:
    """A header, then two to four gzip members with bytes between them, in two versions."""
    rng = random.Random(seed)
    source, target = [rng.randbytes(rng.randint(0, 2048))], []
    target.append(source[0])
    for _ in range(rng.randint(2, 4)):
        old = _code(rng, rng.randint(size // 2, size))
        new = _edit(rng, old)
        kind = rng.choice(("plain", "plain", "late", "foreign"))
        source.append(_member(old, deflate.deflate(old, 9)))
        target.append(_member(new, _stream(rng, new, kind)))
        gap = rng.randbytes(rng.randint(0, 300))
        source.append(gap)
        target.append(_edit(rng, gap) if gap else gap)
    return b"".join(source), b"".join(target)


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forks and speculation at a tenth of the production sizes, so that many generated images run
    in seconds through the same code paths."""
    monkeypatch.setattr(make_bsdiff, "IN_PROCESS_LIMIT", 64 << 10)
    monkeypatch.setattr(deflate, "SPECULATION_PREFIX", 48 << 10)


def _patch_with_searches_first(source: bytes, target: bytes, monkeypatch: pytest.MonkeyPatch) -> bytes:
    with monkeypatch.context() as inner:
        inner.setattr(deflate, "SPECULATION_PREFIX", 1 << 40)  # every search ends before the diffs
        return imgdiff.make_image_patch(source, target)


def _check(source: bytes, target: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    _THREADS_AT_FORK.clear()
    made = imgdiff.make_image_patch(source, target)
    forks = list(_THREADS_AT_FORK)
    assert forks, "the image was meant to fork its diffs and searches"
    assert all(counts == (1, 1) for counts in forks), forks
    assert made == _patch_with_searches_first(source, target, monkeypatch)
    assert imgpatch.apply(source, made) == target


@pytest.mark.parametrize("seed", range(12))
def test_no_fork_sees_a_second_thread(seed: int, small_limits: None, monkeypatch: pytest.MonkeyPatch) -> None:
    _check(*_images(seed, 400_000), monkeypatch)


def test_no_fork_sees_a_second_thread_at_production_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Members past make_bsdiff.IN_PROCESS_LIMIT and deflate.SPECULATION_PREFIX as they are."""
    _check(*_images(100, 3 << 20), monkeypatch)


def test_forked_run_refuses_to_fork_beside_a_thread() -> None:
    release = threading.Event()
    bystander = threading.Thread(target=release.wait)
    bystander.start()
    try:
        _THREADS_AT_FORK.clear()
        with pytest.raises(RuntimeError, match="fork refused: 2 threads are running"):
            forked.run([lambda: b"never"], parallel=1, where="w")
        assert not _THREADS_AT_FORK
    finally:
        release.set()
        bystander.join()
    assert forked.run([lambda: b"after"], parallel=1, where="w") == [b"after"]
