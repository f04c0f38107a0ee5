"""The IMGDIFF2 container: file header, chunk records, and where each chunk's BSDIFF40 lives.

Kept apart from the generator and the applier so both read and write exactly one definition of
the layout (docs/formats.md#imgdiff2-layout). Parsing is bounded: every count and length is checked against the bytes
actually present before anything is sliced or allocated.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ota.errors import OtaError

MAGIC = b"IMGDIFF2"
CHUNK_NORMAL = 0
CHUNK_DEFLATE = 2
CHUNK_RAW = 3

_FILE_HEADER = struct.Struct("<8si")
_TYPE = struct.Struct("<i")
_NORMAL = struct.Struct("<qqq")
_DEFLATE = struct.Struct("<qqqqqiiiii")
_RAW = struct.Struct("<i")
_MIN_RECORD = _TYPE.size + _RAW.size


@dataclass(frozen=True)
class NormalChunk:
    """Target bytes = bspatch(source[src_start:src_start+src_len])."""

    src_start: int
    src_len: int
    patch_offset: int = 0


@dataclass(frozen=True)
class DeflateChunk:
    """Target bytes = deflate(params, bspatch(inflate(source[src_start:+src_len]) [+ bonus]))."""

    src_start: int
    src_len: int
    src_expanded_len: int
    tgt_expanded_len: int
    level: int
    mem_level: int = 8
    method: int = 8
    window_bits: int = -15
    strategy: int = 0
    patch_offset: int = 0


@dataclass(frozen=True)
class RawChunk:
    """Target bytes stored literally in the patch."""

    data: bytes


Chunk = NormalChunk | DeflateChunk | RawChunk


def record_size(chunk: Chunk) -> int:
    """Bytes the chunk's record takes in the header (the writer needs this before any offset)."""
    if isinstance(chunk, NormalChunk):
        return _TYPE.size + _NORMAL.size
    if isinstance(chunk, DeflateChunk):
        return _TYPE.size + _DEFLATE.size
    return _TYPE.size + _RAW.size + len(chunk.data)


def pack(chunks: Sequence[Chunk], patches: Sequence[bytes | None]) -> bytes:
    """Writes an IMGDIFF2 file; patches[i] is chunk i's BSDIFF40 (None for RAW chunks).

    Patch offsets are assigned here, cumulatively after the header, in chunk order.
    """
    offset = _FILE_HEADER.size + sum(record_size(c) for c in chunks)
    records = [_FILE_HEADER.pack(MAGIC, len(chunks))]
    for chunk, bsdiff_patch in zip(chunks, patches, strict=True):
        if isinstance(chunk, RawChunk):
            records.append(_TYPE.pack(CHUNK_RAW) + _RAW.pack(len(chunk.data)) + chunk.data)
            continue
        placed = dataclasses.replace(chunk, patch_offset=offset)
        offset += len(bsdiff_patch)
        if isinstance(placed, NormalChunk):
            records.append(
                _TYPE.pack(CHUNK_NORMAL) + _NORMAL.pack(placed.src_start, placed.src_len, placed.patch_offset)
            )
        else:
            records.append(
                _TYPE.pack(CHUNK_DEFLATE)
                + _DEFLATE.pack(
                    placed.src_start,
                    placed.src_len,
                    placed.patch_offset,
                    placed.src_expanded_len,
                    placed.tgt_expanded_len,
                    placed.level,
                    placed.method,
                    placed.window_bits,
                    placed.mem_level,
                    placed.strategy,
                )
            )
    records.extend(p for p in patches if p is not None)
    return b"".join(records)


def parse(patch: bytes, where: str) -> list[Chunk]:
    """Reads the chunk records, checking every field that does not depend on the source."""
    if len(patch) < _FILE_HEADER.size:
        raise OtaError(where, f"IMGDIFF2 header truncated ({len(patch)} of {_FILE_HEADER.size} bytes)")
    magic, count = _FILE_HEADER.unpack_from(patch)
    if magic != MAGIC:
        raise OtaError(where, f"magic is {magic!r}, expected {MAGIC!r}")
    if count < 0 or count > (len(patch) - _FILE_HEADER.size) // _MIN_RECORD:
        raise OtaError(where, f"IMGDIFF2 chunk count {count} does not fit the {len(patch)}-byte patch")
    chunks: list[Chunk] = []
    pos = _FILE_HEADER.size
    for index in range(count):
        chunk, pos = _parse_record(patch, pos, index, where)
        chunks.append(chunk)
    return chunks


def _parse_record(patch: bytes, pos: int, index: int, where: str) -> tuple[Chunk, int]:
    if pos + _TYPE.size > len(patch):
        raise OtaError(where, f"chunk {index}: record truncated at offset {pos}")
    (kind,) = _TYPE.unpack_from(patch, pos)
    pos += _TYPE.size
    layout = {CHUNK_NORMAL: _NORMAL, CHUNK_DEFLATE: _DEFLATE, CHUNK_RAW: _RAW}.get(kind)
    if layout is None:
        raise OtaError(where, f"chunk {index}: unknown chunk type {kind}")
    if pos + layout.size > len(patch):
        raise OtaError(where, f"chunk {index}: record truncated at offset {pos}")
    fields = layout.unpack_from(patch, pos)
    pos += layout.size
    if kind == CHUNK_RAW:
        (data_len,) = fields
        if data_len < 0 or pos + data_len > len(patch):
            raise OtaError(where, f"chunk {index}: RAW data_len {data_len} runs past the end of the patch")
        return RawChunk(patch[pos : pos + data_len]), pos + data_len
    names = ("src_start", "src_len", "patch_offset") + (
        ("src_expanded_len", "tgt_expanded_len") if kind == CHUNK_DEFLATE else ()
    )
    for name, value in zip(names, fields, strict=False):  # a DEFLATE record's zlib settings follow
        if value < 0:
            raise OtaError(where, f"chunk {index}: {name} is negative ({value})")
    if fields[2] >= len(patch):
        raise OtaError(
            where, f"chunk {index}: patch_offset {fields[2]} is past the end of the patch ({len(patch)} bytes)"
        )
    if kind == CHUNK_NORMAL:
        return NormalChunk(*fields), pos
    src_start, src_len, patch_offset, src_exp, tgt_exp, level, method, window_bits, mem_level, strategy = fields
    return DeflateChunk(
        src_start, src_len, src_exp, tgt_exp, level, mem_level, method, window_bits, strategy, patch_offset
    ), pos
