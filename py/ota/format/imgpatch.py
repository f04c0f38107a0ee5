"""Applies IMGDIFF2 patches (docs/formats.md#applying-imgdiff2-imgpatch): the deflate-aware patches imgdiff writes.

Each chunk record is checked against the real source and patch sizes before it is used, and every
buffer a record declares is bounded (by what its compressed bytes can hold, or by the caller's
limit), so a hostile patch fails with one line instead of a crash or a huge allocation.

A deflate chunk is inflated, patched and recompressed in memory, so its inflated target is the
largest buffer of an apply. `expand_limit` bounds it by the declared size of the whole target:
deflate could in theory pack 1032 bytes into one, but a bound that loose lets a 2 MB package
make the device allocate gigabytes (docs/security.md, "Memory and time bounds"). imgdiff keeps a
stream that inflates past the bound as plain bytes (a NORMAL chunk), so every patch it writes
applies under the bound.
"""

from __future__ import annotations

import zlib

from ota.errors import OtaError
from ota.format import bsdiff, deflate, imgdiff_format
from ota.format.imgdiff_format import DeflateChunk, NormalChunk, RawChunk

# A deflate chunk may inflate to at most this many times the whole target's size (at least
# EXPAND_FLOOR bytes): kernels, ramdisks and APK entries inflate 2-10 times, well inside it.
EXPAND_RATIO = 32
EXPAND_FLOOR = 1 << 20


def expand_limit(target_size: int) -> int:
    """The most bytes one deflate chunk of a patch to a `target_size`-byte target may inflate to."""
    return min(bsdiff.DEFAULT_LIMIT, max(EXPAND_FLOOR, EXPAND_RATIO * target_size))


def _source_range(chunk: NormalChunk | DeflateChunk, index: int, source_size: int, where: str) -> slice:
    if chunk.src_start + chunk.src_len > source_size:
        raise OtaError(
            where,
            f"chunk {index}: src_start {chunk.src_start} + src_len {chunk.src_len} "
            f"runs past the source ({source_size} bytes)",
        )
    return slice(chunk.src_start, chunk.src_start + chunk.src_len)


def _apply_deflate(
    chunk: DeflateChunk, index: int, source: bytes, patch: bytes, bonus: bytes | None, where: str, expand_limit: int
) -> bytes:
    chunk_where = f"{where}: chunk {index}"
    compressed = memoryview(source)[_source_range(chunk, index, len(source), where)]
    extra = bonus if (bonus is not None and index == 1) else b""
    if chunk.src_expanded_len < len(extra):
        raise OtaError(
            where,
            f"chunk {index}: src_expanded_len {chunk.src_expanded_len} is smaller than the {len(extra)}-byte bonus",
        )
    if chunk.tgt_expanded_len > expand_limit:
        raise OtaError(
            where,
            f"chunk {index}: tgt_expanded_len {chunk.tgt_expanded_len} exceeds the expansion limit {expand_limit}",
        )
    expanded = (
        deflate.inflate_exact(
            compressed,
            chunk.src_expanded_len - len(extra),
            chunk_where,
            "src_expanded_len" + (" minus bonus" if extra else ""),
        )
        + extra
    )
    patched = bsdiff.apply(
        expanded, memoryview(patch)[chunk.patch_offset :], where=chunk_where, limit=chunk.tgt_expanded_len
    )
    if len(patched) != chunk.tgt_expanded_len:
        raise OtaError(
            where, f"chunk {index}: patch makes {len(patched)} bytes, tgt_expanded_len says {chunk.tgt_expanded_len}"
        )
    try:
        return deflate.deflate(
            patched,
            chunk.level,
            chunk.mem_level,
            method=chunk.method,
            window_bits=chunk.window_bits,
            strategy=chunk.strategy,
        )
    except (ValueError, zlib.error) as err:
        raise OtaError(
            where,
            f"chunk {index}: zlib parameters level={chunk.level} method={chunk.method} "
            f"windowBits={chunk.window_bits} memLevel={chunk.mem_level} "
            f"strategy={chunk.strategy} rejected ({err})",
        ) from None


def apply(
    source: bytes,
    patch: bytes,
    *,
    bonus: bytes | None = None,
    where: str = "patch",
    limit: int = bsdiff.DEFAULT_LIMIT,
    expand_limit: int = bsdiff.DEFAULT_LIMIT,
) -> bytes:
    """Rebuilds the target from `source` and an IMGDIFF2 `patch`.

    `bonus` (AOSP's -b file) is appended to chunk 1's inflated source data. `limit` bounds the
    output; `expand_limit` bounds each chunk's inflated target, which is legitimately larger than
    the whole output when the chunk is a compressed kernel or ramdisk.
    """
    out = bytearray()
    for index, chunk in enumerate(imgdiff_format.parse(patch, where)):
        room = limit - len(out)
        if isinstance(chunk, RawChunk):
            piece = chunk.data
        elif isinstance(chunk, NormalChunk):
            piece = bsdiff.apply(
                source[_source_range(chunk, index, len(source), where)],
                memoryview(patch)[chunk.patch_offset :],
                where=f"{where}: chunk {index}",
                limit=room,
            )
        else:
            piece = _apply_deflate(chunk, index, source, patch, bonus, where, expand_limit)
        if len(piece) > room:
            raise OtaError(where, f"chunk {index}: output grows past the limit {limit}")
        out += piece
    return bytes(out)
